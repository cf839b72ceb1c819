// Package agent tests deploy/agent/start.sh, the reference agent's entry
// point, against the project's fake Azure DevOps with a stub agent package
// (config.sh and run.sh that record how they were called).
package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	corev1 "k8s.io/api/core/v1"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo/fakeazdotest"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeentra"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/syncbuf"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/test/charts"
)

const (
	pat       = "startsh-test-pat-5f1e9c"
	agentName = "linux-agents-x7k2p-abcde"
	// A service principal's.
	tenantID     = "11111111-2222-3333-4444-555555555555"
	clientID     = "66666666-7777-8888-9999-000000000000"
	clientSecret = "sp-client-secret-7d2a41"
)

func startScript() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "deploy", "agent", "start.sh")
}

// configStub stands in for the agent's config.sh. Like the real one it gets
// the PAT through VSTS_AGENT_INPUT_TOKEN, or a service principal's client
// secret through VSTS_AGENT_INPUT_CLIENTSECRET (--auth SP), and records a
// digest of it; `remove` deletes the agent from the fake Azure DevOps (with
// the PAT, or with a token it gets from Entra ID for the service principal,
// as the real agent does), which refuses while the agent has a job (HTTP 400).
const configStub = `#!/usr/bin/env bash
{ printf 'config.sh'; printf ' %q' "$@"; printf '\n'; } >> "$STUB_LOG"
cred=${VSTS_AGENT_INPUT_TOKEN:-${VSTS_AGENT_INPUT_CLIENTSECRET:-}}
if [[ -z "$cred" ]]; then echo "config.sh: no token" >> "$STUB_LOG"; exit 1; fi
if [[ "$1" == remove ]]; then
  auth="user = \":$cred\""
  if [[ -n "${VSTS_AGENT_INPUT_CLIENTSECRET:-}" ]]; then
    tok=$(printf %s "$cred" | curl -s --data-urlencode grant_type=client_credentials --data-urlencode "client_id=$STUB_CLIENT_ID" \
      --data-urlencode client_secret@- "$AZURE_AUTHORITY_HOST/$STUB_TENANT_ID/oauth2/v2.0/token" | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
    auth="header = \"Authorization: Bearer $tok\""
  fi
  code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE -K - \
    "$AZP_URL/_apis/distributedtask/pools/$STUB_POOL_ID/agents/$STUB_AGENT_ID?api-version=7.1" <<<"$auth")
  echo "remove: HTTP $code" >> "$STUB_LOG"
  [[ "$code" == 204 ]]
else
  [[ -n "${VSTS_AGENT_INPUT_TOKEN:-}" ]] && echo "token-sha256 $(printf %s "$cred" | sha256sum | cut -d' ' -f1)" >> "$STUB_LOG"
  [[ -n "${VSTS_AGENT_INPUT_CLIENTSECRET:-}" ]] && echo "clientsecret-sha256 $(printf %s "$cred" | sha256sum | cut -d' ' -f1)" >> "$STUB_LOG"
  if [[ -n "${STUB_CONFIG_FAIL:-}" ]]; then echo "Failed to add the agent.  Try again or ctrl-c to quit"; exit 1; fi
  # What the real config.sh leaves: the agent's own settings and OAuth credentials.
  echo '{"agentId": 7, "agentName": "stub", "workFolder": "'"$AZP_WORK"'"}' > .agent
  echo '{"scheme": "OAuth", "data": {"clientId": "c0ffee"}}' > .credentials
  echo '{"d": "private-key-of-the-agent"}' > .credentials_rsaparams
fi
`

// runStub stands in for run.sh: it records its arguments, its environment
// (the job's), the process list and every file it could read that holds
// the PAT or the client secret, and prints what the agent prints. By default a job reaches it at
// once and it exits; with STUB_RUN_BLOCK the job runs until SIGINT (the
// agent cancels a job on SIGINT); with STUB_RUN_IDLE no job comes until
// SIGTERM, or until STUB_RUN_JOB_AFTER seconds, when one does and runs
// STUB_RUN_JOB_SECONDS.
const runStub = `#!/usr/bin/env bash
{ printf 'run.sh'; printf ' %q' "$@"; printf '\n'; } >> "$STUB_LOG"
env > "$STUB_DIR/job.env"
ps -eo args > "$STUB_DIR/job.ps"
# The test's copy of the secrets (in .stub) are the patterns; everything else is searched.
grep -rl --exclude-dir=.stub -F -f "$STUB_DIR/.stub/secrets" "$STUB_SEARCH" > "$STUB_DIR/job.files" 2>/dev/null || true
[[ -e .credentials ]] && echo "run.sh: agent credentials present" >> "$STUB_LOG"
trap 'echo "run.sh: INT (job cancelled)" >> "$STUB_LOG"; exit 2' INT
echo "$(date -u '+%F %TZ'): Listening for Jobs"
if [[ -n "${STUB_RUN_IDLE:-}" ]]; then
  trap 'echo "run.sh: TERM while idle" >> "$STUB_LOG"; exit 0' TERM
  if [[ -z "${STUB_RUN_JOB_AFTER:-}" ]]; then while :; do sleep 0.05; done; fi
  sleep "$STUB_RUN_JOB_AFTER" & wait $!
  trap 'echo "run.sh: TERM" >> "$STUB_LOG"; exit 0' TERM
  echo "$(date -u '+%F %TZ'): Running job: Build"
  sleep "${STUB_RUN_JOB_SECONDS:-0}"
  echo "$(date -u '+%F %TZ'): Job Build completed with result: Succeeded"
  exit 0
fi
echo "$(date -u '+%F %TZ'): Running job: Build"
if [[ -n "${STUB_RUN_BLOCK:-}" ]]; then
  trap 'echo "run.sh: TERM" >> "$STUB_LOG"; exit 0' TERM
  touch "$STUB_DIR/running"
  while :; do sleep 0.05; done
fi
exit "${STUB_RUN_EXIT:-0}"
`

