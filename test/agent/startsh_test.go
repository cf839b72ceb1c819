// Package agent tests deploy/agent/start.sh, the reference agent's entry
// point, against the project's fake Azure DevOps with a stub agent package
// (config.sh and run.sh that record how they were called).
package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/fakeazdo"
)

const (
	pat       = "startsh-test-pat-5f1e9c"
	agentName = "linux-agents-x7k2p-abcde"
)

func startScript() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "deploy", "agent", "start.sh")
}

// configStub stands in for the agent's config.sh. Like the real one it gets
// the PAT through VSTS_AGENT_INPUT_TOKEN; `remove` deletes the agent from
// the fake Azure DevOps, which refuses while the agent has a job (HTTP 400).
const configStub = `#!/usr/bin/env bash
{ printf 'config.sh'; printf ' %q' "$@"; printf '\n'; } >> "$STUB_LOG"
if [[ -z "${VSTS_AGENT_INPUT_TOKEN:-}" ]]; then echo "config.sh: no token" >> "$STUB_LOG"; exit 1; fi
if [[ "$1" == remove ]]; then
  code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE -K - \
    "$AZP_URL/_apis/distributedtask/pools/$STUB_POOL_ID/agents/$STUB_AGENT_ID?api-version=7.1" \
    <<<"user = \":$VSTS_AGENT_INPUT_TOKEN\"")
  echo "remove: HTTP $code" >> "$STUB_LOG"
  [[ "$code" == 204 ]]
else
  echo "token-sha256 $(printf %s "$VSTS_AGENT_INPUT_TOKEN" | sha256sum | cut -d' ' -f1)" >> "$STUB_LOG"
fi
`

// runStub stands in for run.sh: it records its arguments and environment
// (the job's environment) and prints what the agent prints. By default a
// job reaches it at once and it exits; with STUB_RUN_BLOCK the job runs
// until SIGTERM; with STUB_RUN_IDLE no job comes until SIGTERM, or until
// STUB_RUN_JOB_AFTER seconds, when one does and runs STUB_RUN_JOB_SECONDS.
const runStub = `#!/usr/bin/env bash
{ printf 'run.sh'; printf ' %q' "$@"; printf '\n'; } >> "$STUB_LOG"
env > "$STUB_DIR/job.env"
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
	stderr  bytes.Buffer
	cmd     *exec.Cmd
}

func newHarness(t *testing.T, extraEnv ...string) *harness {
	t.Helper()
	for _, tool := range []string{"bash", "curl", "sha256sum"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed to run start.sh: %v", tool, err)
		}
	}
	h := &harness{t: t, fake: fakeazdo.New(), dir: t.TempDir()}
	if err := h.fake.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.fake.Close)
	h.org = h.fake.AddOrg("contoso", pat)
	h.poolID = h.org.AddPool("linux")
	// The agent as config.sh would have registered it.
	h.agentID = h.org.AddAgent(h.poolID, fakeazdo.Agent{Name: agentName, Online: true})

	agentDir := filepath.Join(h.dir, "agent")
	must(t, os.MkdirAll(agentDir, 0o755))
	must(t, os.WriteFile(filepath.Join(agentDir, "config.sh"), []byte(configStub), 0o755))
	must(t, os.WriteFile(filepath.Join(agentDir, "run.sh"), []byte(runStub), 0o755))
	must(t, os.WriteFile(filepath.Join(h.dir, "pat"), []byte(pat+"\n"), 0o600))

	h.env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + h.dir,
		"AZP_URL=" + h.fake.OrgURL("contoso"),
		"AZP_POOL=linux",
		"AZP_TOKEN_FILE=" + filepath.Join(h.dir, "pat"),
		"AZP_AGENT_NAME=" + agentName,
		"AZP_WORK=" + filepath.Join(h.dir, "work"),
		"AZP_AGENT_DIR=" + agentDir,
		"AZP_REMOVE_DELAY=0.2",
		"STUB_DIR=" + h.dir,
		"STUB_LOG=" + filepath.Join(h.dir, "calls.log"),
		fmt.Sprintf("STUB_POOL_ID=%d", h.poolID),
		fmt.Sprintf("STUB_AGENT_ID=%d", h.agentID),
	}
	h.env = append(h.env, extraEnv...)
	return h
}

func (h *harness) start() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	h.t.Cleanup(cancel)
	h.cmd = exec.CommandContext(ctx, "bash", startScript())
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

func (h *harness) run() int {
	h.start()
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
	want := fmt.Sprintf("config.sh --unattended --url %s --auth PAT --pool linux --agent %s --work %s --replace --acceptTeeEula",
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
	jobEnv, err := os.ReadFile(filepath.Join(h.dir, "job.env"))
	must(t, err)
	if bytes.Contains(jobEnv, []byte(pat)) {
		t.Error("the PAT is in the job's environment")
	}
	if strings.Contains(h.stderr.String(), pat) {
		t.Error("the PAT is in start.sh's output")
	}
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

// TestSIGTERMWhileJobRuns: the pod is told to stop mid-job. start.sh stops
// the agent, then retries removal while Azure DevOps still sees the job
// (HTTP 400), and succeeds once the job has finished.
func TestSIGTERMWhileJobRuns(t *testing.T) {
	h := newHarness(t, "STUB_RUN_BLOCK=1")
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
	if rc := h.wait(); rc != 143 {
		t.Errorf("exit %d, want 143 (SIGTERM)", rc)
	}
	if h.count("run.sh: TERM") != 1 {
		t.Errorf("run.sh was not stopped with SIGTERM: %q", h.calls())
	}
	h.checkLifecycle()
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
