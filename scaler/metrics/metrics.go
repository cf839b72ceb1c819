// Package metrics exposes the scaler's Prometheus metrics. It implements the
// observer interfaces of the azdo, pools and sweeper packages, so that those
// packages stay free of Prometheus.
package metrics

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const namespace = "azdo_keda_scaler"

// Metrics holds every collector of the scaler.
type Metrics struct {
	azdoRequests   *prometheus.CounterVec
	azdoLatency    *prometheus.HistogramVec
	rateRemaining  *prometheus.GaugeVec
	throttled      *prometheus.CounterVec
	throttleWait   *prometheus.CounterVec
	queuedJobs     *prometheus.GaugeVec
	unroutable     *prometheus.GaugeVec
	sweepDeleted   *prometheus.CounterVec
	sweepKept      *prometheus.CounterVec
	sweepErrors    *prometheus.CounterVec
	placeholders   *prometheus.CounterVec
	snapshotAgeDsc *prometheus.Desc

	mu        sync.Mutex
	fetchedAt map[[2]string]time.Time
	now       func() time.Time
}

// New registers the metrics on reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		azdoRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "azdo_requests_total",
			Help: "Requests to Azure DevOps, by organization, endpoint and HTTP status (\"error\": no answer)."},
			[]string{"organization", "endpoint", "code"}),
		azdoLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "azdo_request_duration_seconds",
			Help: "Latency of requests to Azure DevOps.", Buckets: prometheus.ExponentialBuckets(0.01, 2.5, 9)},
			[]string{"organization", "endpoint"}),
		rateRemaining: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "azdo_ratelimit_remaining",
			Help: "Last X-RateLimit-Remaining Azure DevOps sent (TSTUs left in its window)."}, []string{"organization"}),
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "azdo_throttled_requests_total",
			Help: "Requests to Azure DevOps the scaler's own rate limit (--azdo-qps) held back."}, []string{"organization"}),
		throttleWait: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "azdo_throttle_wait_seconds_total",
			Help: "Time requests to Azure DevOps waited for the scaler's own rate limit."}, []string{"organization"}),
		queuedJobs: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "pool_unfinished_jobs",
			Help: "Unfinished (queued or running) job requests in the pool's latest snapshot."}, []string{"organization", "pool_id"}),
		unroutable: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "pool_unroutable_jobs",
			Help: "Waiting jobs that no trigger of the pool accepts: they wait until one does."}, []string{"organization", "pool_id"}),
		sweepDeleted: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "sweeper_agents_deleted_total",
			Help: "Stale offline agents the sweeper removed (or, in dry-run, would have removed)."}, []string{"organization", "pool_id", "dry_run"}),
		sweepKept: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "sweeper_agents_kept_total",
			Help: "Agents the sweeper kept, by reason."}, []string{"organization", "pool_id", "reason"}),
		sweepErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "sweeper_errors_total",
			Help: "Sweeper failures, by operation (list or delete)."}, []string{"organization", "pool_id", "operation"}),
		placeholders: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "placeholder_actions_total",
			Help: "The placeholder keeper's actions (register, remove, list) by result (ok, error, dry-run)."}, []string{"organization", "pool_id", "action", "result"}),
		snapshotAgeDsc: prometheus.NewDesc(namespace+"_snapshot_age_seconds",
			"Age of the pool's latest good snapshot of job requests.", []string{"organization", "pool_id"}, nil),
		fetchedAt: map[[2]string]time.Time{},
		now:       time.Now,
	}
	reg.MustRegister(m.azdoRequests, m.azdoLatency, m.rateRemaining, m.throttled, m.throttleWait, m.queuedJobs, m.unroutable, m.sweepDeleted, m.sweepKept, m.sweepErrors, m.placeholders, m)
	return m
}

// ObserveCall counts one request to Azure DevOps (azdo.Observer).
func (m *Metrics) ObserveCall(org, endpoint, status string, d time.Duration) {
	m.azdoRequests.WithLabelValues(org, endpoint, status).Inc()
	m.azdoLatency.WithLabelValues(org, endpoint).Observe(d.Seconds())
}

// ObserveRateLimitRemaining records X-RateLimit-Remaining (azdo.Observer).
func (m *Metrics) ObserveRateLimitRemaining(org string, remaining float64) {
	m.rateRemaining.WithLabelValues(org).Set(remaining)
}

// ObserveThrottle counts a request the client-side limit held back (azdo.Observer).
func (m *Metrics) ObserveThrottle(org string, wait time.Duration) {
	m.throttled.WithLabelValues(org).Inc()
	m.throttleWait.WithLabelValues(org).Add(wait.Seconds())
}

// ObserveSnapshot records a new snapshot (pools.Observer).
func (m *Metrics) ObserveSnapshot(org, pool string, jobs int, fetchedAt time.Time) {
	m.queuedJobs.WithLabelValues(org, pool).Set(float64(jobs))
	m.mu.Lock()
	m.fetchedAt[[2]string{org, pool}] = fetchedAt
	m.mu.Unlock()
}

// ObserveUnroutable records the jobs no trigger accepts (routing.Observer).
func (m *Metrics) ObserveUnroutable(org string, poolID int, jobs int) {
	m.unroutable.WithLabelValues(org, strconv.Itoa(poolID)).Set(float64(jobs))
}

// ForgetPool drops a pool that is no longer polled (pools.Observer).
func (m *Metrics) ForgetPool(org, pool string) {
	m.queuedJobs.DeleteLabelValues(org, pool)
	m.unroutable.DeleteLabelValues(org, pool)
	m.mu.Lock()
	delete(m.fetchedAt, [2]string{org, pool})
	m.mu.Unlock()
}

// AgentDeleted counts a removal (sweeper.Observer).
func (m *Metrics) AgentDeleted(org, pool string, dryRun bool) {
	dr := "false"
	if dryRun {
		dr = "true"
	}
	m.sweepDeleted.WithLabelValues(org, pool, dr).Inc()
}

// AgentKept counts an agent kept, with the reason (sweeper.Observer).
func (m *Metrics) AgentKept(org, pool, reason string) {
	m.sweepKept.WithLabelValues(org, pool, reason).Inc()
}

// SweepError counts a failure (sweeper.Observer).
func (m *Metrics) SweepError(org, pool, op string) {
	m.sweepErrors.WithLabelValues(org, pool, op).Inc()
}

// PlaceholderAction counts one of the keeper's actions (placeholders.Observer).
func (m *Metrics) PlaceholderAction(org string, poolID int, action, result string) {
	m.placeholders.WithLabelValues(org, strconv.Itoa(poolID), action, result).Inc()
}

// Describe implements prometheus.Collector for the snapshot ages.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) { ch <- m.snapshotAgeDsc }

// Collect computes snapshot ages at scrape time, so they grow while Azure
// DevOps fails.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	for k, at := range m.fetchedAt {
		ch <- prometheus.MustNewConstMetric(m.snapshotAgeDsc, prometheus.GaugeValue, now.Sub(at).Seconds(), k[0], k[1])
	}
}