type harness struct {
	t       *testing.T
	fake    *fakeazdo.Server
	org     *fakeazdo.Org
	poolID  int
	agentID int
	dir     string
	env     []string
	stderr  syncbuf.Buffer
	earlier string // the register init container's output, once the agent container runs
	cmd     *exec.Cmd
}

func newHarness(t *testing.T, extraEnv ...string) *harness {
	t.Helper()
	for _, tool := range []string{"bash", "curl", "sha256sum"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed to run start.sh: %v", tool, err)
		}
	}
	h := &harness{t: t, fake: fakeazdotest.Start(t), dir: t.TempDir()}
	h.org = h.fake.AddOrg("contoso", pat)
	h.poolID = h.org.AddPool("linux")
	// The agent as config.sh would have registered it.
	h.agentID = h.org.AddAgent(h.poolID, fakeazdo.Agent{Name: agentName, Online: true})

	agentDir := filepath.Join(h.dir, "agent")
	must(t, os.MkdirAll(agentDir, 0o755))
	must(t, os.WriteFile(filepath.Join(agentDir, "config.sh"), []byte(configStub), 0o755))
	must(t, os.WriteFile(filepath.Join(agentDir, "run.sh"), []byte(runStub), 0o755))
	must(t, os.MkdirAll(filepath.Join(agentDir, "externals", "node20", "bin"), 0o755))
	must(t, os.WriteFile(filepath.Join(agentDir, "externals", "node20", "bin", "node"), []byte("#!/bin/sh\n"), 0o755))
	must(t, os.MkdirAll(filepath.Join(h.dir, ".stub"), 0o700))
	must(t, os.WriteFile(filepath.Join(h.dir, ".stub", "pat"), []byte(pat+"\n"), 0o600))
	must(t, os.WriteFile(filepath.Join(h.dir, ".stub", "secrets"), []byte(pat+"\n"+clientSecret+"\n"), 0o600))

	h.env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + h.dir,
		"AZP_URL=" + h.fake.OrgURL("contoso"),
		"AZP_POOL=linux",
		"AZP_TOKEN_FILE=" + filepath.Join(h.dir, ".stub", "pat"),
		"AZP_AGENT_NAME=" + agentName,
		"AZP_WORK=" + filepath.Join(h.dir, "work"),
		"AZP_AGENT_DIR=" + agentDir,
		"AZP_REMOVE_DELAY=0.2",
		"STUB_DIR=" + h.dir,
		"STUB_LOG=" + filepath.Join(h.dir, "calls.log"),
		"STUB_SEARCH=" + h.dir,
		fmt.Sprintf("STUB_POOL_ID=%d", h.poolID),
		fmt.Sprintf("STUB_AGENT_ID=%d", h.agentID),
	}
	h.env = append(h.env, extraEnv...)
	return h
}

func (h *harness) start(args ...string) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	h.t.Cleanup(cancel)
	h.cmd = exec.CommandContext(ctx, "bash", append([]string{startScript()}, args...)...)
	h.cmd.Env = h.env
	h.cmd.Stdout = &h.stderr
	h.cmd.Stderr = &h.stderr
	must(h.t, h.cmd.Start())
}

// wait returns start.sh's exit code.
func (h *harness) wait() int {
	h.t.Helper()
	err := h.cmd.Wait()
	h.t.Logf("start.sh output:\n%s", h.stderr.String())
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	h.t.Fatal(err)
	return -1
}

// output is start.sh's output so far.
func (h *harness) output() string { return h.stderr.String() }

func (h *harness) run(args ...string) int {
	h.start(args...)
	return h.wait()
}

