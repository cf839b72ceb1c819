// Package metrics exposes the scaler's Prometheus metrics. It implements the
// observer interfaces of the azdo, pools, routing, sweeper and placeholders
// packages, so that those packages stay free of Prometheus.
//
// A pool's gauges (jobs waiting and running, the oldest waiting job's age,
// the snapshot's age, per-trigger counts) are computed at scrape time from
// the latest snapshot and routing plan, so that ages grow while Azure DevOps
// fails and a forgotten pool or trigger simply disappears.
package metrics

import (
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/budget"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/queue"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/routing"
)

const namespace = "azdo_keda_scaler"

// poolState is what a pool's scrape-time gauges are computed from.
type poolState struct {
	name          string
	fetchedAt     time.Time // zero until the first good snapshot
	waiting       int
	running       int
	oldestWaiting time.Time // zero when no job waits
	unroutable    int
	triggers      map[[2]string]int // (namespace, ScaledJob) -> count
	stalled       map[[2]string]bool
	// waitObserved: jobs whose queue wait is in the histogram already.
	waitObserved map[uint64]bool
}

// Metrics holds every collector of the scaler.
type Metrics struct {
	azdoRequests  *prometheus.CounterVec
	azdoLatency   *prometheus.HistogramVec
	rateRemaining *prometheus.GaugeVec
	throttled     *prometheus.CounterVec
	throttleWait  *prometheus.CounterVec
	queueWait     *prometheus.HistogramVec
	sweepDeleted  *prometheus.CounterVec
	sweepKept     *prometheus.CounterVec
	sweepErrors   *prometheus.CounterVec
	placeholders  *prometheus.CounterVec
	parallelJobs  *prometheus.GaugeVec
	budgetBlocked *prometheus.GaugeVec
	budgetApplied *prometheus.GaugeVec
	credentialOK  *prometheus.GaugeVec
	standbyWanted *prometheus.GaugeVec
	standbyReady  *prometheus.GaugeVec
	standbyUsed   *prometheus.CounterVec

	jobsDesc, oldestDesc, ageDesc, unroutableDesc, triggerDesc, stalledDesc *prometheus.Desc

	mu    sync.Mutex
	pools map[queue.Key]*poolState
	now   func() time.Time
}

// Names of the metrics that are only computed at scrape time.
const (
	PoolJobs          = namespace + "_pool_jobs"
	PoolOldestWaiting = namespace + "_pool_oldest_waiting_job_age_seconds"
	SnapshotAge       = namespace + "_snapshot_age_seconds"
	PoolUnroutable    = namespace + "_pool_unroutable_jobs"
	TriggerJobs       = namespace + "_trigger_jobs"
	TriggerStalled    = namespace + "_trigger_stalled"
)

var poolLabels = []string{"organization", "pool_id", "pool"}

func withPool(extra ...string) []string {
	return append(append([]string(nil), poolLabels...), extra...)
}

// poolValues are the values of poolLabels.
func poolValues(p queue.Pool) []string { return []string{p.Org, strconv.Itoa(p.ID), p.Name} }

