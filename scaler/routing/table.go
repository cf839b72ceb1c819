package routing

import (
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/queue"
)

// Defaults of Options, also the defaults of the flags that set them.
const (
	DefaultForgetAfterPolls = 3
	DefaultForgetMin        = 30 * time.Second
	DefaultForgetMax        = 2 * time.Minute
	// DefaultWarmup is --routing-warmup's default; a zero Options.Warmup
	// means none.
	DefaultWarmup = 30 * time.Second
)

// Options configure how a Router learns and forgets triggers.
type Options struct {
	// A trigger that stops asking is forgotten after ForgetAfterPolls of its
	// own observed polling intervals, but never before ForgetMin nor after
	// ForgetMax. A trigger seen in one poll only is kept for ForgetMax.
	ForgetAfterPolls int
	ForgetMin        time.Duration
	ForgetMax        time.Duration
	// Warmup: for this long after the first call this process answers,
	// waiting jobs are counted for no exclusive trigger, because the
	// triggers that have not asked yet are unknown (after a restart, or when
	// KEDA's connection moves to another replica).
	Warmup time.Duration
	// Given: the triggers of every pool are set by SetTriggers (from the
	// cluster's ScaledJobs); calls neither add nor keep them, nothing is
	// forgotten for silence, and there is no warm-up.
	Given bool
	// HoldBehindOlder is Rules.HoldBehindOlder: how long a waiting job may
	// hold back the count of a more capable template; 0: never.
	HoldBehindOlder time.Duration
	// Budget says which waiting jobs of an organization wait for a
	// parallel job (*budget.Keeper); nil: none.
	Budget   Budget
	Observer Observer
	Logger   logrus.FieldLogger
	Now      func() time.Time
}

// Budget is the organization-wide step before routing (package budget).
type Budget interface {
	// Blocked returns the organization's waiting jobs that wait for a
	// parallel job, why, and a version that changes when the set does.
	Blocked(org string) (blocked map[uint64]bool, why string, version uint64)
}

// Observer receives what routing measures (the metrics package).
type Observer interface {
	// ObservePlan receives every new plan of a pool.
	ObservePlan(k queue.Key, p *Plan)
}

type nopObserver struct{}

// Observers tells every one of its observers.
type Observers []Observer

// ObservePlan tells each observer in turn.
func (os Observers) ObservePlan(k queue.Key, p *Plan) {
	for _, o := range os {
		o.ObservePlan(k, p)
	}
}

func (nopObserver) ObservePlan(queue.Key, *Plan) {}

// pollGap separates two polls of one trigger: KEDA makes its calls of one
// poll (GetMetricSpec, GetMetrics, IsActive) within milliseconds.
const pollGap = 500 * time.Millisecond

// Router keeps a Table per pool.
type Router struct {
	o Options

	mu      sync.Mutex
	first   time.Time // the first call this process answered
	tables  map[queue.Key]*Table
	changed chan struct{} // closed and replaced when a pool's triggers change
	// generation counts the changes of any pool's set of triggers.
	generation atomic.Uint64
}

// SetBudget sets Options.Budget, which needs the router itself (for
// Runnable): call it before the router is used.
func (r *Router) SetBudget(b Budget) { r.o.Budget = b }

// Generation changes whenever any pool's set of triggers does.
func (r *Router) Generation() uint64 { return r.generation.Load() }

// Runnable returns, for a pool, whether a trigger of the pool accepts a
// job: whether a pod the scaler starts could run it. It reads the pool's
// triggers once.
func (r *Router) Runnable(k queue.Key) func(j *queue.Job) bool {
	triggers := r.Table(k).Triggers()
	return func(j *queue.Job) bool { return anyAccepts(triggers, j) }
}