func (h *harness) calls() []string {
	b, err := os.ReadFile(filepath.Join(h.dir, "calls.log"))
	if err != nil && !os.IsNotExist(err) {
		h.t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func (h *harness) count(prefix string) int {
	n := 0
	for _, c := range h.calls() {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

func (h *harness) agentRegistered() bool {
	for _, n := range h.org.AgentNames(h.poolID) {
		if n == agentName {
			return true
		}
	}
	return false
}

// checkLifecycle asserts configure, exactly one --once run, and removal,
// and that the PAT reached config.sh and nothing else.
func (h *harness) checkLifecycle() {
	t := h.t
	t.Helper()
	calls := h.calls()
	want := fmt.Sprintf("config.sh --unattended --url %s --pool linux --agent %s --work %s --replace --acceptTeeEula --disableupdate --auth PAT",
		h.fake.OrgURL("contoso"), agentName, filepath.Join(h.dir, "work"))
	if calls[0] != want {
		t.Errorf("first call:\n got %s\nwant %s", calls[0], want)
	}
	if got := fmt.Sprintf("token-sha256 %x", sha256.Sum256([]byte(pat))); calls[1] != got {
		t.Errorf("config.sh did not get the PAT from the file: %s", calls[1])
	}
	if n := h.count("run.sh --once"); n != 1 || h.count("run.sh ") != 1 {
		t.Errorf("want exactly one `run.sh --once`, got calls %q", calls)
	}
	if h.count("config.sh remove --unattended --auth PAT") == 0 {
		t.Errorf("agent never removed: %q", calls)
	}
	if h.agentRegistered() {
		t.Error("the agent is still registered in Azure DevOps")
	}
	h.checkNoSecrets(nil)
}

func TestNormalExit(t *testing.T) {
	h := newHarness(t)
	if rc := h.run(); rc != 0 {
		t.Fatalf("exit %d", rc)
	}
	h.checkLifecycle()
}

func TestFailedJobStillRemovesAgentAndKeepsExitCode(t *testing.T) {
	h := newHarness(t, "STUB_RUN_EXIT=3")
	if rc := h.run(); rc != 3 {
		t.Fatalf("exit %d, want the agent's 3", rc)
	}
	h.checkLifecycle()
}

func TestPATFromEnvironmentIsKeptFromTheJob(t *testing.T) {
	h := newHarness(t, "AZP_TOKEN="+pat, "AZP_TOKEN_FILE=/nonexistent")
	if rc := h.run(); rc != 0 {
		t.Fatalf("exit %d", rc)
	}
	h.checkLifecycle()
	jobEnv, _ := os.ReadFile(filepath.Join(h.dir, "job.env"))
	if bytes.Contains(jobEnv, []byte("AZP_TOKEN=")) {
		t.Error("AZP_TOKEN reached the job")
	}
}

// TestSIGTERMCancelsTheJobAfterTheStopTimeout (all-in-one mode, no stop
// timeout): the job is cancelled at once (the agent gets SIGINT), and the
// removal is retried while Azure DevOps still sees the job (HTTP 400)
// until it has ended.
func TestSIGTERMCancelsTheJobAfterTheStopTimeout(t *testing.T) {
	h := newHarness(t, "STUB_RUN_BLOCK=1", "AZP_STOP_TIMEOUT=0")
	req := h.org.QueueJob(h.poolID, fakeazdo.Job{})
	must(t, h.org.AssignJob(req, h.agentID))
	h.start()
	waitFor(t, func() bool { _, err := os.Stat(filepath.Join(h.dir, "running")); return err == nil })
	must(t, h.cmd.Process.Signal(syscall.SIGTERM))
	waitFor(t, func() bool { return h.count("remove: HTTP 400") >= 2 })
	if !h.agentRegistered() {
		t.Fatal("agent deleted while its job was running")
	}
	must(t, h.org.FinishJob(req, "canceled"))
	if rc := h.wait(); rc == 0 {
		t.Errorf("exit 0 for a cancelled job")
	}
	if h.count("run.sh: INT (job cancelled)") != 1 {
		t.Errorf("the job was not cancelled with SIGINT: %q", h.calls())
	}
	h.checkLifecycle()
}

// registerThenRun plays the pod: the register init container (with the
// PAT), then the agent container (without it).
func (h *harness) registerThenRun(runEnv ...string) int {
	h.t.Helper()
	state := filepath.Join(h.dir, "state")
	externals := filepath.Join(h.dir, "shared-externals")
	must(h.t, os.MkdirAll(externals, 0o755))
	h.env = append(h.env, "AZP_STATE_DIR="+state, "AZP_EXTERNALS_DIR="+externals)
	if rc := h.run("register"); rc != 0 {
		h.t.Fatalf("register: exit %d", rc)
	}
	// The agent container: no PAT or client secret mounted, none in the environment.
	env := h.env[:0:0]
	for _, e := range h.env {
		if !strings.HasPrefix(e, "AZP_TOKEN_FILE=") && !strings.HasPrefix(e, "AZP_CLIENT_SECRET_FILE=") {
			env = append(env, e)
		}
	}
	h.env = append(append(env, "AZP_TOKEN_FILE=/var/run/secrets/azp/pat"), runEnv...)
	h.earlier = h.stderr.String()
	h.stderr.Reset()
	h.start("run")
	return h.wait()
}

// The pod: the PAT is used by the register init container only. The agent
// container's environment, its process list and every file it can read
// hold no PAT; the agent runs with its own credentials, and the externals
// are where the Docker daemon finds them.
func TestPATNeverReachesTheAgentContainer(t *testing.T) {
	h := newHarness(t)
	if rc := h.registerThenRun(); rc != 0 {
		t.Fatalf("run: exit %d", rc)
	}
	calls := h.calls()
	if calls[0] != fmt.Sprintf("config.sh --unattended --url %s --pool linux --agent %s --work %s --replace --acceptTeeEula --disableupdate --auth PAT",
		h.fake.OrgURL("contoso"), agentName, filepath.Join(h.dir, "work")) {
		t.Errorf("register did not configure the agent: %q", calls)
	}
	if h.count("run.sh --once") != 1 || h.count("run.sh: agent credentials present") != 1 {
		t.Errorf("the agent must run once with the credentials register left: %q", calls)
	}
	if h.count("config.sh remove") != 0 {
		t.Errorf("the agent container has no PAT to remove the agent with; the sweeper does it: %q", calls)
	}
	h.checkNoSecrets(nil)
	if _, err := os.Stat(filepath.Join(h.dir, "shared-externals", "node20", "bin", "node")); err != nil {
		t.Errorf("the externals were not copied where the Docker daemon sees them: %v", err)
	}
}

// SIGTERM while a job runs: the job finishes (within AZP_STOP_TIMEOUT),
// the agent is not cancelled, and start.sh exits 0.
func TestSIGTERMLetsTheRunningJobFinish(t *testing.T) {
	h := newHarness(t)
	done := make(chan int, 1)
	go func() {
		done <- h.registerThenRun("STUB_RUN_IDLE=1", "STUB_RUN_JOB_AFTER=0", "STUB_RUN_JOB_SECONDS=3", "AZP_STOP_TIMEOUT=30")
	}()
	waitFor(t, func() bool { return strings.Contains(h.output(), "Running job: Build") })
	stopped := time.Now()
	must(t, h.cmd.Process.Signal(syscall.SIGTERM))
	rc := <-done
	if rc != 0 || h.count("run.sh: INT") != 0 || h.count("run.sh: TERM") != 0 {
		t.Fatalf("exit %d, calls %q: the job must finish undisturbed", rc, h.calls())
	}
	if took := time.Since(stopped); took > 25*time.Second {
		t.Errorf("took %v after SIGTERM, beyond the stop timeout", took)
	}
	if !strings.Contains(h.output(), "Job Build completed") || !strings.Contains(h.output(), "letting it finish") {
		t.Errorf("output:\n%s", h.output())
	}
}

// SIGTERM while idle: the agent leaves at once, exit 0.
func TestSIGTERMWhileIdleLeavesAtOnce(t *testing.T) {
	h := newHarness(t)
	done := make(chan int, 1)
	go func() { done <- h.registerThenRun("STUB_RUN_IDLE=1", "AZP_STOP_TIMEOUT=600") }()
	waitFor(t, func() bool { return strings.Contains(h.output(), "Listening for Jobs") })
	stopped := time.Now()
	must(t, h.cmd.Process.Signal(syscall.SIGTERM))
	if rc := <-done; rc != 0 {
		t.Fatalf("exit %d", rc)
	}
	if took := time.Since(stopped); took > 10*time.Second || h.count("run.sh: TERM while idle") != 1 {
		t.Errorf("took %v, calls %q: an idle agent leaves at once", took, h.calls())
	}
}

// A job that outlives AZP_STOP_TIMEOUT after SIGTERM is cancelled.
func TestSIGTERMCancelsAJobPastTheStopTimeout(t *testing.T) {
	h := newHarness(t)
	done := make(chan int, 1)
	go func() { done <- h.registerThenRun("STUB_RUN_BLOCK=1", "AZP_STOP_TIMEOUT=1") }()
	waitFor(t, func() bool {
		return h.count("run.sh --once") == 1 && strings.Contains(h.output(), "Running job: Build")
	})
	must(t, h.cmd.Process.Signal(syscall.SIGTERM))
	if rc := <-done; rc == 0 {
		t.Fatal("a cancelled job exits 0")
	}
	if h.count("run.sh: INT (job cancelled)") != 1 || !strings.Contains(h.output(), "cancelling it") {
		t.Fatalf("calls %q:\n%s", h.calls(), h.output())
	}
}

// A registration that fails fails the init container, so the pod fails,
// with a message that says why.
func TestRegistrationFailureFailsThePod(t *testing.T) {
	h := newHarness(t, "STUB_CONFIG_FAIL=1", "AZP_STATE_DIR="+t.TempDir())
	if rc := h.run("register"); rc == 0 {
		t.Fatal("register succeeded although config.sh failed")
	}
	if !strings.Contains(h.output(), "config.sh could not register agent "+agentName+" in pool linux") {
		t.Errorf("unclear error:\n%s", h.output())
	}
	h2 := newHarness(t, "AZP_STATE_DIR="+t.TempDir())
	h2.org.SetPATs("another-pat")
	if rc := h2.run("register"); rc == 0 || !strings.Contains(h2.output(), "Azure DevOps rejected the PAT (HTTP 401)") {
		t.Fatalf("exit %d:\n%s", rc, h2.output())
	}
	h3 := newHarness(t, "AZP_STATE_DIR="+t.TempDir())
	if rc := h3.run("run"); rc == 0 || !strings.Contains(h3.output(), "did the register init container run?") {
		t.Fatalf("run without a registration: exit %d:\n%s", rc, h3.output())
	}
}

// An agent that no job reaches within AZP_IDLE_TIMEOUT leaves cleanly: the
// agent is stopped and removed, and the pod (the Job) succeeds.
func TestIdleAgentLeaves(t *testing.T) {
	h := newHarness(t, "STUB_RUN_IDLE=1", "AZP_IDLE_TIMEOUT=1")
	started := time.Now()
	if rc := h.run(); rc != 0 {
		t.Fatalf("exit %d, want 0: an idle exit is a success", rc)
	}
	if took := time.Since(started); took > 15*time.Second {
		t.Errorf("left after %v, want about AZP_IDLE_TIMEOUT (1s)", took)
	}
	if h.count("run.sh: TERM while idle") != 1 {
		t.Errorf("the idle agent was not stopped: %q", h.calls())
	}
	if !strings.Contains(h.stderr.String(), "no job reached agent "+agentName+" within 1s") {
		t.Errorf("no word of why it left:\n%s", h.stderr.String())
	}
	h.checkLifecycle()
}

// A job that arrives before the idle timeout runs to its end, however long.
func TestJobBeforeIdleTimeoutRunsToTheEnd(t *testing.T) {
	h := newHarness(t, "STUB_RUN_IDLE=1", "STUB_RUN_JOB_AFTER=1", "STUB_RUN_JOB_SECONDS=3", "AZP_IDLE_TIMEOUT=2")
	if rc := h.run(); rc != 0 {
		t.Fatalf("exit %d", rc)
	}
	if h.count("run.sh: TERM") != 0 {
		t.Fatalf("the agent was stopped during its job: %q", h.calls())
	}
	if !strings.Contains(h.stderr.String(), "Job Build completed") {
		t.Errorf("the job did not finish:\n%s", h.stderr.String())
	}
	h.checkLifecycle()
}

func TestBadIdleTimeout(t *testing.T) {
	h := newHarness(t, "AZP_IDLE_TIMEOUT=5m")
	if rc := h.run(); rc == 0 || !strings.Contains(h.stderr.String(), "AZP_IDLE_TIMEOUT must be a number of seconds") {
		t.Fatalf("exit %d:\n%s", rc, h.stderr.String())
	}
}

func TestWrongPATStopsBeforeConfiguring(t *testing.T) {
	h := newHarness(t)
	h.org.SetPATs("another-pat")
	if rc := h.run(); rc == 0 {
		t.Fatal("start.sh succeeded with a rejected PAT")
	}
	if !strings.Contains(h.stderr.String(), "Azure DevOps rejected the PAT (HTTP 401)") {
		t.Errorf("unclear error: %s", h.stderr.String())
	}
	if h.count("config.sh") != 0 || h.count("run.sh ") != 0 {
		t.Errorf("configured or ran anyway: %q", h.calls())
	}
}

func TestUnknownPoolStopsBeforeConfiguring(t *testing.T) {
	h := newHarness(t, "AZP_POOL=no such pool")
	if rc := h.run(); rc == 0 {
		t.Fatal("start.sh succeeded with an unknown pool")
	}
	if !strings.Contains(h.stderr.String(), "agent pool 'no such pool' does not exist") {
		t.Errorf("unclear error: %s", h.stderr.String())
	}
	if h.count("config.sh") != 0 {
		t.Errorf("configured anyway: %q", h.calls())
	}
}

func TestWaitsForTheDockerSocket(t *testing.T) {
	// Unix socket paths are short (108 bytes): not under t.TempDir().
	sockDir, err := os.MkdirTemp("", "dind")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "docker.sock")
	h := newHarness(t, "DOCKER_HOST=unix://"+sock)
	h.start()
	time.Sleep(1500 * time.Millisecond)
	if h.count("config.sh") != 0 {
		t.Fatal("configured before the Docker socket existed")
	}
	l, err := net.Listen("unix", sock)
	must(t, err)
	defer l.Close()
	if rc := h.wait(); rc != 0 {
		t.Fatalf("exit %d", rc)
	}
	if !strings.Contains(h.stderr.String(), "waiting for the Docker socket") {
		t.Error("no word of the wait")
	}
	h.checkLifecycle()
}

func TestGivesUpWithoutDocker(t *testing.T) {
	h := newHarness(t, "DOCKER_HOST=unix:///nonexistent/docker.sock", "AZP_DOCKER_WAIT=1")
	if rc := h.run(); rc == 0 {
		t.Fatal("ran without Docker")
	}
	if !strings.Contains(h.stderr.String(), "no Docker socket at /nonexistent/docker.sock") {
		t.Errorf("unclear error: %s", h.stderr.String())
	}
	if h.count("config.sh") != 0 {
		t.Errorf("configured anyway: %q", h.calls())
	}
}

// newSPHarness is a harness whose organization accepts no PAT, only the
// tokens a fake Microsoft Entra ID (TLS on loopback, its own authority
// host) issues to the service principal, when inOrg: a service principal
// that is not a user of the organization gets a token Azure DevOps refuses.
// start.sh gets AZP_AUTH=SP and the client secret's file.
func newSPHarness(t *testing.T, inOrg bool, extraEnv ...string) (*harness, *fakeentra.Server) {
	t.Helper()
	h := newHarness(t)
	h.org.SetPATs()
	entra := &fakeentra.Server{ClientID: clientID, ClientSecret: clientSecret, ExpiresIn: 3600}
	if inOrg {
		entra.OnIssue = h.org.AcceptBearerToken
	}
	srv := httptest.NewUnstartedServer(entra)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	entra.URL = srv.URL
	caFile := filepath.Join(h.dir, ".stub", "entra-ca.pem")
	must(t, os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600))
	secretFile := filepath.Join(h.dir, ".stub", "client-secret")
	must(t, os.WriteFile(secretFile, []byte(clientSecret+"\n"), 0o600))
	h.env = append(h.env, "AZP_AUTH=SP", "AZP_TENANT_ID="+tenantID, "AZP_CLIENT_ID="+clientID,
		"AZP_CLIENT_SECRET_FILE="+secretFile, "AZURE_AUTHORITY_HOST="+srv.URL+"/", "CURL_CA_BUNDLE="+caFile,
		"STUB_TENANT_ID="+tenantID, "STUB_CLIENT_ID="+clientID)
	h.env = append(h.env, extraEnv...)
	return h, entra
}

// checkNoSecrets asserts that neither the PAT, the client secret nor a
// token Entra ID issued (entra may be nil) is in start.sh's output or on a
// command line, and that none reached the environment, the process list or
// a readable file of the agent's job, once run.sh ran.
func (h *harness) checkNoSecrets(entra *fakeentra.Server) {
	t := h.t
	t.Helper()
	secrets := []string{pat, clientSecret}
	if entra != nil {
		secrets = append(secrets, entra.Tokens()...)
	}
	calls, _ := os.ReadFile(filepath.Join(h.dir, "calls.log"))
	ran := h.count("run.sh ") > 0
	for _, f := range []string{"job.env", "job.ps"} {
		b, err := os.ReadFile(filepath.Join(h.dir, f))
		if err != nil && ran {
			t.Errorf("run.sh ran but left no %s: %v", f, err)
		}
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("a secret (%d bytes) is in the job's %s", len(s), f)
			}
		}
	}
	for _, s := range secrets {
		if strings.Contains(h.earlier+h.stderr.String(), s) || bytes.Contains(calls, []byte(s)) {
			t.Errorf("a secret (%d bytes) is in start.sh's output or config.sh's arguments", len(s))
		}
	}
	if b, _ := os.ReadFile(filepath.Join(h.dir, "job.files")); len(bytes.TrimSpace(b)) != 0 {
		t.Errorf("files readable by the job hold a secret:\n%s", b)
	}
}

