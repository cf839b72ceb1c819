package service_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/scaledjobs"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/service"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/standby"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// standbyRecorder keeps what the service reports of standby.
type standbyRecorder struct {
	mu     sync.Mutex
	wanted map[string]int
	ready  map[string]int
	used   map[string]int
}

func newStandbyRecorder() *standbyRecorder {
	return &standbyRecorder{wanted: map[string]int{}, ready: map[string]int{}, used: map[string]int{}}
}

func (r *standbyRecorder) ObserveStandbyWanted(ns, name string, n int) {
	r.mu.Lock()
	r.wanted[ns+"/"+name] = n
	r.mu.Unlock()
}

func (r *standbyRecorder) ObserveStandbyReady(ns, name string, n int) {
	r.mu.Lock()
	r.ready[ns+"/"+name] = n
	r.mu.Unlock()
}

func (r *standbyRecorder) ObserveStandbyUsed(ns, name string) {
	r.mu.Lock()
	r.used[ns+"/"+name]++
	r.mu.Unlock()
}

// KEDA gets routed jobs + own running jobs + standby: with no job a
// trigger with standby 2 asks for 2 pods, a waiting job makes it 3, and a
// schedule's window decides the number while it is open (the clock is the
// test's).
func TestStandbyIsInTheCount(t *testing.T) {
	now := time.Date(2026, 12, 7, 7, 0, 0, 0, time.UTC) // a Monday, 07:00 UTC
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	obs := newStandbyRecorder()
	e, orgs := newEnv(t, envOptions{verify: true, standbyNow: clock, standbyObserver: obs}, orgSpec{"contoso", "pat-standby"})
	org := orgs["contoso"]
	pool := org.AddPool("linux")
	fixed := map[string]string{"poolName": "linux", "standby": "2"}
	// A second template of the pool: a waiting job counts for "agents"
	// (same rank, smaller name), so this one counts its standby only.
	sched := map[string]string{"poolName": "linux", "standbySchedule": "Mon-Fri 08:00-18:00=4", "standbyTimeZone": "Europe/Berlin"}
	e.svc.SyncTriggers(context.Background(), []scaledjobs.Target{clusterTarget("team-a", "agents", fixed), clusterTarget("team-a", "scheduled", sched)},
		scaledjobs.NewOwners(nil), 1)
	waitCount := func(name string, md map[string]string, want float64) {
		t.Helper()
		e.waitCount("team-a", name, md, want)
	}
	waitCount("agents", fixed, 2)
	org.QueueJob(pool, fakeazdo.Job{})
	waitCount("agents", fixed, 3)
	if obs.wanted["team-a/agents"] != 2 {
		t.Errorf("standby_wanted %v", obs.wanted)
	}
	waitCount("scheduled", sched, 4) // 08:00 in Berlin
	mu.Lock()
	now = now.Add(10 * time.Hour) // 18:00 in Berlin: closed
	mu.Unlock()
	waitCount("scheduled", sched, 0)
	waitCount("agents", fixed, 3) // standby 2 outside any schedule
}

// Without --read-cluster a trigger with standby is refused, naming the key:
// its idle pods could not ask whether they stay.
func TestStandbyNeedsTheCluster(t *testing.T) {
	e, orgs := newEnv(t, envOptions{}, orgSpec{"contoso", "pat-standby-nocluster"})
	orgs["contoso"].AddPool("linux")
	_, err := e.metric(map[string]string{"poolName": "linux", "standby": "2"})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `"standby"`) || !strings.Contains(err.Error(), "--read-cluster") {
		t.Fatalf("%v, want InvalidArgument naming standby and --read-cluster", err)
	}
}