// NewRouter makes a router.
func NewRouter(o Options) *Router {
	if o.ForgetAfterPolls <= 0 {
		o.ForgetAfterPolls = DefaultForgetAfterPolls
	}
	if o.ForgetMin <= 0 {
		o.ForgetMin = DefaultForgetMin
	}
	if o.ForgetMax < o.ForgetMin {
		o.ForgetMax = max(DefaultForgetMax, o.ForgetMin)
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	if o.Logger == nil {
		o.Logger = logrus.StandardLogger()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Given {
		o.Warmup = 0
	}
	return &Router{o: o, tables: map[queue.Key]*Table{}, changed: make(chan struct{})}
}

// SetTriggers replaces every pool's set of triggers (Options.Given): pools
// absent from sets have none. A trigger whose ID, metadata digest or agent
// ownership (owners, a version of the pods it is matched against) is
// unchanged keeps its place; any change is routed from the next plan on.
func (r *Router) SetTriggers(sets map[queue.Key][]Trigger, owners uint64) {
	r.mu.Lock()
	for k := range sets {
		if _, ok := r.tables[k]; !ok {
			r.tables[k] = r.newTableLocked(k)
		}
	}
	tables := make([]*Table, 0, len(r.tables))
	for _, tb := range r.tables {
		tables = append(tables, tb)
	}
	r.mu.Unlock()
	changed := false
	for _, tb := range tables {
		if tb.set(sets[tb.key], owners) {
			changed = true
		}
	}
	if changed {
		r.notify()
	}
}

// Changed returns a channel closed at the next change of any pool's set of
// triggers.
func (r *Router) Changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

func (r *Router) notify() {
	r.generation.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	close(r.changed)
	r.changed = make(chan struct{})
}

// KnownFor is how long this process has learned triggers from calls: zero
// before its first call. Its knowledge of a pool's triggers is complete
// once this exceeds the longest polling interval.
func (r *Router) KnownFor(now time.Time) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.first.IsZero() {
		return 0
	}
	return now.Sub(r.first)
}

// Table returns a pool's table, creating it.
func (r *Router) Table(k queue.Key) *Table {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.tables[k]
	if !ok {
		t = r.newTableLocked(k)
		r.tables[k] = t
	}
	return t
}

func (r *Router) newTableLocked(k queue.Key) *Table {
	return &Table{router: r, key: k, triggers: map[string]*entry{}, logged: map[uint64]bool{},
		log: r.o.Logger.WithFields(logrus.Fields{"organization": k.Org, "poolID": k.ID})}
}

// Tables lists the tables, by organization and pool id.
func (r *Router) Tables() []*Table {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Table, 0, len(r.tables))
	for _, t := range r.tables {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].key.Org != out[j].key.Org {
			return out[i].key.Org < out[j].key.Org
		}
		return out[i].key.ID < out[j].key.ID
	})
	return out
}

// called marks a call answered, starting the warm-up at the first.
func (r *Router) called(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.first.IsZero() {
		r.first = now
	}
}

// warming reports whether waiting jobs are still held.
func (r *Router) warming(now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.o.Warmup > 0 && (r.first.IsZero() || now.Sub(r.first) < r.o.Warmup)
}

// Table is one pool's triggers and its cached plan.
type Table struct {
	router *Router
	key    queue.Key
	log    logrus.FieldLogger

	mu       sync.Mutex
	triggers map[string]*entry
	version  uint64 // changes whenever the set of triggers does

	plan        *Plan
	planSnap    *queue.Snapshot
	planVersion uint64
	planHeld    bool
	planBudget  uint64
	logged      map[uint64]bool // unroutable jobs already logged
	owners      uint64          // Given: the version of the pods agents were matched against
}

type entry struct {
	t         Trigger
	lastSeen  time.Time
	pollStart time.Time     // start of its latest poll
	interval  time.Duration // its latest observed polling interval; 0 unknown
}

// Key is the table's pool.
func (tb *Table) Key() queue.Key { return tb.key }

// set replaces the table's triggers (Options.Given) and reports whether
// the set of triggers changed. A new version of the pods the agents are
// matched against only invalidates the cached plan.
func (tb *Table) set(triggers []Trigger, owners uint64) bool {
	now := tb.router.o.Now()
	tb.mu.Lock()
	defer tb.mu.Unlock()
	if owners != tb.owners {
		tb.owners = owners
		tb.version++
	}
	changed := false
	seen := make(map[string]bool, len(triggers))
	for _, t := range triggers {
		seen[t.ID] = true
		e, ok := tb.triggers[t.ID]
		fields := logrus.Fields{"trigger": t.Label(), "filter": t.Filter, "priority": t.Priority, "shared": t.Shared}
		switch {
		case !ok:
			tb.log.WithFields(fields).Info("a ScaledJob's trigger uses the pool; routing its jobs")
			tb.triggers[t.ID] = &entry{t: t, lastSeen: now, pollStart: now}
			changed = true
		case e.t.Digest != t.Digest:
			tb.log.WithFields(fields).Info("a ScaledJob's trigger changed; routing with its new metadata")
			e.t = t
			changed = true
		default:
			e.t = t // the same metadata; its agent ownership may be newer
		}
	}
	for id, e := range tb.triggers {
		if !seen[id] {
			tb.log.WithField("trigger", e.t.Label()).Info("a ScaledJob's trigger no longer uses the pool; its jobs go to the others")
			delete(tb.triggers, id)
			changed = true
		}
	}
	if changed {
		tb.version++
	}
	return changed
}