// A pool with no PAT at all: the register init container checks the pool
// with a token Entra ID issued for Azure DevOps' scope, and registers the
// agent with config.sh --auth SP, the client secret in its environment;
// the agent container runs the job with the agent's own credentials.
func TestServicePrincipalRegistersWithoutAPAT(t *testing.T) {
	h, entra := newSPHarness(t, true)
	if rc := h.registerThenRun(); rc != 0 {
		t.Fatalf("run: exit %d", rc)
	}
	calls := h.calls()
	want := fmt.Sprintf("config.sh --unattended --url %s --pool linux --agent %s --work %s --replace --acceptTeeEula --disableupdate --auth SP --clientId %s --tenantId %s",
		h.fake.OrgURL("contoso"), agentName, filepath.Join(h.dir, "work"), clientID, tenantID)
	if calls[0] != want {
		t.Errorf("first call:\n got %s\nwant %s", calls[0], want)
	}
	if got := fmt.Sprintf("clientsecret-sha256 %x", sha256.Sum256([]byte(clientSecret))); calls[1] != got {
		t.Errorf("config.sh did not get the client secret from the file through VSTS_AGENT_INPUT_CLIENTSECRET: %q", calls)
	}
	if h.count("token-sha256") != 0 {
		t.Errorf("config.sh got a PAT: %q", calls)
	}
	if scopes := entra.Scopes(); !slices.Equal(scopes, []string{"499b84ac-1321-427f-aa17-267ca6975798/.default"}) {
		t.Errorf("token requests' scopes %q, want one for Azure DevOps", scopes)
	}
	if seen := h.org.BearerTokensSeen(); !slices.Equal(seen, []string{"entra-access-token-1"}) {
		t.Errorf("the pool lookup must use the issued token, Azure DevOps saw %q", seen)
	}
	if h.count("run.sh --once") != 1 || h.count("run.sh: agent credentials present") != 1 || h.count("config.sh remove") != 0 {
		t.Errorf("the agent must run once with the credentials register left: %q", calls)
	}
	h.checkNoSecrets(entra)
}

