package routing

import (
	"strings"
	"testing"
	"time"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/queue"
)

// Rule 5: a job that waits for one of the organization's parallel jobs
// counts for no trigger, a shared one included, and holds nobody back;
// running jobs count as before.
func TestBlockedJobsCountForNoTrigger(t *testing.T) {
	plain := capsTrigger(t, "plain", "Agent.OS=Linux")
	gpu := capsTrigger(t, "gpu", "Agent.OS=Linux,docker,cuda=12.4")
	shared := Trigger{ID: "ns/all#x", Namespace: "ns", Name: "all", Shared: true, InFlight: true}
	jobs := []queue.Job{queuedAt(1, 0, plainJob...), queuedAt(2, time.Second, gpuJob...), queuedAt(3, 2*time.Second, plainJob...),
		runningOn("plain-b2c4d-f6g7h", plainJob...)}
	jobs[3].ID = 4
	rules := Rules{HoldBehindOlder: time.Minute, At: t0.Add(10 * time.Second), Blocked: map[uint64]bool{1: true, 3: true},
		BlockedWhy: "2 of the organization's 2 parallel jobs are in use"}
	p := Route(jobs, []Trigger{plain, gpu, shared}, rules)
	if p.Count(plain.ID) != 1 || p.Count(gpu.ID) != 1 || p.Count(shared.ID) != 2 {
		t.Fatalf("plain %d (want its running job), gpu %d (want 1: the blocked plain job holds nobody back), shared %d (want the gpu job and the running one)",
			p.Count(plain.ID), p.Count(gpu.ID), p.Count(shared.ID))
	}
	for _, i := range []int{0, 2} {
		a := p.Assignments[i]
		if a.Reason != WaitingForParallelJob || a.CountedByOwner() || len(a.Shared) != 0 {
			t.Fatalf("blocked job %d: %+v", a.Job.ID, a)
		}
		if s := p.Explain(a); !strings.Contains(s, "waiting for a parallel job") || !strings.Contains(s, rules.BlockedWhy) {
			t.Fatalf("explanation %q", s)
		}
	}
}

// A job no trigger accepts: the explanation names the demand no template
// offers, or says that no one template meets them all.
func TestExplainUnroutableNamesTheMissingDemand(t *testing.T) {
	plain := capsTrigger(t, "plain", "Agent.OS=Linux")
	gpu := capsTrigger(t, "gpu", "Agent.OS=Linux,docker,cuda=12.4")
	win := capsTrigger(t, "win", "Agent.OS=Windows_NT,msbuild")
	jobs := []queue.Job{waiting("Agent.OS -equals Linux", "fpga"), waiting("Agent.OS -equals Linux", "msbuild")}
	p := Route(jobs, []Trigger{plain, gpu, win}, Rules{})
	if a := p.Assignments[0]; a.Reason != Unroutable || !strings.Contains(p.Explain(a), `no trigger accepts ["fpga"] even alone`) {
		t.Fatalf("fpga job: %s", p.Explain(a))
	}
	if a := p.Assignments[1]; a.Reason != Unroutable || !strings.Contains(p.Explain(a), "no trigger meets them all") {
		t.Fatalf("Linux+msbuild job: %s", p.Explain(a))
	}
}
