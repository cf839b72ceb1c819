package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/queue"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/routing"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func newTest() (*Metrics, *prometheus.Registry, *time.Time) {
	reg := prometheus.NewRegistry()
	m := New(reg, "v1.2.3", "abc123")
	now := t0
	m.now = func() time.Time { return now }
	return m, reg, &now
}

// testKey is the pool the tests observe.
var testKey = queue.Key{Org: "contoso", ID: 7}

func snapshot(at time.Time, jobs ...queue.Job) *queue.Snapshot {
	return &queue.Snapshot{Pool: queue.Pool{Key: testKey, Name: "linux"}, FetchedAt: at, Jobs: jobs}
}

func waiting(id uint64, queued time.Time) queue.Job { return queue.Job{ID: id, QueuedAt: queued} }

func running(id uint64, queued, assigned time.Time) queue.Job {
	return queue.Job{ID: id, QueuedAt: queued, AssignedAt: assigned, Agent: "linux-abcde-fghij"}
}

// The pool's gauges come from the latest snapshot, computed at scrape time:
// jobs by state, the oldest waiting job's age (growing between refreshes),
// the snapshot's age.
func TestPoolGauges(t *testing.T) {
	m, reg, now := newTest()
	m.ObserveSnapshot(snapshot(t0,
		waiting(1, t0.Add(-90*time.Second)), waiting(2, t0.Add(-30*time.Second)),
		running(3, t0.Add(-10*time.Minute), t0.Add(-9*time.Minute))))
	*now = t0.Add(15 * time.Second)
	want := `
# HELP azdo_keda_scaler_pool_jobs Unfinished job requests in the pool's latest snapshot, by state: waiting (no agent yet) or running.
# TYPE azdo_keda_scaler_pool_jobs gauge
azdo_keda_scaler_pool_jobs{organization="contoso",pool="linux",pool_id="7",state="running"} 1
azdo_keda_scaler_pool_jobs{organization="contoso",pool="linux",pool_id="7",state="waiting"} 2
# HELP azdo_keda_scaler_pool_oldest_waiting_job_age_seconds Age of the oldest job still waiting for an agent in the latest snapshot (0: none waits).
# TYPE azdo_keda_scaler_pool_oldest_waiting_job_age_seconds gauge
azdo_keda_scaler_pool_oldest_waiting_job_age_seconds{organization="contoso",pool="linux",pool_id="7"} 105
# HELP azdo_keda_scaler_snapshot_age_seconds Age of the pool's latest good snapshot of job requests.
# TYPE azdo_keda_scaler_snapshot_age_seconds gauge
azdo_keda_scaler_snapshot_age_seconds{organization="contoso",pool="linux",pool_id="7"} 15
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), PoolJobs, PoolOldestWaiting, SnapshotAge); err != nil {
		t.Fatal(err)
	}
	// Nothing waits any more: the oldest waiting age is 0, not stale.
	m.ObserveSnapshot(snapshot(*now, running(3, t0.Add(-10*time.Minute), t0.Add(-9*time.Minute))))
	if v := gaugeValue(t, reg, PoolOldestWaiting); v != 0 {
		t.Fatalf("oldest waiting age with no waiting job = %v, want 0", v)
	}
	m.ForgetPool(testKey)
	if n, _ := testutil.GatherAndCount(reg, PoolJobs, PoolOldestWaiting, SnapshotAge); n != 0 {
		t.Fatalf("a forgotten pool still has %d series", n)
	}
}

// Each job's queue wait (queueTime to assignTime) is observed once, however
// many snapshots show it running, and again never after it finished.
func TestQueueWaitObservedOncePerJob(t *testing.T) {
	m, reg, _ := newTest()
	job := running(3, t0.Add(-100*time.Second), t0.Add(-40*time.Second)) // waited 60s
	for range 3 {
		m.ObserveSnapshot(snapshot(t0, job, waiting(4, t0)))
	}
	m.ObserveSnapshot(snapshot(t0, waiting(4, t0))) // job 3 finished
	m.ObserveSnapshot(snapshot(t0, waiting(4, t0), running(5, t0.Add(-5*time.Second), t0)))
	if n := testutil.CollectAndCount(m.queueWait); n != 1 {
		t.Fatalf("%d histogram series, want 1", n)
	}
	count, sum := histogram(t, reg, "azdo_keda_scaler_job_queue_wait_seconds")
	if count != 2 || sum != 65 {
		t.Fatalf("queue wait histogram: %d observations summing to %vs, want 2 (jobs 3 and 5) summing to 65s", count, sum)
	}
	if len(m.pools[testKey].waitObserved) != 1 {
		t.Fatal("finished jobs must leave the set of observed jobs (it would grow for ever)")
	}
}

// Per-trigger counts and the jobs no trigger accepts come from the routing
// plan; a trigger that left the plan leaves the metrics.
func TestTriggerCounts(t *testing.T) {
	m, reg, _ := newTest()
	snap := snapshot(t0, waiting(1, t0), waiting(2, t0), queue.Job{ID: 3, QueuedAt: t0, RawDemands: []string{"gpu"}, Unparsable: true})
	m.ObserveSnapshot(snap)
	linux := routing.Trigger{ID: "ci/linux", Namespace: "ci", Name: "linux", Accepts: func(j *queue.Job) bool { return !j.Unparsable }}
	other := routing.Trigger{ID: "ci/other", Namespace: "ci", Name: "other", Rank: 1, Accepts: func(j *queue.Job) bool { return !j.Unparsable }}
	m.ObservePlan(testKey, routing.Route(snap.Jobs, []routing.Trigger{linux, other}, routing.Rules{}))
	want := `
# HELP azdo_keda_scaler_pool_unroutable_jobs Waiting jobs that no trigger of the pool accepts: they wait until one does.
# TYPE azdo_keda_scaler_pool_unroutable_jobs gauge
azdo_keda_scaler_pool_unroutable_jobs{organization="contoso",pool="linux",pool_id="7"} 1
# HELP azdo_keda_scaler_trigger_jobs Jobs a trigger (a ScaledJob) counts in the pool's latest routing: what KEDA gets from GetMetrics.
# TYPE azdo_keda_scaler_trigger_jobs gauge
azdo_keda_scaler_trigger_jobs{organization="contoso",pool="linux",pool_id="7",scaledjob="linux",scaledjob_namespace="ci"} 2
azdo_keda_scaler_trigger_jobs{organization="contoso",pool="linux",pool_id="7",scaledjob="other",scaledjob_namespace="ci"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), PoolUnroutable, TriggerJobs); err != nil {
		t.Fatal(err)
	}
	m.ObservePlan(testKey, routing.Route(snap.Jobs, []routing.Trigger{linux}, routing.Rules{}))
	if n, _ := testutil.GatherAndCount(reg, TriggerJobs); n != 1 {
		t.Fatalf("%d trigger series after a trigger left, want 1", n)
	}
}