// New registers the metrics on reg, with build information (version and
// revision as set at build time).
func New(reg prometheus.Registerer, version, revision string) *Metrics {
	m := &Metrics{
		azdoRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "azdo_requests_total",
			Help: "Requests to Azure DevOps, by organization, API (jobrequests, agents, ...) and HTTP status (\"error\": no answer)."},
			[]string{"organization", "api", "code"}),
		azdoLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "azdo_request_duration_seconds",
			Help: "Latency of requests to Azure DevOps.", Buckets: prometheus.ExponentialBuckets(0.01, 2.5, 9)},
			[]string{"organization", "api"}),
		rateRemaining: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "azdo_ratelimit_remaining",
			Help: "X-RateLimit-Remaining of Azure DevOps' latest answer (TSTUs left in its window); absent when that answer had none."}, []string{"organization"}),
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "azdo_throttled_requests_total",
			Help: "Requests to Azure DevOps the scaler's own rate limit (--azdo-qps) held back."}, []string{"organization"}),
		throttleWait: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "azdo_throttle_wait_seconds_total",
			Help: "Time requests to Azure DevOps waited for the scaler's own rate limit."}, []string{"organization"}),
		queueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "job_queue_wait_seconds",
			Help:    "Time from a job's queueTime to its assignTime, as Azure DevOps reports them, once per job seen assigned.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 13)}, withPool()),
		sweepDeleted: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "sweeper_agents_deleted_total",
			Help: "Stale offline agents the sweeper removed (or, in dry-run, would have removed)."}, withPool("dry_run")),
		sweepKept: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "sweeper_agents_kept_total",
			Help: "Agents the sweeper kept, by reason."}, withPool("reason")),
		sweepErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "sweeper_errors_total",
			Help: "Sweeper failures, by operation (list or delete)."}, withPool("operation")),
		placeholders: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "placeholder_actions_total",
			Help: "The placeholder keeper's actions (register, remove, list) by result (ok, error, dry-run)."}, withPool("action", "result")),
		parallelJobs: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "parallel_jobs",
			Help: "The organization's private self-hosted parallel jobs as the budget last saw them: total, in_use and free (for waiting jobs)."},
			[]string{"organization", "state"}),
		budgetBlocked: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "jobs_waiting_for_parallel_job",
			Help: "Waiting jobs of the organization's polled pools that wait for a parallel job: no trigger counts them."}, []string{"organization"}),
		budgetApplied: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "parallel_jobs_budget_applied",
			Help: "1 while the organization's parallel-job budget applies; 0 while it is off, or fails open (the reading failed, is stale or inconsistent: jobs count as if there were no limit, and a warning says why)."},
			[]string{"organization"}),
		standbyWanted: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "standby_wanted",
			Help: "Idle agents a ScaledJob's trigger keeps ready now (standby, standbySchedule, standby: auto), as of its latest call."},
			[]string{"scaledjob_namespace", "scaledjob"}),
		standbyReady: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "standby_ready",
			Help: "Idle pods (no job) a ScaledJob had when one of them last asked whether it stays as a standby agent."},
			[]string{"scaledjob_namespace", "scaledjob"}),
		standbyUsed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "standby_used_total",
			Help: "Jobs that started on a ScaledJob's pod created before the job was queued: an agent was ready and the job waited for no pod (--read-cluster)."},
			[]string{"scaledjob_namespace", "scaledjob"}),
		credentialOK: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "credential_accepted",
			Help: "1 once Azure DevOps accepted the organization's credential (checked at start), 0 while it refuses it (401, 403, sign-in page, no Entra ID token): /readyz fails meanwhile."},
			[]string{"organization"}),
		jobsDesc: prometheus.NewDesc(PoolJobs,
			"Unfinished job requests in the pool's latest snapshot, by state: waiting (no agent yet) or running.", withPool("state"), nil),
		oldestDesc: prometheus.NewDesc(PoolOldestWaiting,
			"Age of the oldest job still waiting for an agent in the latest snapshot (0: none waits).", poolLabels, nil),
		ageDesc: prometheus.NewDesc(SnapshotAge,
			"Age of the pool's latest good snapshot of job requests.", poolLabels, nil),
		unroutableDesc: prometheus.NewDesc(PoolUnroutable,
			"Waiting jobs that no trigger of the pool accepts: they wait until one does.", poolLabels, nil),
		triggerDesc: prometheus.NewDesc(TriggerJobs,
			"Jobs a trigger (a ScaledJob) counts in the pool's latest routing: what KEDA gets from GetMetrics.", withPool("scaledjob_namespace", "scaledjob"), nil),
		stalledDesc: prometheus.NewDesc(TriggerStalled,
			"1 while a ScaledJob's pods cannot start (--read-cluster, --stall-grace): its waiting jobs go to the next capable template.",
			withPool("scaledjob_namespace", "scaledjob"), nil),
		pools: map[queue.Key]*poolState{},
		now:   time.Now,
	}
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "build_info",
		Help: "Always 1: the scaler's version, revision and Go version."}, []string{"version", "revision", "goversion"})
	buildInfo.WithLabelValues(version, revision, runtime.Version()).Set(1)
	reg.MustRegister(m.azdoRequests, m.azdoLatency, m.rateRemaining, m.throttled, m.throttleWait, m.queueWait,
		m.sweepDeleted, m.sweepKept, m.sweepErrors, m.placeholders, m.parallelJobs, m.budgetBlocked, m.budgetApplied, m.credentialOK,
		m.standbyWanted, m.standbyReady, m.standbyUsed, buildInfo, m)
	return m
}