// docker run: register with the service principal, run one job, and
// remove the agent with it (config.sh remove --auth SP).
func TestServicePrincipalAllInOne(t *testing.T) {
	h, entra := newSPHarness(t, true)
	if rc := h.run(); rc != 0 {
		t.Fatalf("exit %d", rc)
	}
	if h.count(fmt.Sprintf("config.sh remove --unattended --auth SP --clientId %s --tenantId %s", clientID, tenantID)) != 1 ||
		h.count("remove: HTTP 204") != 1 {
		t.Errorf("the agent was not removed with the service principal: %q", h.calls())
	}
	if h.agentRegistered() {
		t.Error("the agent is still registered in Azure DevOps")
	}
	h.checkNoSecrets(entra)
}

// What a user reads when the service principal is wrong: Entra ID's AADSTS
// reason, or Azure DevOps' refusal with what to grant; nothing configured,
// and no secret in the output.
func TestServicePrincipalFailures(t *testing.T) {
	wrong := filepath.Join(t.TempDir(), "wrong-secret")
	must(t, os.WriteFile(wrong, []byte("not-the-secret"), 0o600))
	cases := []struct {
		name  string
		inOrg bool
		env   []string
		want  string
	}{
		{"wrong secret", true, []string{"AZP_CLIENT_SECRET_FILE=" + wrong},
			"Microsoft Entra ID refused a token to service principal " + clientID + " in tenant " + tenantID + ": AADSTS7000215: Invalid client secret provided."},
		{"not a user of the organization", false, nil,
			"Azure DevOps rejected the service principal " + clientID + " (HTTP 401): add it to the organization as a user, and to pool linux's Security as Administrator"},
		{"no secret", true, []string{"AZP_CLIENT_SECRET_FILE=/nonexistent"},
			"no client secret: /nonexistent is not readable and AZP_CLIENT_SECRET is not set"},
		{"no tenant", true, []string{"AZP_TENANT_ID="}, "AZP_TENANT_ID is required with AZP_AUTH=SP"},
		{"unknown auth", true, []string{"AZP_AUTH=AAD"}, "AZP_AUTH must be PAT or SP, got 'AAD'"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, entra := newSPHarness(t, tc.inOrg, append(tc.env, "AZP_STATE_DIR="+t.TempDir())...)
			if rc := h.run("register"); rc == 0 {
				t.Fatal("register succeeded")
			}
			if !strings.Contains(h.output(), tc.want) {
				t.Errorf("output lacks %q:\n%s", tc.want, h.output())
			}
			if strings.Contains(h.output(), "Trace ID") {
				t.Errorf("Entra ID's reason is its first line, not its trace:\n%s", h.output())
			}
			if h.count("config.sh") != 0 {
				t.Errorf("configured anyway: %q", h.calls())
			}
			h.checkNoSecrets(entra)
		})
	}
}

