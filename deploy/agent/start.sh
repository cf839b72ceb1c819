#!/usr/bin/env bash
# start.sh: one Azure Pipelines job per pod.
#
#   start.sh register   (an init container, the only one that holds the PAT
#                        or the service principal's secret)
#       registers the pod as an agent (config.sh --replace) and leaves the
#       agent's own configuration and credentials in AZP_STATE_DIR, and a
#       copy of the agent's externals in AZP_EXTERNALS_DIR for the Docker
#       daemon of container jobs. A wrong PAT or pool fails here, clearly.
#   start.sh run        (the agent container: no PAT anywhere)
#       runs exactly one job (run.sh --once) with the agent's own
#       credentials from AZP_STATE_DIR. The job never sees the PAT, and the
#       agent is not removed here: the scaler's sweeper removes a
#       single-run agent promptly once it finished its job.
#   start.sh            (both in one container, for docker run)
#       registers, runs one job, and removes the agent on exit.
#
# An agent that no job reached within AZP_IDLE_TIMEOUT leaves cleanly
# (exit 0): its pod was started for a job another agent took. On SIGTERM an
# idle agent leaves at once (exit 0); a running job may finish within
# AZP_STOP_TIMEOUT seconds (set below the pod's grace period), then it is
# cancelled.
#
# Environment:
#   AZP_URL            organization URL (required)
#   AZP_POOL           agent pool name (required)
#   AZP_AUTH           PAT (default) or SP: register with a Microsoft Entra ID
#                      service principal (agent 3.227.1 or later, config.sh --auth SP)
#   AZP_TOKEN_FILE     PAT: file holding the PAT (default /var/run/secrets/azp/pat);
#                      AZP_TOKEN is accepted instead and removed from the environment
#   AZP_TENANT_ID      SP: the Entra ID tenant (directory) id
#   AZP_CLIENT_ID      SP: the application (client) id
#   AZP_CLIENT_SECRET_FILE  SP: file holding the client secret (default
#                      /var/run/secrets/azp/clientSecret); AZP_CLIENT_SECRET is
#                      accepted instead and removed from the environment
#   AZURE_AUTHORITY_HOST  SP: Entra ID's host (default https://login.microsoftonline.com/;
#                      another for a sovereign cloud), the Azure SDKs' variable
#   AZP_AGENT_NAME     agent name (default: the host name, i.e. the pod name)
#   AZP_WORK           work directory (default /azp/_work)
#   AZP_AGENT_DIR      the unpacked agent package (default /azp/agent)
#   AZP_STATE_DIR      where register leaves the agent's configuration for run
#   AZP_EXTERNALS_DIR  where register copies the agent's externals (optional)
#   DOCKER_HOST        unix:// socket of the DinD sidecar; waited for when set
#   AZP_DOCKER_WAIT    seconds to wait for that socket (default 120)
#   AZP_IDLE_TIMEOUT   seconds an agent waits for its job before it leaves
#                      (default 300; 0 waits for ever)
#   AZP_STOP_TIMEOUT   seconds a running job may go on after SIGTERM (default 0)
#   AZP_STANDBY_URL    the scaler's standby endpoint (http://<scaler>:8081/api/v1/standby):
#                      at the idle timeout the agent asks whether it stays as a
#                      standby agent, and asks again every AZP_STANDBY_CHECK
#                      seconds (default 30) while it is idle; no answer: it leaves
#   AZP_POD_NAMESPACE  the pod's namespace, for that question (the pod is AZP_AGENT_NAME)
#   AZP_CA_DIR         more CAs to trust (PEM files, *.crt or *.pem): added to the
#                      image's bundle for the agent, curl, git and Node.js tasks
#   AZP_REMOVE_RETRIES attempts to remove the agent, all-in-one mode (default 30)
#   AZP_REMOVE_DELAY   seconds between them (default 10)
set -euo pipefail