// The standby endpoint's decision (Verify): a pod of a ScaledJob that
// keeps 2 standby agents stays when it is one of the 2 oldest idle pods; a
// pod whose agent has a job does not count as idle; an unknown ScaledJob
// and a ScaledJob without standby say leave.
func TestStandbyPodKeepsTheOldestIdle(t *testing.T) {
	obs := newStandbyRecorder()
	e, orgs := newEnv(t, envOptions{verify: true, standbyObserver: obs}, orgSpec{"contoso", "pat-standby-pod"})
	org := orgs["contoso"]
	pool := org.AddPool("linux")
	busyAgent := org.AddAgent(pool, fakeazdo.Agent{Name: "agents-aaaaa-00001", Online: true})
	job := org.QueueJob(pool, fakeazdo.Job{})
	if err := org.AssignJob(job, busyAgent); err != nil {
		t.Fatal(err)
	}
	e.svc.SyncTriggers(context.Background(), []scaledjobs.Target{
		clusterTarget("team-a", "agents", map[string]string{"poolName": "linux", "standbySchedule": "Mon-Sun 00:00-24:00=2"}),
		clusterTarget("team-a", "plain", map[string]string{"poolName": "linux"}),
	}, scaledjobs.NewOwners(nil), 1)
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	pods := func() []standby.Pod {
		return []standby.Pod{
			{Name: "agents-aaaaa-00001", Created: t0}, // the oldest, but busy
			{Name: "agents-bbbbb-00002", Created: t0.Add(time.Minute)},
			{Name: "agents-ccccc-00003", Created: t0.Add(2 * time.Minute)},
			{Name: "agents-ddddd-00004", Created: t0.Add(3 * time.Minute)},
		}
	}
	for pod, want := range map[string]bool{"agents-aaaaa-00001": false, "agents-bbbbb-00002": true, "agents-ccccc-00003": true, "agents-ddddd-00004": false} {
		stay, why := e.svc.StandbyPod(context.Background(), "team-a/agents", pod, pods())
		if stay != want {
			t.Errorf("%s: stay=%v (%s), want %v", pod, stay, why, want)
		}
		if strings.Contains(why, "Mon-Sun") || !strings.Contains(why, "2 standby agents") {
			t.Errorf("%s: the answer %q shows the trigger's settings, or not how many stay", pod, why)
		}
	}
	if obs.ready["team-a/agents"] != 3 {
		t.Errorf("standby_ready %v, want 3 idle pods", obs.ready)
	}
	if stay, why := e.svc.StandbyPod(context.Background(), "team-b/agents", "agents-bbbbb-00002", pods()); stay || !strings.Contains(why, "no ScaledJob") {
		t.Errorf("an unknown ScaledJob: %v %q", stay, why)
	}
	if stay, why := e.svc.StandbyPod(context.Background(), "team-a/plain", "plain-bbbbb-00002", nil); stay || !strings.Contains(why, "no standby") {
		t.Errorf("a ScaledJob without standby: %v %q", stay, why)
	}
}

// standby: auto learns from the jobs routed to its trigger: each job once,
// in the bucket it was queued in, and a week later keeps ready what that
// time of the week needed.
func TestStandbyAutoLearnsFromRoutedJobs(t *testing.T) {
	demand := service.NewDemand(nil)
	e, orgs := newEnv(t, envOptions{verify: true, demand: demand}, orgSpec{"contoso", "pat-standby-auto"})
	org := orgs["contoso"]
	pool := org.AddPool("linux")
	auto := map[string]string{"poolName": "linux", "standby": "auto", "standbyPercentile": "90"}
	e.svc.SyncTriggers(context.Background(), []scaledjobs.Target{clusterTarget("team-a", "agents", auto)}, scaledjobs.NewOwners(nil), 1)
	e.waitCount("team-a", "agents", auto, 0)
	queued := time.Now() // the jobs' bucket, or the next: the forecast reads both
	for range 3 {
		org.QueueJob(pool, fakeazdo.Job{})
	}
	e.waitCount("team-a", "agents", auto, 3)
	for range 5 { // more polls of the same jobs add nothing
		if _, err := e.count("team-a", "agents", auto); err != nil {
			t.Fatal(err)
		}
	}
	h := demand.History("team-a/agents")
	nextWeek := queued.Add(7 * 24 * time.Hour)
	if got, weeks := standby.Forecast(h, nextWeek, 90, 10); got != 3 || weeks != 1 {
		t.Errorf("a week later: %d from %d weeks, want the 3 jobs of this time of the week", got, weeks)
	}
}

