package budget

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
	"github.com/sirupsen/logrus"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/queue"
)

type usageSource struct {
	mu    sync.Mutex
	total int
	used  []uint64
	err   error
	calls int
}

func (s *usageSource) ResourceUsage(_ context.Context, tag string) (*taskagent.ResourceUsage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if tag != "Private" {
		return nil, errors.New("asked for " + tag)
	}
	if s.err != nil {
		return nil, s.err
	}
	var running []taskagent.TaskAgentJobRequest
	for _, id := range s.used {
		running = append(running, taskagent.TaskAgentJobRequest{RequestId: &id})
	}
	n := len(s.used)
	return &taskagent.ResourceUsage{ResourceLimit: &taskagent.ResourceLimit{TotalCount: &s.total}, UsedCount: &n, RunningRequests: &running}, nil
}

type recorder struct {
	mu sync.Mutex
	d  map[string]Decision
}

func (r *recorder) ObserveBudget(org string, _ Setting, _ Usage, d Decision) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.d[org] = d
}

type testClock struct{ now time.Time }

func (c *testClock) Now() time.Time { return c.now }

// Two organizations, three pools: one reading per organization whatever
// the number of pools; the budget applies across an organization's pools;
// a failing or stale reading, and the setting off, block nothing and say
// so once in the log.
func TestKeeper(t *testing.T) {
	clock := &testClock{now: t0.Add(time.Hour)}
	snaps := map[string][]*queue.Snapshot{
		"contoso": {
			{Pool: queue.Pool{Key: queue.Key{Org: "contoso", ID: 1}}, Jobs: []queue.Job{runningJob(1, 0), waitingJob(3, 3*time.Second)}},
			{Pool: queue.Pool{Key: queue.Key{Org: "contoso", ID: 2}}, Jobs: []queue.Job{waitingJob(2, 2*time.Second), waitingJob(4, 4*time.Second)}},
		},
		"fabrikam": {{Pool: queue.Pool{Key: queue.Key{Org: "fabrikam", ID: 1}}, Jobs: []queue.Job{waitingJob(7, 0), waitingJob(8, time.Second)}}},
		"tailspin": {{Pool: queue.Pool{Key: queue.Key{Org: "tailspin", ID: 1}}, Jobs: []queue.Job{waitingJob(9, 0)}}},
	}
	contoso := &usageSource{total: 2, used: []uint64{1}}
	tailspin := &usageSource{total: 5}
	logs := &bytes.Buffer{}
	log := logrus.New()
	log.SetOutput(logs)
	rec := &recorder{d: map[string]Decision{}}
	k := NewKeeper(map[string]Setting{"contoso": {}, "fabrikam": {Fixed: 1}, "tailspin": {Off: true}},
		map[string]UsageSource{"contoso": contoso, "tailspin": tailspin},
		func(org string) []*queue.Snapshot { return snaps[org] },
		Options{Interval: time.Second, StaleAfter: time.Minute, Observer: rec, Logger: log, Now: clock.Now})

	// Before the first reading, every waiting private job waits for it,
	// and the keeper is asked for one.
	if b, why, _ := k.Blocked("contoso"); len(b) != 3 || !strings.Contains(why, "being read") {
		t.Fatalf("blocked %v (%s) before any reading; want the 3 waiting jobs", b, why)
	}
	select {
	case <-k.wake:
	default:
		t.Fatal("no reading asked for")
	}
	k.ReadAll(context.Background())
	if contoso.calls != 1 || tailspin.calls != 0 {
		t.Fatalf("calls: contoso %d (want 1 for two pools), tailspin %d (off: want 0)", contoso.calls, tailspin.calls)
	}
	b, why, v1 := k.Blocked("contoso")
	if len(b) != 2 || !b[3] || !b[4] || !strings.Contains(why, "1 of the organization's 2 parallel jobs are in use") {
		t.Fatalf("contoso blocked %v (%s); want jobs 3 and 4 (one free parallel job, for job 2 of the other pool)", b, why)
	}
	if _, _, again := k.Blocked("contoso"); again != v1 {
		t.Fatal("the version changed with nothing new")
	}
	if b, _, _ := k.Blocked("fabrikam"); len(b) != 1 || !b[8] {
		t.Fatalf("fabrikam (fixed 1) blocked %v; want job 8", b)
	}
	if b, _, _ := k.Blocked("tailspin"); len(b) != 0 || rec.d["tailspin"].Off == "" {
		t.Fatalf("tailspin (off) blocked %v, decision %+v", b, rec.d["tailspin"])
	}

	// The reading fails: fail open, and say so once.
	contoso.err = errors.New("HTTP 503: busy")
	k.ReadAll(context.Background())
	for range 2 {
		if b, _, v := k.Blocked("contoso"); len(b) != 0 || v == v1 {
			t.Fatalf("after a failed reading: blocked %v, version %d (was %d)", b, v, v1)
		}
	}
	if n := strings.Count(logs.String(), "not applying the organization's parallel jobs"); n != 1 {
		t.Fatalf("the fail-open warning was logged %d times, want once:\n%s", n, logs.String())
	}
	if rec.d["contoso"].Off == "" || !strings.Contains(rec.d["contoso"].Off, "HTTP 503") {
		t.Fatalf("decision %+v does not say why it is off", rec.d["contoso"])
	}

	// It works again, then the reading ages past StaleAfter.
	contoso.err = nil
	k.ReadAll(context.Background())
	if b, _, _ := k.Blocked("contoso"); len(b) != 2 {
		t.Fatalf("after a good reading again: blocked %v", b)
	}
	// A reading older than StaleAfter (the pools were idle): the waiting
	// jobs wait for a new one, which the next ReadAll makes.
	clock.now = clock.now.Add(2 * time.Minute)
	if b, _, _ := k.Blocked("contoso"); len(b) != 3 || !rec.d["contoso"].Pending {
		t.Fatalf("with a stale reading: blocked %v, decision %+v; want all 3 waiting, pending", b, rec.d["contoso"])
	}
	k.ReadAll(context.Background())
	if b, _, _ := k.Blocked("contoso"); len(b) != 2 || contoso.calls != 4 {
		t.Fatalf("after a new reading: blocked %v, %d calls", b, contoso.calls)
	}
}