# now_ms is the wall clock in milliseconds (bash's SECONDS is whole seconds).
now_ms() {
  local t=$EPOCHREALTIME
  echo $((${t%[.,]*} * 1000 + 10#${t#*[.,]} / 1000))
}
log() { printf '%s start.sh: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

mode=${1:-all}
case "$mode" in
  register | run | all) ;;
  *) die "unknown mode '$mode': use register, run, or no argument" ;;
esac

: "${AZP_URL:?AZP_URL is required (e.g. https://dev.azure.com/contoso)}"
: "${AZP_POOL:?AZP_POOL is required}"
AZP_URL=${AZP_URL%/}
AZP_AUTH=${AZP_AUTH:-PAT}
AZP_TOKEN_FILE=${AZP_TOKEN_FILE:-/var/run/secrets/azp/pat}
AZP_CLIENT_SECRET_FILE=${AZP_CLIENT_SECRET_FILE:-/var/run/secrets/azp/clientSecret}
AZP_AGENT_NAME=${AZP_AGENT_NAME:-$(hostname)}
AZP_WORK=${AZP_WORK:-/azp/_work}
AZP_AGENT_DIR=${AZP_AGENT_DIR:-/azp/agent}
AZP_DOCKER_WAIT=${AZP_DOCKER_WAIT:-120}
AZP_REMOVE_RETRIES=${AZP_REMOVE_RETRIES:-30}
AZP_REMOVE_DELAY=${AZP_REMOVE_DELAY:-10}
AZP_IDLE_TIMEOUT=${AZP_IDLE_TIMEOUT:-300}
AZP_STOP_TIMEOUT=${AZP_STOP_TIMEOUT:-0}
AZP_STANDBY_CHECK=${AZP_STANDBY_CHECK:-30}
for v in AZP_IDLE_TIMEOUT AZP_STOP_TIMEOUT AZP_STANDBY_CHECK; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a number of seconds, got '${!v}'"
done
case "${AZP_AUTH^^}" in
  PAT) AZP_AUTH=PAT ;;
  SP)
    AZP_AUTH=SP
    if [[ "$mode" != run ]]; then
      : "${AZP_TENANT_ID:?AZP_TENANT_ID is required with AZP_AUTH=SP (the Entra ID tenant id)}"
      : "${AZP_CLIENT_ID:?AZP_CLIENT_ID is required with AZP_AUTH=SP (the application (client) id)}"
    fi
    ;;
  *) die "AZP_AUTH must be PAT or SP, got '$AZP_AUTH'" ;;
esac
if [[ "$mode" != all ]]; then
  : "${AZP_STATE_DIR:?AZP_STATE_DIR is required in $mode mode (an emptyDir shared by the init and agent containers)}"
fi

# The agent's own configuration and credentials, as config.sh writes them.
state_files=(.agent .credentials .credentials_rsaparams .env .path)

