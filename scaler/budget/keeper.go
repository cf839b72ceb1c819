package budget

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
	"github.com/sirupsen/logrus"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/queue"
)

// Setting is an organization's budget: auto (read from Azure DevOps), off,
// or a fixed number of parallel jobs.
type Setting struct {
	Off   bool
	Fixed int // > 0: this many, Azure DevOps is not asked
}

// String is the setting as written.
func (s Setting) String() string {
	switch {
	case s.Off:
		return "off"
	case s.Fixed > 0:
		return strconv.Itoa(s.Fixed)
	}
	return "auto"
}

// ParseSetting reads "auto", "off" or a positive number.
func ParseSetting(v string) (Setting, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "", "auto":
		return Setting{}, nil
	case "off":
		return Setting{Off: true}, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n <= 0 {
		return Setting{}, fmt.Errorf("%q is not auto, off or a positive number of parallel jobs", v)
	}
	return Setting{Fixed: n}, nil
}

// UsageSource reads an organization's parallel jobs (*azdo.Client).
type UsageSource interface {
	ResourceUsage(ctx context.Context, parallelismTag string) (*taskagent.ResourceUsage, error)
}

// Snapshots lists the latest snapshots of an organization's polled pools
// (pools.Registry.Latest).
type Snapshots func(org string) []*queue.Snapshot

// Observer receives each organization's decision (the metrics package).
type Observer interface {
	ObserveBudget(org string, s Setting, u Usage, d Decision)
}

type nopObserver struct{}

func (nopObserver) ObserveBudget(string, Setting, Usage, Decision) {}

// Options configure a Keeper.
type Options struct {
	// Interval between two readings of an organization's usage.
	Interval time.Duration
	// StaleAfter: a reading older than this is not used: the next decision
	// waits for a new one.
	StaleAfter time.Duration
	// Wait is how long a decision waits for a reading it needs
	// (--refresh-wait); meanwhile every waiting private job waits.
	Wait time.Duration
	// Runnable returns, for a pool, whether a pod the scaler starts could
	// run a job of it (a trigger of the pool accepts it); a job none could
	// run takes no parallel job from one that could (routing says why it
	// waits). Generation changes when its answers may. Default: every job.
	Runnable   func(k queue.Key) func(j *queue.Job) bool
	Generation func() uint64
	Observer   Observer
	Logger     logrus.FieldLogger
	Now        func() time.Time
}

// Keeper reads each organization's usage (one call per organization per
// Interval, whatever the number of pools and triggers) and answers, for
// the routing of any of its pools, which waiting jobs wait for a parallel
// job.
type Keeper struct {
	o    Options
	snap Snapshots
	orgs map[string]*org
	wake chan struct{} // asks Run for a reading now
}

type org struct {
	name    string
	setting Setting
	src     UsageSource
	log     logrus.FieldLogger

	mu        sync.Mutex
	usage     Usage
	readErr   error         // the last reading's error, nil after a good one
	read      bool          // a reading succeeded once
	wanted    bool          // a decision needs a reading: read even with no polled pools
	done      chan struct{} // closed and replaced after every reading
	inputs    []*queue.Snapshot
	inputsAt  time.Time // the reading the cached decision used
	inputsGen uint64    // and the triggers' generation
	decision  Decision
	version   uint64
	why       string // reasonOf the cached decision
	offLog    string // the fail-open reason last logged
}