// stateLocked returns a pool's state, creating it; m.mu held.
func (m *Metrics) stateLocked(k queue.Key) *poolState {
	s, ok := m.pools[k]
	if !ok {
		s = &poolState{waitObserved: map[uint64]bool{}}
		m.pools[k] = s
	}
	return s
}

// poolName is the pool's name as last seen, "" when unknown.
func (m *Metrics) poolName(k queue.Key) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.pools[k]; ok {
		return s.name
	}
	return ""
}

// ObserveCredential records whether Azure DevOps accepts an
// organization's credential.
func (m *Metrics) ObserveCredential(org string, accepted bool) {
	v := 0.0
	if accepted {
		v = 1
	}
	m.credentialOK.WithLabelValues(org).Set(v)
}

// ObserveBudget records an organization's parallel-job decision
// (budget.Observer).
func (m *Metrics) ObserveBudget(org string, s budget.Setting, u budget.Usage, d budget.Decision) {
	if d.Off != "" {
		m.budgetApplied.WithLabelValues(org).Set(0)
		m.budgetBlocked.WithLabelValues(org).Set(0)
		return
	}
	m.budgetApplied.WithLabelValues(org).Set(1)
	m.budgetBlocked.WithLabelValues(org).Set(float64(len(d.Blocked)))
	if d.Pending {
		return // no numbers yet
	}
	m.parallelJobs.WithLabelValues(org, "total").Set(float64(u.Total))
	m.parallelJobs.WithLabelValues(org, "in_use").Set(float64(d.InUse))
	m.parallelJobs.WithLabelValues(org, "free").Set(float64(d.Free))
}

// ObserveCall counts one request to Azure DevOps (azdo.Observer).
func (m *Metrics) ObserveCall(org, endpoint, status string, d time.Duration) {
	m.azdoRequests.WithLabelValues(org, endpoint, status).Inc()
	m.azdoLatency.WithLabelValues(org, endpoint).Observe(d.Seconds())
}

// ObserveRateLimitRemaining records X-RateLimit-Remaining (azdo.Observer).
// An answer without it removes the series: Azure DevOps sends the header as
// the identity nears its limit, and an old low value must not raise an
// alert for ever.
func (m *Metrics) ObserveRateLimitRemaining(org string, remaining float64, reported bool) {
	if !reported {
		m.rateRemaining.DeleteLabelValues(org)
		return
	}
	m.rateRemaining.WithLabelValues(org).Set(remaining)
}

// ObserveThrottle counts a request the client-side limit held back (azdo.Observer).
func (m *Metrics) ObserveThrottle(org string, wait time.Duration) {
	m.throttled.WithLabelValues(org).Inc()
	m.throttleWait.WithLabelValues(org).Add(wait.Seconds())
}

// ObserveSnapshot records a new snapshot (pools.Observer): the jobs by
// state, the oldest waiting one, and the queue wait of every job seen
// assigned for the first time. A job assigned and finished between two
// refreshes is never seen, so short jobs are under-represented.
func (m *Metrics) ObserveSnapshot(s *queue.Snapshot) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.stateLocked(s.Pool.Key)
	st.name, st.fetchedAt = s.Pool.Name, s.FetchedAt
	st.waiting, st.running, st.oldestWaiting = 0, 0, time.Time{}
	present := make(map[uint64]bool, len(s.Jobs))
	labels := poolValues(s.Pool)
	for i := range s.Jobs {
		j := &s.Jobs[i]
		present[j.ID] = true
		if j.Waiting() {
			st.waiting++
			if !j.QueuedAt.IsZero() && (st.oldestWaiting.IsZero() || j.QueuedAt.Before(st.oldestWaiting)) {
				st.oldestWaiting = j.QueuedAt
			}
			continue
		}
		st.running++
		if !st.waitObserved[j.ID] && !j.QueuedAt.IsZero() && !j.AssignedAt.IsZero() && !j.AssignedAt.Before(j.QueuedAt) {
			st.waitObserved[j.ID] = true
			m.queueWait.WithLabelValues(labels...).Observe(j.AssignedAt.Sub(j.QueuedAt).Seconds())
		}
	}
	for id := range st.waitObserved {
		if !present[id] {
			delete(st.waitObserved, id) // finished
		}
	}
}