# secret is the PAT or the service principal's client secret. It is kept in a
# shell variable only: not exported, so no child sees it unless handed it
# explicitly (config.sh, through VSTS_AGENT_INPUT_TOKEN or
# VSTS_AGENT_INPUT_CLIENTSECRET, which the agent masks in its logs).
secret=""
# read_secret reads it from the environment variable (then unset) or the file.
read_secret() {
  local var=AZP_TOKEN file=$AZP_TOKEN_FILE what=PAT
  if [[ "$AZP_AUTH" == SP ]]; then
    var=AZP_CLIENT_SECRET file=$AZP_CLIENT_SECRET_FILE what="client secret"
  fi
  if [[ -n "${!var:-}" ]]; then
    secret=${!var}
  elif [[ -r "$file" ]]; then
    secret=$(<"$file")
  else
    die "no $what: $file is not readable and $var is not set"
  fi
  unset AZP_TOKEN AZP_CLIENT_SECRET
  secret=${secret//[$'\r\n']/}
  [[ -n "$secret" ]] || die "the $what in $file is empty"
}

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

# Azure DevOps' resource in Microsoft Entra ID: the scope of its tokens.
azure_devops_scope=499b84ac-1321-427f-aa17-267ca6975798/.default

# entra_token prints an access token for Azure DevOps, from the service
# principal's client secret (Entra ID's client-credentials grant), or fails
# with Entra ID's reason (its AADSTS code). The secret reaches curl on stdin,
# never its command line; the token is never printed to the log.
entra_token() {
  local authority=${AZURE_AUTHORITY_HOST:-https://login.microsoftonline.com/} body code json re
  authority=${authority%/}
  body=$(mktemp)
  code=$(printf '%s' "$secret" | curl -sS -o "$body" -w '%{http_code}' \
    --data-urlencode grant_type=client_credentials \
    --data-urlencode "client_id=$AZP_CLIENT_ID" \
    --data-urlencode "scope=$azure_devops_scope" \
    --data-urlencode client_secret@- \
    "$authority/$(urlencode "$AZP_TENANT_ID")/oauth2/v2.0/token") || { rm -f "$body"; die "cannot reach Microsoft Entra ID at $authority"; }
  json=$(<"$body")
  rm -f "$body"
  re='"access_token" *: *"([^"]+)"'
  if [[ "$code" == 200 && "$json" =~ $re ]]; then
    printf '%s' "${BASH_REMATCH[1]}"
    return 0
  fi
  re='"error_description" *: *"([^"]*)'
  local why="HTTP $code"
  # Entra ID's descriptions go on with "\r\nTrace ID: ..."; the first line says why.
  [[ "$json" =~ $re ]] && why="${BASH_REMATCH[1]%%\\r*}"
  die "Microsoft Entra ID refused a token to service principal $AZP_CLIENT_ID in tenant $AZP_TENANT_ID: $why"
}

# check_pool fails early, with a readable reason, when the credential or the
# pool is wrong, instead of leaving config.sh's interactive-style errors in
# the log.
check_pool() {
  local pool_q body code what=PAT auth token
  pool_q=$(urlencode "$AZP_POOL")
  # The credential goes through a curl config on stdin, never on the command line.
  if [[ "$AZP_AUTH" == SP ]]; then
    what="service principal $AZP_CLIENT_ID"
    token=$(entra_token) || exit 1
    auth="header = \"Authorization: Bearer $token\""
  else
    auth="user = \":$secret\""
  fi
  body=$(mktemp)
  # X-TFS-FedAuthRedirect: Suppress makes a bad credential a 401 instead of a 203 sign-in page.
  code=$(curl -sS -o "$body" -w '%{http_code}' -H 'X-TFS-FedAuthRedirect: Suppress' -K - \
    "$AZP_URL/_apis/distributedtask/pools?poolName=$pool_q&api-version=7.1" \
    <<<"$auth") || { rm -f "$body"; die "cannot reach $AZP_URL"; }
  case "$code" in
    200) ;;
    401 | 203)
      rm -f "$body"
      if [[ "$AZP_AUTH" == SP ]]; then
        die "Azure DevOps rejected the $what (HTTP $code): add it to the organization as a user, and to pool $AZP_POOL's Security as Administrator"
      fi
      die "Azure DevOps rejected the PAT (HTTP $code): check the Secret and its scope (Agent Pools: Read & manage)"
      ;;
    *) rm -f "$body"; die "looking up pool $AZP_POOL: HTTP $code" ;;
  esac
  if ! grep -Eq '"count": *[1-9]' "$body"; then
    rm -f "$body"
    die "agent pool '$AZP_POOL' does not exist in $AZP_URL (or the $what cannot see it)"
  fi
  rm -f "$body"
}

# config_sh runs the agent's config.sh with the credential in its
# environment, never on its command line.
config_sh() {
  if [[ "$AZP_AUTH" == SP ]]; then
    (cd "$AZP_AGENT_DIR" && VSTS_AGENT_INPUT_CLIENTSECRET=$secret ./config.sh "$@" \
      --auth SP --clientId "$AZP_CLIENT_ID" --tenantId "$AZP_TENANT_ID")
  else
    (cd "$AZP_AGENT_DIR" && VSTS_AGENT_INPUT_TOKEN=$secret ./config.sh "$@" --auth PAT)
  fi
}

registered=false

register() {
  check_pool
  local as=""
  [[ "$AZP_AUTH" == SP ]] && as=" as service principal $AZP_CLIENT_ID"
  log "registering agent $AZP_AGENT_NAME in pool $AZP_POOL of $AZP_URL$as"
  # --disableupdate: a single-run agent must not update itself (and restart)
  # in the middle of its one job; a newer agent comes with a newer image.
  config_sh --unattended --url "$AZP_URL" --pool "$AZP_POOL" --agent "$AZP_AGENT_NAME" \
    --work "$AZP_WORK" --replace --acceptTeeEula --disableupdate || die "config.sh could not register agent $AZP_AGENT_NAME in pool $AZP_POOL (see its output above)"
  registered=true
}