func TestParseSetting(t *testing.T) {
	for in, want := range map[string]Setting{"": {}, "auto": {}, "AUTO": {}, "off": {Off: true}, "3": {Fixed: 3}} {
		if got, err := ParseSetting(in); err != nil || got != want {
			t.Errorf("ParseSetting(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"0", "-1", "many", "2.5"} {
		if _, err := ParseSetting(bad); err == nil || !strings.Contains(err.Error(), "auto, off or a positive number") {
			t.Errorf("ParseSetting(%q): %v", bad, err)
		}
	}
}

// A decision that needs a reading waits for it (at most Options.Wait), so
// the first call after a start already has the budget applied.
func TestKeeperFirstDecisionWaitsForTheReading(t *testing.T) {
	snaps := []*queue.Snapshot{{Pool: queue.Pool{Key: queue.Key{Org: "contoso", ID: 1}},
		Jobs: []queue.Job{waitingJob(1, 0), waitingJob(2, time.Second), waitingJob(3, 2*time.Second)}}}
	src := &usageSource{total: 2}
	k := NewKeeper(map[string]Setting{"contoso": {}}, map[string]UsageSource{"contoso": src},
		func(string) []*queue.Snapshot { return snaps }, Options{Interval: time.Hour, StaleAfter: time.Hour, Wait: 10 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); k.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if b, why, _ := k.Blocked("contoso"); len(b) != 1 || !b[3] {
		t.Fatalf("first decision: blocked %v (%s); want job 3 only (2 parallel jobs)", b, why)
	}
}

// A waiting job no pod the scaler starts could run (no trigger of its pool
// accepts it) takes no parallel job from one that could.
func TestJobsNobodyCanRunTakeNoParallelJob(t *testing.T) {
	snaps := []*queue.Snapshot{{Pool: queue.Pool{Key: queue.Key{Org: "contoso", ID: 1}},
		Jobs: []queue.Job{waitingJob(1, 0), waitingJob(2, time.Second), waitingJob(3, 2*time.Second)}}}
	gen := uint64(1)
	runnable := func(j *queue.Job) bool { return j.ID != 1 } // job 1: nobody's
	k := NewKeeper(map[string]Setting{"contoso": {Fixed: 1}}, nil, func(string) []*queue.Snapshot { return snaps },
		Options{Runnable: func(queue.Key) func(*queue.Job) bool { return runnable }, Generation: func() uint64 { return gen }})
	if b, _, _ := k.Blocked("contoso"); b[1] || b[2] || !b[3] {
		t.Fatalf("blocked %v; want job 3 only: job 2 takes the one parallel job, job 1 none", b)
	}
	// A trigger that accepts job 1 arrives: it is the oldest again.
	runnable = func(*queue.Job) bool { return true }
	gen++
	if b, _, _ := k.Blocked("contoso"); b[1] || !b[2] || !b[3] {
		t.Fatalf("after the triggers changed: blocked %v; want 2 and 3", b)
	}
}

// With the budget off, a decision costs nothing on KEDA's call path: the
// organization's snapshots are not even read (it once rebuilt the job list
// at every call: GetMetrics p99 went from 1.0 to 11 ms in the benchmark).
func TestOffDoesNoWork(t *testing.T) {
	reads := 0
	k := NewKeeper(map[string]Setting{"contoso": {Off: true}}, nil, func(string) []*queue.Snapshot { reads++; return nil }, Options{})
	for range 3 {
		if b, _, _ := k.Blocked("contoso"); len(b) != 0 {
			t.Fatalf("blocked %v with the budget off", b)
		}
	}
	if reads != 0 {
		t.Fatalf("the snapshots were read %d times for an organization whose budget is off", reads)
	}
}

// BenchmarkBlocked is a decision on KEDA's call path once made (cached):
// go test -run '^$' -bench Blocked ./scaler/budget
func BenchmarkBlocked(b *testing.B) {
	var snaps []*queue.Snapshot
	for p := range 20 {
		s := &queue.Snapshot{Pool: queue.Pool{Key: queue.Key{Org: "contoso", ID: p + 1}}}
		for j := range 10 {
			s.Jobs = append(s.Jobs, waitingJob(uint64(p*10+j+1), time.Duration(j)*time.Second))
		}
		snaps = append(snaps, s)
	}
	k := NewKeeper(map[string]Setting{"contoso": {Fixed: 5}}, nil, func(string) []*queue.Snapshot { return snaps }, Options{})
	b.ReportAllocs()
	for b.Loop() {
		k.Blocked("contoso")
	}
}