// ForgetPool drops a pool that is no longer polled (pools.Observer).
func (m *Metrics) ForgetPool(k queue.Key) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.pools, k)
}

// ObservePlan records a pool's routing (routing.Observer): the jobs no
// trigger accepts and each trigger's count.
func (m *Metrics) ObservePlan(k queue.Key, p *routing.Plan) {
	counts := make(map[[2]string]int, len(p.Triggers))
	stalled := map[[2]string]bool{}
	for i := range p.Triggers {
		t := &p.Triggers[i]
		counts[[2]string{t.Namespace, t.Name}] = p.Count(t.ID)
		if t.Stalled != "" {
			stalled[[2]string{t.Namespace, t.Name}] = true
		}
	}
	unroutable := len(p.Unroutable())
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.stateLocked(k)
	st.unroutable, st.triggers, st.stalled = unroutable, counts, stalled
}

// AgentDeleted counts a removal (sweeper.Observer).
func (m *Metrics) AgentDeleted(p queue.Pool, dryRun bool) {
	m.sweepDeleted.WithLabelValues(append(poolValues(p), strconv.FormatBool(dryRun))...).Inc()
}

// AgentKept counts an agent kept, with the reason (sweeper.Observer).
func (m *Metrics) AgentKept(p queue.Pool, reason string) {
	m.sweepKept.WithLabelValues(append(poolValues(p), reason)...).Inc()
}

// SweepError counts a failure (sweeper.Observer).
func (m *Metrics) SweepError(p queue.Pool, op string) {
	m.sweepErrors.WithLabelValues(append(poolValues(p), op)...).Inc()
}

// PlaceholderAction counts one of the keeper's actions (placeholders.Observer).
func (m *Metrics) PlaceholderAction(k queue.Key, action, result string) {
	p := queue.Pool{Key: k, Name: m.poolName(k)}
	m.placeholders.WithLabelValues(append(poolValues(p), action, result)...).Inc()
}

// Describe implements prometheus.Collector for the scrape-time gauges.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.jobsDesc, m.oldestDesc, m.ageDesc, m.unroutableDesc, m.triggerDesc, m.stalledDesc} {
		ch <- d
	}
}

// Collect computes the pools' gauges at scrape time.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for k, s := range m.pools {
		l := poolValues(queue.Pool{Key: k, Name: s.name})
		if !s.fetchedAt.IsZero() {
			gauge(m.ageDesc, now.Sub(s.fetchedAt).Seconds(), l...)
			gauge(m.jobsDesc, float64(s.waiting), append(l, "waiting")...)
			gauge(m.jobsDesc, float64(s.running), append(l, "running")...)
			oldest := 0.0
			if !s.oldestWaiting.IsZero() {
				oldest = max(0, now.Sub(s.oldestWaiting).Seconds())
			}
			gauge(m.oldestDesc, oldest, l...)
		}
		if s.triggers != nil {
			gauge(m.unroutableDesc, float64(s.unroutable), l...)
			for t, n := range s.triggers {
				gauge(m.triggerDesc, float64(n), append(l, t[0], t[1])...)
				if s.stalled[t] {
					gauge(m.stalledDesc, 1, append(l, t[0], t[1])...)
				}
			}
		}
	}
}

// ObserveStandbyWanted sets the standby agents a ScaledJob's trigger keeps now.
func (m *Metrics) ObserveStandbyWanted(namespace, name string, n int) {
	m.standbyWanted.WithLabelValues(namespace, name).Set(float64(n))
}

// ObserveStandbyReady sets a ScaledJob's idle pods at the latest standby question.
func (m *Metrics) ObserveStandbyReady(namespace, name string, n int) {
	m.standbyReady.WithLabelValues(namespace, name).Set(float64(n))
}

// ObserveStandbyUsed counts a job that found one of a ScaledJob's agents ready.
func (m *Metrics) ObserveStandbyUsed(namespace, name string) {
	m.standbyUsed.WithLabelValues(namespace, name).Inc()
}