# save_state leaves the agent's configuration for the agent container, and
# the externals (the Node.js that tasks run on) where the Docker daemon
# sees them at the agent's own path.
save_state() {
  local f
  mkdir -p "$AZP_STATE_DIR"
  for f in "${state_files[@]}"; do
    [[ -e "$AZP_AGENT_DIR/$f" ]] && cp -p "$AZP_AGENT_DIR/$f" "$AZP_STATE_DIR/"
  done
  [[ -e "$AZP_STATE_DIR/.agent" ]] || die "config.sh left no .agent file: the agent is not configured"
  if [[ -n "${AZP_EXTERNALS_DIR:-}" ]]; then
    log "copying the agent's externals to $AZP_EXTERNALS_DIR"
    # Each entry, not the directory itself: the target is an emptyDir owned
    # by root, and a non-root user without CAP_FOWNER may not set its times
    # (cp -a src/. dst/ fails there with "preserving times ... not permitted").
    local entries
    entries=("$AZP_AGENT_DIR"/externals/* "$AZP_AGENT_DIR"/externals/.[!.]*)
    local existing=()
    for f in "${entries[@]}"; do
      [[ -e "$f" || -L "$f" ]] && existing+=("$f")
    done
    if ((${#existing[@]} > 0)); then
      cp -a "${existing[@]}" "$AZP_EXTERNALS_DIR/"
    fi
  fi
}

load_state() {
  local f
  [[ -e "$AZP_STATE_DIR/.agent" ]] || die "no agent configuration in $AZP_STATE_DIR: did the register init container run?"
  for f in "${state_files[@]}"; do
    [[ -e "$AZP_STATE_DIR/$f" ]] && cp -p "$AZP_STATE_DIR/$f" "$AZP_AGENT_DIR/"
  done
  return 0
}

# shellcheck disable=SC2317 # called from the EXIT trap
remove_agent() {
  "$registered" || return 0
  [[ "$mode" == all ]] || return 0
  local i
  for ((i = 1; i <= AZP_REMOVE_RETRIES; i++)); do
    if config_sh remove --unattended; then
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

# The agent prints "<time>: Running job: <name>" when a job reaches it; the
# marker file tells the idle timer and the SIGTERM handler that one did.
state_tmp=$(mktemp -d)
job_marker="$state_tmp/job-started"
watch_agent_output() {
  local line
  while IFS= read -r line; do
    printf '%s\n' "$line"
    [[ "$line" == *": Running job: "* ]] && : >"$job_marker"
  done
}
job_started() { [[ -e "$job_marker" ]]; }

run_pid=""
stop_requested=false
stop_deadline=0

# shellcheck disable=SC2317 # a trap handler
on_term() {
  "$stop_requested" && return 0
  stop_requested=true
  stop_deadline=$(($(now_ms) + AZP_STOP_TIMEOUT * 1000))
  if job_started; then
    log "stop requested while a job runs: letting it finish for up to ${AZP_STOP_TIMEOUT}s (AZP_STOP_TIMEOUT), then cancelling it"
  else
    log "stop requested while idle: leaving now"
  fi
}

# shellcheck disable=SC2317 # a trap handler
on_exit() {
  local rc=$?
  trap - EXIT TERM INT
  remove_agent || rc=1
  rm -rf "$state_tmp"
  exit "$rc"
}

# stays_as_standby asks the scaler whether this idle agent stays as one of
# its ScaledJob's standby agents. Any failure means no: the agent leaves,
# as it did before standby existed.
standby_why=""
stays_as_standby() {
  [[ -n "${AZP_STANDBY_URL:-}" ]] || return 1
  local answer
  answer=$(curl -fsS --max-time 5 -G "$AZP_STANDBY_URL" \
    --data-urlencode "namespace=${AZP_POD_NAMESPACE:-}" --data-urlencode "pod=$AZP_AGENT_NAME" 2>&1) || {
    standby_why="the scaler did not answer ($answer)"
    return 1
  }
  standby_why=$(sed -n 's/.*"why":"\([^"]*\)".*/\1/p' <<<"$answer")
  [[ "$answer" == *'"stay":true'* ]]
}

# run_one_job runs the agent until it has run one job, leaves when idle
# too long, and handles a stop request; it returns the exit code to use.
run_one_job() {
  log "running one job (leaving if none arrives within ${AZP_IDLE_TIMEOUT}s; 0: never)"
  # env -u is belt and braces: nothing here exported a secret.
  (cd "$AZP_AGENT_DIR" && exec env -u AZP_TOKEN -u VSTS_AGENT_INPUT_TOKEN -u AZP_CLIENT_SECRET \
    -u VSTS_AGENT_INPUT_CLIENTSECRET ./run.sh --once) > >(watch_agent_output) 2>&1 &
  run_pid=$!
  local idle_deadline=$(($(now_ms) + AZP_IDLE_TIMEOUT * 1000)) left=false why="" signal="" standby=false
  while kill -0 "$run_pid" 2>/dev/null; do
    if ! job_started; then
      if "$stop_requested"; then
        left=true why="stopped while idle" signal=TERM
      elif ((AZP_IDLE_TIMEOUT > 0 && $(now_ms) >= idle_deadline)); then
        if stays_as_standby; then
          "$standby" || log "kept as a standby agent ($standby_why); asking again every ${AZP_STANDBY_CHECK}s"
          standby=true idle_deadline=$(($(now_ms) + AZP_STANDBY_CHECK * 1000))
        elif job_started; then
          : # a job reached the agent while it asked: it runs
        elif "$standby"; then
          left=true why="no longer a standby agent (${standby_why:-the scaler said so}); leaving" signal=TERM
        else
          left=true why="no job reached agent $AZP_AGENT_NAME within ${AZP_IDLE_TIMEOUT}s (AZP_IDLE_TIMEOUT): another agent took the job this pod was started for; leaving" signal=TERM
        fi
      fi
    elif "$stop_requested" && (($(now_ms) >= stop_deadline)); then
      why="the job did not finish within ${AZP_STOP_TIMEOUT}s of the stop request: cancelling it" signal=INT
    fi
    if [[ -n "$signal" ]]; then
      log "$why"
      kill "-$signal" "$run_pid" 2>/dev/null || true
      break
    fi
    # A background sleep keeps SIGTERM's trap prompt.
    sleep 0.2 &
    wait $! || true
  done
  local rc=0
  wait "$run_pid" || rc=$?
  run_pid=""
  if "$left"; then
    if job_started; then
      log "error: a job reached the agent while it was stopping; Azure DevOps gives it to another agent or fails it"
    else
      rc=0
    fi
  fi
  log "agent exited with $rc"
  return "$rc"
}

# trust_extra_cas adds AZP_CA_DIR's certificates to the image's bundle in a
# file of this container's own, and points OpenSSL (the agent's .NET, curl),
# git and Node.js at it. The image's own bundle is left alone.
trust_extra_cas() {
  [[ -n "${AZP_CA_DIR:-}" ]] || return 0
  local f system="" found=() bundle
  for f in "$AZP_CA_DIR"/*.crt "$AZP_CA_DIR"/*.pem; do
    [[ -f "$f" ]] && found+=("$f")
  done
  ((${#found[@]} > 0)) || die "AZP_CA_DIR $AZP_CA_DIR holds no *.crt or *.pem file"
  for f in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt /etc/ssl/cert.pem; do
    [[ -r "$f" ]] && { system=$f; break; }
  done
  bundle="$(mktemp -d)/ca-bundle.pem"
  cat ${system:+"$system"} "${found[@]}" >"$bundle"
  export SSL_CERT_FILE=$bundle CURL_CA_BUNDLE=$bundle GIT_SSL_CAINFO=$bundle NODE_EXTRA_CA_CERTS=$bundle
  log "trusting ${#found[@]} more CA file(s) from $AZP_CA_DIR${system:+ besides $system}"
}

trap on_exit EXIT
trap on_term TERM INT
trust_extra_cas

case "$mode" in
  register)
    read_secret
    register
    save_state
    registered=false # the agent container runs it; the sweeper removes it after its job
    log "agent $AZP_AGENT_NAME registered; its configuration is in $AZP_STATE_DIR"
    ;;
  run)
    unset AZP_TOKEN AZP_CLIENT_SECRET
    load_state
    wait_for_docker
    rc=0
    run_one_job || rc=$?
    exit "$rc"
    ;;
  all)
    read_secret
    wait_for_docker
    register
    rc=0
    run_one_job || rc=$?
    exit "$rc"
    ;;
esac
