package agent

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo/fakeazdotest"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/syncbuf"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/test/charts"
)

// The stand-in agent (test/standinagent) is what the node tier's agent
// image runs as config.sh and run.sh. Here it runs under the real start.sh,
// in its two modes as the pool chart's pod runs them, against the fake
// Azure DevOps: the agent protocol without Kubernetes.

var (
	standinOnce sync.Once
	standinBin  string
	standinErr  error
)

// standinAgentDir is an agent directory whose config.sh and run.sh are the
// stand-in agent, as the node tier's image has it.
func standinAgentDir(t *testing.T) string {
	t.Helper()
	standinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "standin-agent-")
		if err != nil {
			standinErr = err
			return
		}
		standinBin = filepath.Join(dir, "standinagent")
		out, err := exec.Command("go", "build", "-o", standinBin, filepath.Join(charts.RepoRoot(), "test", "standinagent")).CombinedOutput()
		if err != nil {
			standinErr = err
			t.Logf("%s", out)
		}
	})
	if standinErr != nil {
		t.Fatal(standinErr)
	}
	dir := filepath.Join(t.TempDir(), "agent")
	must(t, os.MkdirAll(filepath.Join(dir, "bin"), 0o755))
	b, err := os.ReadFile(standinBin)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, "bin", "standinagent"), b, 0o755))
	for _, cmd := range []string{"config", "run"} {
		must(t, os.WriteFile(filepath.Join(dir, cmd+".sh"), []byte("#!/usr/bin/env bash\nexec \"$(dirname \"$0\")/bin/standinagent\" "+cmd+" \"$@\"\n"), 0o755))
	}
	must(t, os.MkdirAll(filepath.Join(dir, "externals"), 0o755))
	return dir
}

type standin struct {
	t      *testing.T
	org    *fakeazdo.Org
	poolID int
	env    []string
	out    syncbuf.Buffer
}

func newStandin(t *testing.T) *standin {
	t.Helper()
	fake := fakeazdotest.Start(t)
	old := fakeazdo.MessagePollTimeout
	fakeazdo.MessagePollTimeout = time.Second
	t.Cleanup(func() { fakeazdo.MessagePollTimeout = old })
	s := &standin{t: t, org: fake.AddOrg("contoso", pat)}
	s.poolID = s.org.AddPool("linux")
	dir := filepath.Dir(standinAgentDir(t))
	must(t, os.WriteFile(filepath.Join(dir, "pat"), []byte(pat), 0o600))
	s.env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + dir,
		"AZP_URL=" + fake.OrgURL("contoso"), "AZP_POOL=linux", "AZP_AGENT_NAME=" + agentName,
		"AZP_TOKEN_FILE=" + filepath.Join(dir, "pat"), "AZP_AGENT_DIR=" + filepath.Join(dir, "agent"),
		"AZP_WORK=" + filepath.Join(dir, "work"), "AZP_STATE_DIR=" + filepath.Join(dir, "state"),
		"docker=/usr/bin/docker", // the agent image's ENV: the "docker" capability
	}
	return s
}

// start runs start.sh in a mode; the caller waits.
func (s *standin) start(mode string, extraEnv ...string) *exec.Cmd {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	s.t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, "bash", startScript(), mode)
	cmd.Env = append(slices.Clone(s.env), extraEnv...)
	cmd.Stdout, cmd.Stderr = &s.out, &s.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // a container: killed as a whole
	must(s.t, cmd.Start())
	return cmd
}

func (s *standin) register() {
	s.t.Helper()
	if err := s.start("register").Wait(); err != nil {
		s.t.Fatalf("start.sh register: %v\n%s", err, s.out.String())
	}
}