// NewKeeper makes a keeper for organizations with their settings and
// sources (a source may be nil for an organization whose setting is not
// auto).
func NewKeeper(settings map[string]Setting, sources map[string]UsageSource, snaps Snapshots, o Options) *Keeper {
	o.Observer = cmp.Or[Observer](o.Observer, nopObserver{})
	o.Logger = cmp.Or[logrus.FieldLogger](o.Logger, logrus.StandardLogger())
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Runnable == nil {
		o.Runnable = func(queue.Key) func(*queue.Job) bool { return func(*queue.Job) bool { return true } }
	}
	if o.Generation == nil {
		o.Generation = func() uint64 { return 0 }
	}
	k := &Keeper{o: o, snap: snaps, orgs: map[string]*org{}, wake: make(chan struct{}, 1)}
	for name, s := range settings {
		if s.Off {
			o.Observer.ObserveBudget(name, s, Usage{}, Decision{Off: "the budget is off for this organization"})
		}
		k.orgs[name] = &org{name: name, setting: s, src: sources[name], done: make(chan struct{}),
			log: o.Logger.WithFields(logrus.Fields{"component": "budget", "organization": name})}
	}
	return k
}

// Run reads the usage of every auto organization that has polled pools,
// every Interval and when a decision needs a reading, until ctx ends.
func (k *Keeper) Run(ctx context.Context) {
	t := time.NewTicker(k.o.Interval)
	defer t.Stop()
	// A first reading of every organization now: the first calls after a
	// start then find one and wait for none.
	for _, g := range k.orgs {
		g.mu.Lock()
		g.wanted = true
		g.mu.Unlock()
	}
	for {
		k.ReadAll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-k.wake:
		}
	}
}

// ReadAll reads, once, the usage of every auto organization that has
// polled pools or whose decision waits for a reading.
func (k *Keeper) ReadAll(ctx context.Context) {
	for _, g := range k.orgs {
		g.mu.Lock()
		wanted := g.wanted
		g.mu.Unlock()
		if g.setting.Off || g.setting.Fixed > 0 || g.src == nil || (!wanted && len(k.snap(g.name)) == 0) {
			continue
		}
		u, err := g.src.ResourceUsage(ctx, "Private")
		now := k.o.Now()
		g.mu.Lock()
		g.readErr, g.wanted = err, false
		if err == nil {
			g.usage, g.read = usageOf(u, now), true
		}
		close(g.done)
		g.done = make(chan struct{})
		g.mu.Unlock()
	}
}

func usageOf(u *taskagent.ResourceUsage, at time.Time) Usage {
	out := Usage{Holding: map[uint64]bool{}, HoldingPool: map[uint64]int{}, At: at, Total: -1}
	if u.ResourceLimit != nil && u.ResourceLimit.TotalCount != nil {
		out.Total = *u.ResourceLimit.TotalCount
	}
	if u.UsedCount != nil {
		out.Used = *u.UsedCount
	}
	if u.RunningRequests != nil {
		for _, r := range *u.RunningRequests {
			if r.RequestId != nil {
				out.Holding[*r.RequestId] = true
				if r.PoolId != nil {
					out.HoldingPool[*r.RequestId] = *r.PoolId
				}
			}
		}
	}
	return out
}

// needsReadingLocked reports whether an auto organization has no reading
// fresh enough to decide on, and no failure to fail open on.
func (k *Keeper) needsReadingLocked(g *org) bool {
	auto := !g.setting.Off && g.setting.Fixed == 0
	return auto && g.readErr == nil && (!g.read || k.o.Now().Sub(g.usage.At) > k.o.StaleAfter)
}

