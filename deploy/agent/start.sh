#!/usr/bin/env bash
# start.sh: one Azure Pipelines job per pod.
#
# Registers this pod as an agent (--replace, so a restarted pod with the same
# name takes its registration over), runs exactly one job (run.sh --once), and
# removes the registration when the job ends or the pod is told to stop
# (SIGTERM), retrying while Azure DevOps still sees a job running. An agent
# that no job reached within AZP_IDLE_TIMEOUT leaves cleanly (exit 0): its pod
# was started for a job another agent took. The PAT is read from a file and
# never exported: the job's environment does not hold it.
#
# Environment:
#   AZP_URL            organization URL (required)
#   AZP_POOL           agent pool name (required)
#   AZP_TOKEN_FILE     file holding the PAT (default /var/run/secrets/azp/pat);
#                      AZP_TOKEN is accepted instead and removed from the environment
#   AZP_AGENT_NAME     agent name (default: the host name, i.e. the pod name)
#   AZP_WORK           work directory (default /azp/_work)
#   AZP_AGENT_DIR      the unpacked agent package (default /azp/agent)
#   DOCKER_HOST        unix:// socket of the DinD sidecar; waited for when set
#   AZP_DOCKER_WAIT    seconds to wait for that socket (default 120)
#   AZP_REMOVE_RETRIES attempts to remove the agent (default 30)
#   AZP_REMOVE_DELAY   seconds between them (default 10)
#   AZP_IDLE_TIMEOUT   seconds an agent waits for its job before it leaves
#                      (default 300; 0 waits for ever)
set -euo pipefail