// Observe records a call from a trigger: a new trigger joins the pool's
// set, a known one is marked as seen. With Options.Given it only marks the
// call: the cluster, not callers, says which triggers exist.
func (tb *Table) Observe(t Trigger) {
	now := tb.router.o.Now()
	tb.router.called(now)
	if tb.router.o.Given {
		return
	}
	tb.mu.Lock()
	defer tb.mu.Unlock()
	e, ok := tb.triggers[t.ID]
	if !ok || e.t.Digest != t.Digest {
		fields := logrus.Fields{"trigger": t.Label(), "filter": t.Filter, "priority": t.Priority, "shared": t.Shared}
		if ok {
			tb.log.WithFields(fields).Info("a ScaledJob's trigger changed; routing with its new metadata")
			e.t, e.lastSeen = t, now
		} else {
			tb.log.WithFields(fields).Info("a new trigger asks about the pool; routing its jobs")
			tb.triggers[t.ID] = &entry{t: t, lastSeen: now, pollStart: now}
		}
		tb.version++
		defer tb.router.notify()
		return
	}
	if now.Sub(e.lastSeen) >= pollGap {
		e.interval = now.Sub(e.pollStart)
		e.pollStart = now
	}
	e.lastSeen = now
}

// forgetAfter is how long the trigger may stay silent.
func (tb *Table) forgetAfter(e *entry) time.Duration {
	o := tb.router.o
	if e.interval == 0 {
		return o.ForgetMax
	}
	return min(max(time.Duration(o.ForgetAfterPolls)*e.interval, o.ForgetMin), o.ForgetMax)
}

// pruneLocked forgets the triggers that stopped asking (not with
// Options.Given: a ScaledJob's trigger lives as long as the ScaledJob).
func (tb *Table) pruneLocked(now time.Time) {
	if tb.router.o.Given {
		return
	}
	for id, e := range tb.triggers {
		if silent := now.Sub(e.lastSeen); silent > tb.forgetAfter(e) {
			delete(tb.triggers, id)
			tb.version++
			defer tb.router.notify()
			tb.log.WithFields(logrus.Fields{"trigger": e.t.Label(), "silentFor": silent.Round(time.Second).String()}).
				Info("a trigger stopped asking about the pool; its jobs go to the others")
		}
	}
}

// Triggers lists the pool's known triggers (forgetting silent ones first).
func (tb *Table) Triggers() []Trigger {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.pruneLocked(tb.router.o.Now())
	out := make([]Trigger, 0, len(tb.triggers))
	for _, e := range tb.triggers {
		out = append(out, e.t)
	}
	sort.Slice(out, func(i, j int) bool { return less(&out[i], &out[j]) })
	return out
}

// Plan returns the routing of snap among the pool's triggers, computed
// once per snapshot and set of triggers.
func (tb *Table) Plan(snap *queue.Snapshot) *Plan {
	now := tb.router.o.Now()
	held := tb.router.warming(now)
	var blocked map[uint64]bool
	var why string
	var budgetVersion uint64
	if b := tb.router.o.Budget; b != nil {
		blocked, why, budgetVersion = b.Blocked(tb.key.Org)
	}
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.pruneLocked(now)
	if tb.plan != nil && tb.planSnap == snap && tb.planVersion == tb.version && tb.planHeld == held && tb.planBudget == budgetVersion {
		return tb.plan
	}
	triggers := make([]Trigger, 0, len(tb.triggers))
	for _, e := range tb.triggers {
		triggers = append(triggers, e.t)
	}
	p := Route(snap.Jobs, triggers, Rules{Warmup: held, HoldBehindOlder: tb.router.o.HoldBehindOlder, At: snap.FetchedAt,
		Blocked: blocked, BlockedWhy: why})
	tb.plan, tb.planSnap, tb.planVersion, tb.planHeld, tb.planBudget = p, snap, tb.version, held, budgetVersion
	tb.reportUnroutableLocked(p)
	return p
}

// reportUnroutableLocked logs each job nobody can run once, with the
// reason, and counts them: such a job waits until a trigger accepts it.
func (tb *Table) reportUnroutableLocked(p *Plan) {
	unroutable := p.Unroutable()
	tb.router.o.Observer.ObservePlan(tb.key, p)
	seen := make(map[uint64]bool, len(unroutable))
	for _, r := range unroutable {
		seen[r.Job.ID] = true
		if tb.logged[r.Job.ID] {
			continue
		}
		tb.log.WithFields(logrus.Fields{"jobRequest": strconv.FormatUint(r.Job.ID, 10), "demands": r.Job.RawDemands}).
			Warn("no trigger of the pool can run this job; it waits until one does: " + p.Explain(r))
	}
	tb.logged = seen
}

// Count is the number of jobs the trigger counts in snap.
func (tb *Table) Count(snap *queue.Snapshot, id string) int {
	return tb.Plan(snap).Count(id)
}