// awaitReading asks for a reading an organization needs and waits for it,
// at most Options.Wait (--refresh-wait; 0: no wait), as a call waits for
// its pool's refresh.
func (k *Keeper) awaitReading(g *org) {
	g.mu.Lock()
	if !k.needsReadingLocked(g) {
		g.mu.Unlock()
		return
	}
	g.wanted = true
	done := g.done
	g.mu.Unlock()
	select {
	case k.wake <- struct{}{}:
	default:
	}
	if k.o.Wait <= 0 {
		return
	}
	t := time.NewTimer(k.o.Wait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

// waitingPrivate is the set of waiting private jobs.
func waitingPrivate(jobs []queue.Job) map[uint64]bool {
	out := map[uint64]bool{}
	for i := range jobs {
		if jobs[i].Waiting() && !jobs[i].Public {
			out[jobs[i].ID] = true
		}
	}
	return out
}

// Blocked returns the waiting jobs of an organization that wait for a
// parallel job, why, and a version that changes whenever the set does.
// With the budget off, unread or failing it blocks nothing (fail open).
func (k *Keeper) Blocked(orgName string) (blocked map[uint64]bool, why string, version uint64) {
	g := k.orgs[orgName]
	if g == nil || g.setting.Off {
		return nil, "", 0 // nothing to decide: no work on KEDA's call path
	}
	snaps := k.snap(orgName)
	k.awaitReading(g)
	g.mu.Lock()
	defer g.mu.Unlock()
	u := Usage{Total: g.setting.Fixed, Fixed: true} // no time: a fixed budget does not age
	var off string
	pending := false
	switch {
	case g.setting.Fixed > 0:
	case g.readErr != nil:
		off = "reading the parallel jobs failed: " + g.readErr.Error()
	case k.needsReadingLocked(g):
		// First use, or first use after the organization's pools were
		// idle: awaitReading asked for a reading; until it is there, no
		// waiting job may start a pod it may not get a parallel job for.
		pending = true
	default:
		u = g.usage
	}
	if off != "" {
		// Fail open: nothing blocked, whatever the jobs; say so once.
		if off != g.offLog {
			g.log.WithField("reason", off).Warn("not applying the organization's parallel jobs: waiting jobs count as if there were no limit")
			g.offLog = off
			if len(g.decision.Blocked) > 0 || g.why != "" {
				g.version++
			}
			g.decision, g.why, g.inputs = Decision{Off: off}, "", nil
			k.o.Observer.ObserveBudget(orgName, g.setting, u, g.decision)
		}
		return nil, "", g.version
	}
	gen := k.o.Generation()
	if g.cachedLocked(snaps, u.At) && gen == g.inputsGen && !pending && g.decision.Off == "" && !g.decision.Pending {
		return g.decision.Blocked, g.why, g.version // g.why is reasonOf this decision
	}
	var jobs []queue.Job
	for _, s := range snaps {
		runnable := k.o.Runnable(s.Pool.Key)
		for i := range s.Jobs {
			if j := &s.Jobs[i]; !j.Waiting() || runnable(j) {
				jobs = append(jobs, *j)
			}
		}
	}
	var d Decision
	if pending {
		d = Decision{Blocked: waitingPrivate(jobs), Pending: true}
	} else {
		d = Admit(jobs, u.Without(Finished(u, snaps)))
	}
	why = reasonOf(d, u)
	if !maps.Equal(d.Blocked, g.decision.Blocked) || why != g.why {
		g.version++
	}
	g.why = why
	if d.Off != "" && d.Off != g.offLog {
		g.log.WithField("reason", d.Off).Warn("not applying the organization's parallel jobs: waiting jobs count as if there were no limit")
	}
	g.offLog = d.Off
	g.decision, g.inputs, g.inputsAt, g.inputsGen = d, snaps, u.At, gen
	k.o.Observer.ObserveBudget(orgName, g.setting, u, d)
	return d.Blocked, why, g.version
}

// cachedLocked reports whether the cached decision used these snapshots
// and this reading.
func (g *org) cachedLocked(snaps []*queue.Snapshot, at time.Time) bool {
	if len(snaps) != len(g.inputs) || !at.Equal(g.inputsAt) {
		return false
	}
	for i := range snaps {
		if snaps[i] != g.inputs[i] {
			return false
		}
	}
	return true
}

func reasonOf(d Decision, u Usage) string {
	switch {
	case d.Off != "":
		return ""
	case d.Pending:
		return "the organization's parallel jobs are being read (a call to Azure DevOps; the last reading is missing or older than --stale-after)"
	}
	return fmt.Sprintf("%d of the organization's %d parallel jobs are in use and %d older waiting job(s) take the %d free", d.InUse, u.Total, d.Admitted, d.Free)
}