// After a restart, standby auto rebuilds its history from the pool's
// finished job requests: each job counts for the template routing would
// give it (the docker jobs for the docker template, the plain ones for the
// plain template), so the first poll already keeps ready the percentile of
// this time of the past weeks. One read per pool: a second rebuild reads
// nothing.
func TestStandbyAutoRebuildsFromFinishedJobs(t *testing.T) {
	// One instant for every standby decision, so no bucket boundary passes
	// during the test.
	now := time.Now()
	clock := func() time.Time { return now }
	demand := service.NewDemand(clock)
	e, orgs := newEnv(t, envOptions{verify: true, demand: demand, standbyNow: clock}, orgSpec{"contoso", "pat-standby-rebuild"})
	org := orgs["contoso"]
	pool := org.AddPool("linux")
	week := 7 * 24 * time.Hour
	slot := now.Truncate(standby.Bucket).Add(time.Second)
	plainJob := fakeazdo.Job{Demands: []string{"Agent.OS -equals Linux"}}
	dockerJob := fakeazdo.Job{Demands: []string{"Agent.OS -equals Linux", "docker"}}
	for w, n := range map[int][2]int{4: {5, 0}, 3: {2, 1}, 2: {6, 1}, 1: {4, 3}} { // weeks ago: plain, docker jobs
		at := slot.Add(-time.Duration(w) * week)
		for range n[0] {
			org.AddFinishedJob(pool, plainJob, at, at.Add(time.Minute))
		}
		for range n[1] {
			org.AddFinishedJob(pool, dockerJob, at, at.Add(time.Minute))
		}
	}
	plain := map[string]string{"poolName": "linux", "capabilities": "Agent.OS=Linux", "standby": "auto", "standbyPercentile": "50"}
	docker := map[string]string{"poolName": "linux", "capabilities": "Agent.OS=Linux,docker", "standby": "auto", "standbyPercentile": "90"}
	e.svc.SyncTriggers(context.Background(), []scaledjobs.Target{clusterTarget("team-a", "plain", plain), clusterTarget("team-a", "docker", docker)},
		scaledjobs.NewOwners(nil), 1)
	for name, md := range map[string]map[string]string{"plain": plain, "docker": docker} {
		if got, err := e.count("team-a", name, md); err != nil || got != 0 {
			t.Fatalf("%s before the rebuild: %v %v, want 0 (no history yet)", name, got, err)
		}
	}
	if err := e.svc.RebuildDemand(context.Background()); err != nil {
		t.Fatal(err)
	}
	// plain: p50 of 5, 2, 6, 4 is 4; docker: p90 of 0, 1, 1, 3 is 3 (a week
	// without a job is a week of no demand: Azure DevOps listed the whole
	// history).
	for name, want := range map[string]float64{"plain": 4, "docker": 3} {
		md := plain
		if name == "docker" {
			md = docker
		}
		if got, err := e.count("team-a", name, md); err != nil || got != want {
			t.Errorf("%s after the rebuild: %v %v, want %v", name, got, err, want)
		}
	}
	// Jobs Azure DevOps lists later are not read again: the history was
	// rebuilt once, and live recording goes on from there.
	for range 10 {
		at := slot.Add(-week)
		org.AddFinishedJob(pool, plainJob, at, at.Add(time.Minute))
	}
	if err := e.svc.RebuildDemand(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.count("team-a", "plain", plain); got != 4 {
		t.Errorf("a second rebuild read the pool again: plain %v, want 4", got)
	}
}

// The histories and standby states follow the ScaledJobs: a ScaledJob
// gone from the cluster leaves nothing behind.
func TestStandbyForgetsDeletedScaledJobs(t *testing.T) {
	demand := service.NewDemand(nil)
	e, orgs := newEnv(t, envOptions{verify: true, demand: demand}, orgSpec{"contoso", "pat-standby-forget"})
	orgs["contoso"].AddPool("linux")
	auto := map[string]string{"poolName": "linux", "standby": "auto"}
	e.svc.SyncTriggers(context.Background(), []scaledjobs.Target{clusterTarget("team-a", "agents", auto)}, scaledjobs.NewOwners(nil), 1)
	e.waitCount("team-a", "agents", auto, 0)
	if _, ok := demand.Standby("team-a/agents"); !ok {
		t.Fatal("no standby state after a count")
	}
	h := demand.History("team-a/agents")
	e.svc.SyncTriggers(context.Background(), nil, scaledjobs.NewOwners(nil), 2)
	if _, ok := demand.Standby("team-a/agents"); ok {
		t.Error("the deleted ScaledJob's standby state is kept")
	}
	if demand.History("team-a/agents") == h {
		t.Error("the deleted ScaledJob's history is kept")
	}
}
