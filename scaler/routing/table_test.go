package routing

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/queue"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type unroutableCounts struct {
	mu sync.Mutex
	n  map[int]int
}

func (u *unroutableCounts) ObservePlan(k queue.Key, p *Plan) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.n[k.ID] = len(p.Unroutable())
}

func newTestRouter(o Options) (*Router, *clock, *bytes.Buffer) {
	c := &clock{now: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
	logs := &bytes.Buffer{}
	l := logrus.New()
	l.SetOutput(logs)
	o.Now, o.Logger = c.Now, l
	return NewRouter(o), c, logs
}

func snapshot(jobs ...queue.Job) *queue.Snapshot {
	return &queue.Snapshot{Pool: queue.Pool{Key: queue.Key{Org: "contoso", ID: 7}}, Jobs: jobs}
}

// poll is one KEDA poll of a trigger: three calls within milliseconds.
func poll(tb *Table, c *clock, t Trigger) {
	for range 3 {
		tb.Observe(t)
		c.Add(time.Millisecond)
	}
}

// A trigger is forgotten after ForgetAfterPolls of its own polling
// intervals, within [ForgetMin, ForgetMax], and its jobs go to the others.
func TestSilentTriggersAreForgotten(t *testing.T) {
	r, c, logs := newTestRouter(Options{ForgetAfterPolls: 3, ForgetMin: 20 * time.Second, ForgetMax: time.Minute})
	tb := r.Table(queue.Key{Org: "contoso", ID: 7})
	linux := capsTrigger(t, "linux", "Agent.OS=Linux")
	docker := capsTrigger(t, "linux-docker", "Agent.OS=Linux,docker")
	snap := snapshot(waiting(plainJob...))

	// linux polls every 10s: forgotten 30s after its last call.
	for range 3 {
		poll(tb, c, linux)
		poll(tb, c, docker)
		c.Add(10 * time.Second)
	}
	if tb.Count(snap, linux.ID) != 1 || tb.Count(snap, docker.ID) != 0 {
		t.Fatal("the plain job must count for linux while it asks")
	}
	for range 2 { // linux's ScaledJob is deleted; docker keeps polling
		poll(tb, c, docker)
		c.Add(10 * time.Second)
	}
	if tb.Count(snap, docker.ID) != 0 {
		t.Fatal("forgotten too early: after 20s of a 10s interval")
	}
	poll(tb, c, docker)
	c.Add(11 * time.Second)
	if tb.Count(snap, docker.ID) != 1 || len(tb.Triggers()) != 1 {
		t.Fatalf("after 3 intervals linux must be forgotten and docker count the job; triggers %v", tb.Triggers())
	}
	if !strings.Contains(logs.String(), "stopped asking") {
		t.Error("forgetting a trigger is not logged")
	}

	// The floor: a 1s poller is kept ForgetMin; the ceiling: a 5m poller is
	// dropped after ForgetMax; a trigger seen once, after ForgetMax.
	fast, slow, once := capsTrigger(t, "fast", "a"), capsTrigger(t, "slow", "b"), capsTrigger(t, "once", "c")
	poll(tb, c, slow)
	c.Add(5 * time.Minute)
	poll(tb, c, slow)
	poll(tb, c, fast)
	c.Add(time.Second)
	poll(tb, c, fast)
	poll(tb, c, once)
	cases := []struct {
		after time.Duration
		want  []string
	}{
		{19 * time.Second, []string{"fast", "slow", "once"}}, // fast: 3 x 1s, raised to the 20s floor
		{2 * time.Second, []string{"slow", "once"}},
		{37 * time.Second, []string{"slow", "once"}}, // slow: 3 x 5m, cut to the 1m ceiling
		{3 * time.Second, nil},                       // once: unknown interval, the ceiling
	}
	for _, cs := range cases {
		c.Add(cs.after)
		var got []string
		for _, tr := range tb.Triggers() {
			if tr.Name != "linux-docker" {
				got = append(got, tr.Name)
			}
		}
		if !sameSet(got, cs.want) {
			t.Fatalf("after %v more: triggers %v, want %v", cs.after, got, cs.want)
		}
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]bool{}
	for _, x := range a {
		m[x] = true
	}
	for _, x := range b {
		if !m[x] {
			return false
		}
	}
	return true
}

// During the warm-up waiting jobs count for nobody; running ones count.
func TestWarmupHoldsWaitingJobs(t *testing.T) {
	r, c, _ := newTestRouter(Options{Warmup: 30 * time.Second})
	tb := r.Table(queue.Key{Org: "contoso", ID: 7})
	gpu := capsTrigger(t, "gpu", "Agent.OS=Linux,docker,cuda=12.4")
	linux := capsTrigger(t, "linux", "Agent.OS=Linux")
	snap := snapshot(waiting(plainJob...), runningOn("gpu-b2c4d-f6g7h", gpuJob...))
	poll(tb, c, gpu) // the GPU ScaledJob asks first after a restart
	if n := tb.Count(snap, gpu.ID); n != 1 {
		t.Fatalf("during the warm-up the GPU trigger counts %d, want only its running job", n)
	}
	c.Add(10 * time.Second)
	poll(tb, c, linux)
	c.Add(20 * time.Second)
	if tb.Count(snap, gpu.ID) != 1 || tb.Count(snap, linux.ID) != 1 {
		t.Fatalf("after the warm-up: gpu %d, linux %d; want 1 and 1", tb.Count(snap, gpu.ID), tb.Count(snap, linux.ID))
	}
}

// Jobs nobody can run are counted in a metric and logged once each.
func TestUnroutableJobsLoggedOnce(t *testing.T) {
	obs := &unroutableCounts{n: map[int]int{}}
	r, c, logs := newTestRouter(Options{Observer: obs})
	tb := r.Table(queue.Key{Org: "contoso", ID: 7})
	linux := capsTrigger(t, "linux", "Agent.OS=Linux")
	poll(tb, c, linux)
	win := waiting("Agent.OS -equals Windows_NT")
	win.ID = 42
	for range 3 {
		tb.Count(snapshot(win, waiting(plainJob...)), linux.ID) // a new snapshot each refresh
	}
	if n := strings.Count(logs.String(), "no trigger of the pool can run this job"); n != 1 {
		t.Fatalf("logged %d times, want once:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "Windows_NT") || obs.n[7] != 1 {
		t.Fatalf("log lacks the demands or metric = %v:\n%s", obs.n, logs.String())
	}
	tb.Count(snapshot(waiting(plainJob...)), linux.ID)
	if obs.n[7] != 0 {
		t.Fatalf("metric = %d after the job left", obs.n[7])
	}
}

// The plan is computed once per snapshot and trigger set.
func TestPlanCachedPerSnapshotAndTriggerSet(t *testing.T) {
	r, c, _ := newTestRouter(Options{})
	tb := r.Table(queue.Key{Org: "contoso", ID: 7})
	linux := capsTrigger(t, "linux", "Agent.OS=Linux")
	calls := 0
	linux.Accepts = func(*queue.Job) bool { calls++; return true }
	poll(tb, c, linux)
	snap := snapshot(waiting(plainJob...))
	for range 5 {
		tb.Count(snap, linux.ID)
		poll(tb, c, linux)
	}
	if calls != 1 {
		t.Fatalf("%d filter evaluations for one snapshot, want 1", calls)
	}
	poll(tb, c, capsTrigger(t, "other", "x"))
	tb.Count(snap, linux.ID)
	if calls != 2 {
		t.Fatalf("a new trigger must re-route: %d evaluations", calls)
	}
}

// Editing a ScaledJob's metadata replaces its trigger; it does not leave
// the old one holding jobs until it is forgotten.
func TestEditedScaledJobReplacesItsTrigger(t *testing.T) {
	r, c, logs := newTestRouter(Options{})
	tb := r.Table(queue.Key{Org: "contoso", ID: 7})
	before := capsTrigger(t, "linux", "Agent.OS=Linux")
	before.Digest = "v1"
	poll(tb, c, before)
	after := capsTrigger(t, "linux", "Agent.OS=Linux,docker")
	after.Digest = "v2"
	poll(tb, c, after)
	snap := snapshot(waiting(dockerJob...))
	if got := tb.Triggers(); len(got) != 1 || got[0].Digest != "v2" {
		t.Fatalf("triggers after the edit: %+v", got)
	}
	if tb.Count(snap, after.ID) != 1 {
		t.Fatal("the edited trigger's filter must apply at once")
	}
	if !strings.Contains(logs.String(), "trigger changed") {
		t.Error("the edit is not logged")
	}
}

// With Given triggers (--read-cluster) the set is the cluster's: calls add
// nothing, silence forgets nothing, there is no warm-up, and a trigger that
// leaves the set leaves routing at once.
func TestGivenTriggersAreTheClustersOnly(t *testing.T) {
	r, c, _ := newTestRouter(Options{Given: true, Warmup: time.Hour, ForgetMin: time.Second, ForgetMax: time.Second})
	k := queue.Key{Org: "contoso", ID: 7}
	linux := Trigger{ID: "team-a/linux", Namespace: "team-a", Name: "linux", Digest: "1", InFlight: true}
	other := Trigger{ID: "team-b/linux", Namespace: "team-b", Name: "linux", Digest: "1", InFlight: true}
	changed := r.Changed()
	r.SetTriggers(map[queue.Key][]Trigger{k: {linux, other}}, 1)
	select {
	case <-changed:
	default:
		t.Fatal("a new trigger set did not signal a change (the placeholder keeper waits for it)")
	}
	tb := r.Table(k)
	poll(tb, c, Trigger{ID: "team-x/intruder", Namespace: "team-x", Name: "intruder", Digest: "9", Priority: 1000})
	c.Add(time.Hour) // far past ForgetMax and the warm-up
	snap := snapshot(queue.Job{ID: 1})
	if p := tb.Plan(snap); len(p.Triggers) != 2 || p.Count("team-a/linux") != 1 || p.Count("team-x/intruder") != 0 {
		t.Fatalf("triggers %v, counts a=%d intruder=%d", p.Triggers, p.Count("team-a/linux"), p.Count("team-x/intruder"))
	}
	// No warm-up hold even right after start: a fresh router answers at once.
	r2, _, _ := newTestRouter(Options{Given: true, Warmup: time.Hour})
	r2.SetTriggers(map[queue.Key][]Trigger{k: {linux}}, 1)
	if n := r2.Table(k).Plan(snap).Count("team-a/linux"); n != 1 {
		t.Fatalf("given triggers held by a warm-up: count %d", n)
	}
	// New pods, same triggers: the plan follows the new ownership, but the
	// trigger set did not change, so nothing is signalled.
	running := snapshot(queue.Job{ID: 2, Agent: "pod-1"})
	if n := tb.Plan(running).Count("team-a/linux"); n != 0 {
		t.Fatalf("an agent nobody owns counted: %d", n)
	}
	owned := linux
	owned.OwnsAgent = func(agent string) bool { return agent == "pod-1" }
	changed = r.Changed()
	r.SetTriggers(map[queue.Key][]Trigger{k: {owned, other}}, 2)
	select {
	case <-changed:
		t.Fatal("new pods with the same triggers signalled a change of the trigger set")
	default:
	}
	if n := tb.Plan(running).Count("team-a/linux"); n != 1 {
		t.Fatalf("after new ownership: count %d, want 1 (the cached plan was not invalidated)", n)
	}
	// team-a/linux's ScaledJob is deleted: the job goes to team-b at once.
	r.SetTriggers(map[queue.Key][]Trigger{k: {other}}, 1)
	if p := tb.Plan(snap); p.Count("team-b/linux") != 1 || len(p.Triggers) != 1 {
		t.Fatalf("after the deletion: %v", p.Triggers)
	}
	// A pool no ScaledJob uses any more has no triggers.
	r.SetTriggers(map[queue.Key][]Trigger{}, 1)
	if len(tb.Triggers()) != 0 {
		t.Fatalf("left over: %v", tb.Triggers())
	}
}