func (s *standin) waitFor(what string, cond func() bool) {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			s.t.Fatalf("no %s after 30s:\n%s", what, s.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *standin) online() bool {
	a, ok := s.org.Agent(s.poolID, agentName)
	return ok && a.Status != nil && *a.Status == "online"
}

// A queued job reaches the agent the register init container registered;
// the agent container signs in with the agent's own key, runs the job's
// script in the work folder, reports it succeeded and leaves.
func TestStandinAgentRunsOneJob(t *testing.T) {
	s := newStandin(t)
	s.register()
	a, ok := s.org.Agent(s.poolID, agentName)
	if !ok || (*a.SystemCapabilities)["docker"] == "" || (*a.SystemCapabilities)["Agent.OS"] != "Linux" {
		t.Fatalf("registered agent %v, want capabilities Agent.OS and docker", a.SystemCapabilities)
	}
	for _, f := range []string{".agent", ".credentials", ".credentials_rsaparams"} {
		if _, err := os.Stat(filepath.Join(envValue(s.env, "AZP_STATE_DIR"), f)); err != nil {
			t.Errorf("register left no %s: %v", f, err)
		}
	}
	// "cache" is only in the agent container's environment: the session
	// carries it, as the agent's listener sends what it finds at start.
	id := s.org.QueueJob(s.poolID, fakeazdo.Job{Name: "Build", Demands: []string{"Agent.OS -equals Linux", "docker", "cache"},
		Script: `echo "built by $AZP_AGENT_NAME" > result.txt`})
	run := s.start("run", "AZP_IDLE_TIMEOUT=30", "cache=/azp/cache")
	if err := run.Wait(); err != nil {
		t.Fatalf("start.sh run: %v\n%s", err, s.out.String())
	}
	if r, ok := s.org.JobResult(id); !ok || r != "succeeded" {
		t.Fatalf("job result %q (%v), want succeeded:\n%s", r, ok, s.out.String())
	}
	got, err := os.ReadFile(filepath.Join(envValue(s.env, "AZP_WORK"), "result.txt"))
	if err != nil || strings.TrimSpace(string(got)) != "built by "+agentName {
		t.Errorf("the job's script wrote %q (%v)", got, err)
	}
	if tokens := s.org.AgentTokens(); !slices.Equal(tokens, []string{agentName}) {
		t.Errorf("agents that signed in with their own key: %v, want [%s]", tokens, agentName)
	}
	if s.online() {
		t.Error("the agent is still online after its one job")
	}
	for _, line := range []string{"Running job: Build", "completed with result: succeeded", "agent exited with 0"} {
		if !strings.Contains(s.out.String(), line) {
			t.Errorf("output lacks %q:\n%s", line, s.out.String())
		}
	}
}

// SIGTERM while a job runs and AZP_STOP_TIMEOUT is over: start.sh cancels
// the job (SIGINT to the agent), which reports it canceled.
func TestStandinAgentCancelsOnStop(t *testing.T) {
	s := newStandin(t)
	s.register()
	id := s.org.QueueJob(s.poolID, fakeazdo.Job{Name: "Long", Script: "sleep 60"})
	run := s.start("run", "AZP_IDLE_TIMEOUT=30", "AZP_STOP_TIMEOUT=0")
	s.waitFor("running job", func() bool { return strings.Contains(s.out.String(), "Running job: Long") })
	must(t, run.Process.Signal(syscall.SIGTERM))
	_ = run.Wait()
	if r, ok := s.org.JobResult(id); !ok || r != "canceled" {
		t.Fatalf("job result %q (%v), want canceled:\n%s", r, ok, s.out.String())
	}
	if s.online() {
		t.Error("the agent is still online")
	}
}

// SIGTERM while idle: the agent closes its session and start.sh exits 0.
func TestStandinAgentLeavesWhenIdle(t *testing.T) {
	s := newStandin(t)
	s.register()
	run := s.start("run", "AZP_IDLE_TIMEOUT=30")
	s.waitFor("online agent", s.online)
	must(t, run.Process.Signal(syscall.SIGTERM))
	if err := run.Wait(); err != nil {
		t.Fatalf("start.sh run after SIGTERM while idle: %v\n%s", err, s.out.String())
	}
	if s.online() {
		t.Error("the agent is still online")
	}
}

// An agent killed mid-job never reports: when its lock runs out the job
// fails and, its session gone, the agent is offline (for the sweeper).
func TestStandinAgentKilledMidJobFailsTheJob(t *testing.T) {
	s := newStandin(t)
	oldLock, oldSession := fakeazdo.JobLockDuration, fakeazdo.SessionTimeout
	fakeazdo.JobLockDuration, fakeazdo.SessionTimeout = 2*time.Second, time.Second
	t.Cleanup(func() { fakeazdo.JobLockDuration, fakeazdo.SessionTimeout = oldLock, oldSession })
	s.register()
	// The step ends with the agent that runs it.
	id := s.org.QueueJob(s.poolID, fakeazdo.Job{Name: "Doomed", Script: "while kill -0 $PPID 2>/dev/null; do sleep 0.2; done"})
	run := s.start("run", "AZP_IDLE_TIMEOUT=30")
	s.waitFor("running job", func() bool { return strings.Contains(s.out.String(), "Running job: Doomed") })
	// The container dies: every process of it at once.
	must(t, syscall.Kill(-run.Process.Pid, syscall.SIGKILL))
	_ = run.Wait()
	s.waitFor("failed job", func() bool { r, ok := s.org.JobResult(id); return ok && r == "failed" })
	s.waitFor("offline agent", func() bool { return !s.online() })
}

func envValue(env []string, key string) string {
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}