# now_ms is the wall clock in milliseconds (bash's SECONDS is whole seconds).
now_ms() {
  local t=$EPOCHREALTIME
  echo $((${t%[.,]*} * 1000 + 10#${t#*[.,]} / 1000))
}
log() { printf '%s start.sh: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

: "${AZP_URL:?AZP_URL is required (e.g. https://dev.azure.com/contoso)}"
: "${AZP_POOL:?AZP_POOL is required}"
AZP_URL=${AZP_URL%/}
AZP_TOKEN_FILE=${AZP_TOKEN_FILE:-/var/run/secrets/azp/pat}
AZP_AGENT_NAME=${AZP_AGENT_NAME:-$(hostname)}
AZP_WORK=${AZP_WORK:-/azp/_work}
AZP_AGENT_DIR=${AZP_AGENT_DIR:-/azp/agent}
AZP_DOCKER_WAIT=${AZP_DOCKER_WAIT:-120}
AZP_REMOVE_RETRIES=${AZP_REMOVE_RETRIES:-30}
AZP_REMOVE_DELAY=${AZP_REMOVE_DELAY:-10}
AZP_IDLE_TIMEOUT=${AZP_IDLE_TIMEOUT:-300}
[[ "$AZP_IDLE_TIMEOUT" =~ ^[0-9]+$ ]] || die "AZP_IDLE_TIMEOUT must be a number of seconds, got '$AZP_IDLE_TIMEOUT'"

# The PAT lives in a shell variable only: not exported, so no child sees it
# unless handed it explicitly (config.sh, through VSTS_AGENT_INPUT_TOKEN).
if [[ -n "${AZP_TOKEN:-}" ]]; then
  pat=$AZP_TOKEN
elif [[ -r "$AZP_TOKEN_FILE" ]]; then
  pat=$(<"$AZP_TOKEN_FILE")
else
  die "no PAT: $AZP_TOKEN_FILE is not readable and AZP_TOKEN is not set"
fi
unset AZP_TOKEN
pat=${pat//[$'\r\n']/}
[[ -n "$pat" ]] || die "the PAT in $AZP_TOKEN_FILE is empty"

# wait_for_docker waits for the DinD sidecar's socket (the pod's startup
# probe normally guarantees it; this covers images run without it).
wait_for_docker() {
  [[ "${DOCKER_HOST:-}" == unix://* ]] || return 0
  local sock=${DOCKER_HOST#unix://} waited=0
  until [[ -S "$sock" ]]; do
    ((waited < AZP_DOCKER_WAIT)) || die "no Docker socket at $sock after ${AZP_DOCKER_WAIT}s (is the dind sidecar running?)"
    ((waited % 10 == 0)) && log "waiting for the Docker socket $sock"
    sleep 1
    waited=$((waited + 1))
  done
  log "Docker socket $sock is up"
}

urlencode() {
  local s=$1 out="" c i
  for ((i = 0; i < ${#s}; i++)); do
    c=${s:i:1}
    case "$c" in
      [a-zA-Z0-9.~_-]) out+=$c ;;
      *) printf -v c '%%%02X' "'$c"; out+=$c ;;
    esac
  done
  printf '%s' "$out"
}

# check_pool fails early, with a readable reason, when the PAT or the pool is
# wrong, instead of leaving config.sh's interactive-style errors in the log.
check_pool() {
  local pool_q body code
  pool_q=$(urlencode "$AZP_POOL")
  body=$(mktemp)
  # The credential goes through a curl config on stdin, never on the command line.
  # X-TFS-FedAuthRedirect: Suppress makes a bad PAT a 401 instead of a 203 sign-in page.
  code=$(curl -sS -o "$body" -w '%{http_code}' -H 'X-TFS-FedAuthRedirect: Suppress' -K - \
    "$AZP_URL/_apis/distributedtask/pools?poolName=$pool_q&api-version=7.1" \
    <<<"user = \":$pat\"") || { rm -f "$body"; die "cannot reach $AZP_URL"; }
  case "$code" in
    200) ;;
    401 | 203) rm -f "$body"; die "Azure DevOps rejected the PAT (HTTP $code): check the Secret and its scope (Agent Pools: Read & manage)" ;;
    *) rm -f "$body"; die "looking up pool $AZP_POOL: HTTP $code" ;;
  esac
  if ! grep -Eq '"count": *[1-9]' "$body"; then
    rm -f "$body"
    die "agent pool '$AZP_POOL' does not exist in $AZP_URL (or the PAT cannot see it)"
  fi
  rm -f "$body"
}

registered=false
run_pid=""

# shellcheck disable=SC2317 # called from the EXIT trap
remove_agent() {
  "$registered" || return 0
  local i
  for ((i = 1; i <= AZP_REMOVE_RETRIES; i++)); do
    if VSTS_AGENT_INPUT_TOKEN=$pat "$AZP_AGENT_DIR/config.sh" remove --unattended --auth PAT; then
      log "agent $AZP_AGENT_NAME removed"
      registered=false
      return 0
    fi
    log "removing agent $AZP_AGENT_NAME failed (attempt $i/$AZP_REMOVE_RETRIES; a job may still be running), retrying in ${AZP_REMOVE_DELAY}s"
    sleep "$AZP_REMOVE_DELAY"
  done
  log "error: agent $AZP_AGENT_NAME is still registered; the scaler's sweeper removes it once it is offline"
  return 1
}

# shellcheck disable=SC2317 # a trap handler
on_exit() {
  local rc=$?
  trap - EXIT TERM INT
  remove_agent || rc=1
  [[ -z "${state_dir:-}" ]] || rm -rf "$state_dir"
  exit "$rc"
}

# shellcheck disable=SC2317 # a trap handler
on_term() {
  log "stop requested: ending the agent, then removing it"
  if [[ -n "$run_pid" ]]; then
    kill -TERM "$run_pid" 2>/dev/null || true
    wait "$run_pid" 2>/dev/null || true
  fi
  exit 143
}

trap on_exit EXIT
trap on_term TERM INT

wait_for_docker
check_pool

log "registering agent $AZP_AGENT_NAME in pool $AZP_POOL of $AZP_URL"
cd "$AZP_AGENT_DIR"
VSTS_AGENT_INPUT_TOKEN=$pat ./config.sh --unattended \
  --url "$AZP_URL" --auth PAT --pool "$AZP_POOL" --agent "$AZP_AGENT_NAME" \
  --work "$AZP_WORK" --replace --acceptTeeEula
registered=true
idle_deadline=$(($(now_ms) + AZP_IDLE_TIMEOUT * 1000))

# The agent prints "<time>: Running job: <name>" when a job reaches it; the
# marker file tells the idle timer that one did.
state_dir=$(mktemp -d)
job_marker="$state_dir/job-started"
watch_agent_output() {
  local line
  while IFS= read -r line; do
    printf '%s\n' "$line"
    [[ "$line" == *": Running job: "* ]] && : >"$job_marker"
  done
}
job_started() { [[ -e "$job_marker" ]]; }

log "running one job (leaving if none arrives within ${AZP_IDLE_TIMEOUT}s; 0: never)"
# env -u is belt and braces: nothing above exported a PAT.
env -u AZP_TOKEN -u VSTS_AGENT_INPUT_TOKEN ./run.sh --once > >(watch_agent_output) 2>&1 &
run_pid=$!
idle_exit=false
while kill -0 "$run_pid" 2>/dev/null; do
  if ! job_started && ((AZP_IDLE_TIMEOUT > 0 && $(now_ms) >= idle_deadline)); then
    log "no job reached agent $AZP_AGENT_NAME within ${AZP_IDLE_TIMEOUT}s (AZP_IDLE_TIMEOUT): another agent took the job this pod was started for; leaving"
    idle_exit=true
    kill -TERM "$run_pid" 2>/dev/null || true
    break
  fi
  # A background sleep keeps SIGTERM's trap prompt.
  sleep 0.5 &
  wait $! || true
done
rc=0
wait "$run_pid" || rc=$?
run_pid=""
if "$idle_exit"; then
  if job_started; then
    log "error: a job reached the agent while it was stopping; Azure DevOps gives it to another agent or fails it"
  else
    rc=0
  fi
fi
log "agent exited with $rc"
exit "$rc"