// A stalled trigger (--read-cluster) shows as 1 while it is stalled, and
// not at all once it recovers.
func TestTriggerStalled(t *testing.T) {
	m, reg, _ := newTest()
	snap := snapshot(t0, waiting(1, t0))
	m.ObserveSnapshot(snap)
	linux := routing.Trigger{ID: "ci/linux", Namespace: "ci", Name: "linux", Stalled: "ImagePullBackOff (container agent): not found"}
	docker := routing.Trigger{ID: "ci/docker", Namespace: "ci", Name: "docker", Rank: 1}
	m.ObservePlan(testKey, routing.Route(snap.Jobs, []routing.Trigger{linux, docker}, routing.Rules{}))
	want := `
# HELP azdo_keda_scaler_trigger_stalled 1 while a ScaledJob's pods cannot start (--read-cluster, --stall-grace): its waiting jobs go to the next capable template.
# TYPE azdo_keda_scaler_trigger_stalled gauge
azdo_keda_scaler_trigger_stalled{organization="contoso",pool="linux",pool_id="7",scaledjob="linux",scaledjob_namespace="ci"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), TriggerStalled); err != nil {
		t.Fatal(err)
	}
	linux.Stalled = ""
	m.ObservePlan(testKey, routing.Route(snap.Jobs, []routing.Trigger{linux, docker}, routing.Rules{}))
	if n, _ := testutil.GatherAndCount(reg, TriggerStalled); n != 0 {
		t.Fatalf("%d stalled series after recovery, want 0", n)
	}
}

func TestBuildInfo(t *testing.T) {
	_, reg, _ := newTest()
	labels := map[string]string{}
	for _, l := range metric(t, reg, "azdo_keda_scaler_build_info").GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	if labels["version"] != "v1.2.3" || labels["revision"] != "abc123" || !strings.HasPrefix(labels["goversion"], "go") {
		t.Fatalf("build_info labels %v", labels)
	}
}

// metric is the first series of a family.
func metric(t *testing.T, reg *prometheus.Registry, name string) *dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0]
		}
	}
	t.Fatalf("no %s", name)
	return nil
}

func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	return metric(t, reg, name).GetGauge().GetValue()
}

func histogram(t *testing.T, reg *prometheus.Registry, name string) (uint64, float64) {
	h := metric(t, reg, name).GetHistogram()
	return h.GetSampleCount(), h.GetSampleSum()
}

// The rate-limit gauge follows Azure DevOps' latest answer: an answer
// without X-RateLimit-Remaining (the identity is not near its limit)
// removes it, so that an old low value cannot keep an alert firing.
func TestRateLimitRemainingFollowsTheLatestAnswer(t *testing.T) {
	m, reg, _ := newTest()
	m.ObserveRateLimitRemaining("contoso", 12, true)
	if v := gaugeValue(t, reg, "azdo_keda_scaler_azdo_ratelimit_remaining"); v != 12 {
		t.Fatalf("remaining = %v", v)
	}
	m.ObserveRateLimitRemaining("contoso", 0, false)
	if n, _ := testutil.GatherAndCount(reg, "azdo_keda_scaler_azdo_ratelimit_remaining"); n != 0 {
		t.Fatal("an answer without the header must remove the series")
	}
}