// The chart and start.sh agree: every variable the chart gives the register
// and agent containers is one start.sh documents, and start.sh registers
// an agent with the register container's environment as the chart renders
// it (only its paths and URLs pointed at this test's files and fakes).
func TestChartEnvironmentDrivesStartSh(t *testing.T) {
	script, err := os.ReadFile(startScript())
	must(t, err)
	header := string(script[:bytes.Index(script, []byte("set -euo pipefail"))])
	// Where the pod's paths and URLs are this test's.
	local := []string{"AZP_URL", "AZURE_AUTHORITY_HOST", "AZP_TOKEN_FILE", "AZP_CLIENT_SECRET_FILE", "AZP_WORK", "AZP_STATE_DIR", "AZP_EXTERNALS_DIR"}
	for _, tc := range []struct {
		values string
		sp     bool
	}{{"ci/linux-dind-values.yaml", false}, {"ci/service-principal-values.yaml", true}} {
		t.Run(tc.values, func(t *testing.T) {
			_, objs, _, err := charts.Render(charts.Release{Chart: "azdo-agent-pool", Name: "linux-agents", Namespace: "ci"}, tc.values)
			must(t, err)
			sj, ok := charts.Find[*kedav1alpha1.ScaledJob](objs)
			if !ok {
				t.Fatal("no ScaledJob")
			}
			var register []corev1.EnvVar
			pod := sj.Spec.JobTargetRef.Template.Spec
			for _, c := range append(pod.InitContainers, pod.Containers...) {
				if c.Name == "register" {
					register = c.Env
				}
				for _, e := range c.Env {
					if (strings.HasPrefix(e.Name, "AZP_") || strings.HasPrefix(e.Name, "AZURE_")) && !strings.Contains(header, "#   "+e.Name+" ") {
						t.Errorf("container %s: the chart sets %s, which start.sh does not document", c.Name, e.Name)
					}
				}
			}

			var h *harness
			if tc.sp {
				h, _ = newSPHarness(t, true)
			} else {
				h = newHarness(t)
			}
			h.env = append(h.env, "AZP_STATE_DIR="+filepath.Join(h.dir, "state"), "AZP_EXTERNALS_DIR="+t.TempDir())
			// Of the harness's own settings keep the local stand-ins and what the
			// image or the pod name gives; everything else must come from the chart.
			vars := map[string]string{}
			for _, kv := range h.env {
				k, v, _ := strings.Cut(kv, "=")
				fromChart := strings.HasPrefix(k, "AZP_") || strings.HasPrefix(k, "AZURE_")
				if !fromChart || slices.Contains(local, k) || k == "AZP_AGENT_NAME" || k == "AZP_AGENT_DIR" {
					vars[k] = v
				}
			}
			for _, e := range register {
				switch {
				case e.ValueFrom != nil: // AZP_AGENT_NAME, the pod's name: the harness's
				case slices.Contains(local, e.Name):
					if _, ok := vars[e.Name]; !ok {
						t.Fatalf("no local stand-in for the chart's %s", e.Name)
					}
				default:
					vars[e.Name] = e.Value
				}
			}
			h.env = h.env[:0]
			for k, v := range vars {
				h.env = append(h.env, k+"="+v)
			}
			if rc := h.run("register"); rc != 0 {
				t.Fatalf("register with the chart's environment: exit %d", rc)
			}
			auth := "--auth PAT"
			if tc.sp {
				auth = fmt.Sprintf("--auth SP --clientId %s --tenantId %s", clientID, tenantID)
			}
			if calls := h.calls(); !strings.HasSuffix(calls[0], auth) {
				t.Errorf("config.sh %q, want it to end %q", calls[0], auth)
			}
		})
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// AZP_CA_DIR (the pool chart's caBundle): start.sh adds its certificates
// to the image's bundle in a file of its own and points the agent (OpenSSL),
// curl, git and Node.js at it, in the register step and for the job.
func TestExtraCAsAreTrusted(t *testing.T) {
	caDir := t.TempDir()
	const corpCA = "-----BEGIN CERTIFICATE-----\nMIIBcorporate-inspecting-proxy-ca\n-----END CERTIFICATE-----\n"
	must(t, os.WriteFile(filepath.Join(caDir, "corp.crt"), []byte(corpCA), 0o644))
	must(t, os.WriteFile(filepath.Join(caDir, "README"), []byte("not a certificate"), 0o644))
	h := newHarness(t, "AZP_CA_DIR="+caDir)
	if code := h.run(); code != 0 {
		t.Fatalf("start.sh exited %d", code)
	}
	env, err := os.ReadFile(filepath.Join(h.dir, "job.env"))
	must(t, err)
	bundle := envValue(strings.Split(string(env), "\n"), "SSL_CERT_FILE")
	for _, k := range []string{"CURL_CA_BUNDLE", "GIT_SSL_CAINFO", "NODE_EXTRA_CA_CERTS"} {
		if v := envValue(strings.Split(string(env), "\n"), k); v != bundle || v == "" {
			t.Errorf("the job's %s is %q, want the bundle %q", k, v, bundle)
		}
	}
	b, err := os.ReadFile(bundle)
	must(t, err)
	if !strings.HasSuffix(string(b), corpCA) || strings.Contains(string(b), "not a certificate") {
		t.Errorf("the bundle must end with the extra CA and hold nothing else from AZP_CA_DIR:\n%s", b[max(0, len(b)-300):])
	}
	if system, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt"); err == nil && !strings.HasPrefix(string(b), string(system)) {
		t.Error("the bundle must start with the image's own CAs")
	}
	if !strings.Contains(h.output(), "trusting 1 more CA file(s)") {
		t.Errorf("start.sh does not say it trusts the extra CA:\n%s", h.output())
	}

	empty := newHarness(t, "AZP_CA_DIR="+t.TempDir())
	if code := empty.run(); code == 0 || !strings.Contains(empty.output(), "holds no *.crt or *.pem file") {
		t.Errorf("an empty AZP_CA_DIR: exit %d\n%s", code, empty.output())
	}
}

// An idle agent that the scaler keeps as a standby agent stays past its
// idle timeout, asks again every AZP_STANDBY_CHECK seconds with its pod's
// namespace and name, and leaves cleanly once the scaler says no more.
func TestStandbyAgentStaysUntilTheScalerSaysNo(t *testing.T) {
	var mu sync.Mutex
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked = append(asked, r.URL.Query().Get("namespace")+"/"+r.URL.Query().Get("pod"))
		n := len(asked)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if n <= 3 {
			fmt.Fprint(w, `{"stay":true,"why":"schedule window Mon-Sun 00:00-24:00=2 is open"}`)
			return
		}
		fmt.Fprint(w, `{"stay":false,"why":"its trigger keeps no standby agent now"}`)
	}))
	defer srv.Close()
	h := newHarness(t, "STUB_RUN_IDLE=1", "AZP_IDLE_TIMEOUT=1", "AZP_STANDBY_CHECK=1",
		"AZP_STANDBY_URL="+srv.URL+"/api/v1/standby", "AZP_POD_NAMESPACE=team-a")
	if rc := h.run(); rc != 0 {
		t.Fatalf("exit %d, want 0", rc)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(asked) != 4 || asked[0] != "team-a/"+agentName {
		t.Errorf("asked %v, want 4 questions about team-a/%s", asked, agentName)
	}
	logs := h.stderr.String()
	if strings.Count(logs, "kept as a standby agent (schedule window") != 1 ||
		!strings.Contains(logs, "no longer a standby agent (its trigger keeps no standby agent now); leaving") {
		t.Errorf("the log does not tell the standby story:\n%s", logs)
	}
	if h.count("run.sh: TERM while idle") != 1 {
		t.Errorf("the idle agent was not stopped: %q", h.calls())
	}
	h.checkLifecycle()
}

// Without an answer from the scaler, an idle agent leaves at its idle
// timeout, as it always did.
func TestStandbyWithoutAnAnswerLeaves(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	h := newHarness(t, "STUB_RUN_IDLE=1", "AZP_IDLE_TIMEOUT=1", "AZP_STANDBY_URL=http://"+addr+"/api/v1/standby")
	if rc := h.run(); rc != 0 {
		t.Fatalf("exit %d, want 0", rc)
	}
	if !strings.Contains(h.stderr.String(), "no job reached agent "+agentName+" within 1s") {
		t.Errorf("no word of why it left:\n%s", h.stderr.String())
	}
	h.checkLifecycle()
}
