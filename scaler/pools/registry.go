package pools

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
	"github.com/sirupsen/logrus"
	"golang.org/x/sync/singleflight"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/azdo"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/queue"
)

// Source is what the registry needs of an organization's client
// (*azdo.Client; app asserts it at compile time).
type Source interface {
	Name() string
	// PoolByName and PoolByID wrap azdo.ErrNotFound for a pool that does
	// not exist (or that the credential may not see).
	PoolByName(ctx context.Context, name string) (queue.Pool, error)
	PoolByID(ctx context.Context, id int) (queue.Pool, error)
	UnfinishedJobRequests(ctx context.Context, poolID int) ([]taskagent.TaskAgentJobRequest, error)
	// PausedUntil is until when Azure DevOps asked this organization to
	// wait (Retry-After); zero when it did not. No refresh is asked for
	// on demand before then.
	PausedUntil() time.Time
	// SetPollers tells the client how many pools it refreshes, each at most
	// once per minRefresh, for its automatic request rate limit.
	SetPollers(pools int, minRefresh time.Duration)
}

// HistorySource is a Source that also lists a pool's finished job
// requests (azdo.Client does), for the standby history.
type HistorySource interface {
	FinishedJobRequests(ctx context.Context, poolID, n int) ([]taskagent.TaskAgentJobRequest, error)
}

// FinishedJobs lists the pool's n most recent finished jobs, as Azure
// DevOps keeps them, through the organization's client (its rate limit and
// retries). One call: use it sparingly.
func (r *Registry) FinishedJobs(ctx context.Context, k queue.Key, n int) ([]queue.Job, error) {
	src, ok := r.sources[k.Org].(HistorySource)
	if !ok {
		return nil, fmt.Errorf("organization %q cannot list finished job requests", k.Org)
	}
	requests, err := src.FinishedJobRequests(ctx, k.ID, n)
	if err != nil {
		return nil, err
	}
	return FinishedJobs(requests), nil
}

// Observer receives the pollers' measurements (the metrics package).
type Observer interface {
	ObserveSnapshot(s *queue.Snapshot)
	ForgetPool(k queue.Key)
}

type nopObserver struct{}

func (nopObserver) ObserveSnapshot(*queue.Snapshot) {}
func (nopObserver) ForgetPool(queue.Key)            {}

// Defaults of Options, also the defaults of the flags that set them.
const (
	DefaultRefreshInterval = 10 * time.Second
	DefaultMinRefresh      = 2 * time.Second
	DefaultDemandWait      = 2 * time.Second
	DefaultStaleAfter      = 2 * time.Minute
	DefaultIdleAfter       = 10 * time.Minute
)

// Options configure a Registry.
type Options struct {
	RefreshInterval time.Duration
	StaleAfter      time.Duration
	IdleAfter       time.Duration // a poller nobody asked for this long stops
	ResolveTTL      time.Duration // pool lookups are refreshed after this; default 10m
	NotFoundTTL     time.Duration // an unknown pool is looked up again after this; default 1m
	AttemptTimeout  time.Duration // the client's timeout per attempt, for messages
	// MinRefresh: a call that finds the snapshot older than this refreshes
	// it (once for all callers). Never more than one refresh of a pool per
	// MinRefresh; cut to RefreshInterval.
	MinRefresh time.Duration
	// DemandWait bounds how long a call waits for that refresh.
	DemandWait time.Duration
	Now        func() time.Time // default time.Now
	Observer   Observer
	Logger     logrus.FieldLogger
}

// ErrUnavailable means there is no fresh enough snapshot to answer from.
var ErrUnavailable = errors.New("no fresh data from Azure DevOps")

// ErrPoolNotFound: Azure DevOps says the pool does not exist, or the
// credential may not see it. Resolve's errors wrap it (and the client's
// azdo.ErrNotFound), so that callers need not know the client.
var ErrPoolNotFound = errors.New("no such agent pool")

// poolNotFound keeps the client's message and is ErrPoolNotFound.
type poolNotFound struct{ error }

func (e poolNotFound) Unwrap() error      { return e.error }
func (poolNotFound) Is(target error) bool { return target == ErrPoolNotFound }

// Registry owns the pollers and the pool lookups of every organization.
type Registry struct {
	opts    Options
	sources map[string]Source
	log     logrus.FieldLogger
	ctx     context.Context

	mu      sync.Mutex
	pollers map[queue.Key]*Poller
	lookups map[lookupKey]*lookup
	group   singleflight.Group
}

type lookupKey struct {
	org  string
	name string // lower-cased; "" for lookups by id
	id   int
}

type lookup struct {
	pool       queue.Pool
	err        error // only ErrNotFound errors are kept
	at         time.Time
	refreshing bool
}

// NewRegistry makes a registry; pollers live until ctx ends or they idle.
func NewRegistry(ctx context.Context, sources []Source, o Options) *Registry {
	if o.RefreshInterval <= 0 {
		o.RefreshInterval = DefaultRefreshInterval
	}
	if o.StaleAfter <= 0 {
		o.StaleAfter = DefaultStaleAfter
	}
	if o.IdleAfter <= 0 {
		o.IdleAfter = DefaultIdleAfter
	}
	if o.ResolveTTL <= 0 {
		o.ResolveTTL = 10 * time.Minute
	}
	if o.NotFoundTTL <= 0 {
		o.NotFoundTTL = time.Minute
	}
	if o.MinRefresh <= 0 {
		o.MinRefresh = DefaultMinRefresh
	}
	if o.MinRefresh > o.RefreshInterval {
		o.MinRefresh = o.RefreshInterval
	}
	if o.DemandWait <= 0 {
		o.DemandWait = DefaultDemandWait
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	if o.Logger == nil {
		o.Logger = logrus.StandardLogger()
	}
	r := &Registry{opts: o, sources: map[string]Source{}, log: o.Logger, ctx: ctx,
		pollers: map[queue.Key]*Poller{}, lookups: map[lookupKey]*lookup{}}
	for _, s := range sources {
		r.sources[s.Name()] = s
	}
	return r
}

// Resolve finds a pool by name (id 0) or id. Found pools are remembered and
// refreshed in the background after ResolveTTL, so only the first lookup
// of a pool waits for Azure DevOps; unknown pools are remembered for
// NotFoundTTL. Errors wrap ErrPoolNotFound or are transient.
func (r *Registry) Resolve(ctx context.Context, org, name string, id int) (queue.Pool, error) {
	src, ok := r.sources[org]
	if !ok {
		return queue.Pool{}, fmt.Errorf("organization %q is not configured", org)
	}
	k := lookupKey{org: org, name: strings.ToLower(name), id: id}
	if name != "" {
		k.id = 0
	}
	r.mu.Lock()
	l, ok := r.lookups[k]
	if ok {
		age := time.Since(l.at)
		if l.err != nil && age < r.opts.NotFoundTTL {
			r.mu.Unlock()
			return queue.Pool{}, l.err
		}
		if l.err == nil {
			if age >= r.opts.ResolveTTL && !l.refreshing {
				l.refreshing = true
				go r.refreshLookup(src, k)
			}
			r.mu.Unlock()
			return l.pool, nil
		}
	}
	r.mu.Unlock()

	v, err, _ := r.group.Do(fmt.Sprintf("%s/%s/%d", org, k.name, k.id), func() (any, error) {
		return r.lookupNow(r.ctx, src, k)
	})
	if err != nil {
		return queue.Pool{}, err
	}
	return v.(queue.Pool), nil
}

func (r *Registry) refreshLookup(src Source, k lookupKey) {
	ctx, cancel := context.WithTimeout(r.ctx, time.Minute)
	defer cancel()
	if _, err := r.lookupNow(ctx, src, k); err != nil && !errors.Is(err, azdo.ErrNotFound) {
		r.mu.Lock()
		if l, ok := r.lookups[k]; ok {
			l.refreshing = false // keep the known pool; try again on a later call
		}
		r.mu.Unlock()
		r.log.WithError(err).WithField("organization", k.org).Warn("refreshing a pool lookup failed; keeping the last answer")
	}
}

func (r *Registry) lookupNow(ctx context.Context, src Source, k lookupKey) (queue.Pool, error) {
	var p queue.Pool
	var err error
	if k.name != "" {
		p, err = src.PoolByName(ctx, k.name)
	} else {
		p, err = src.PoolByID(ctx, k.id)
	}
	if err != nil && !errors.Is(err, azdo.ErrNotFound) {
		return queue.Pool{}, err // transient: not remembered
	}
	if err != nil {
		err = poolNotFound{err}
	}
	r.mu.Lock()
	r.lookups[k] = &lookup{pool: p, err: err, at: time.Now()}
	r.mu.Unlock()
	return p, err
}

// Poller returns the running poller of a pool, starting one if needed, and
// marks the pool as in use.
func (r *Registry) Poller(pool queue.Pool) (*Poller, error) {
	src, ok := r.sources[pool.Org]
	if !ok {
		return nil, fmt.Errorf("organization %q is not configured", pool.Org)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.pollers[pool.Key]
	if !ok {
		p = newPoller(r, src, pool)
		r.pollers[pool.Key] = p
		r.tellPollersLocked(pool.Org)
		go p.run()
	}
	p.lastUsed = r.opts.Now()
	return p, nil
}

// tellPollersLocked tells an organization's client how many of its pools
// are polled, for its automatic rate limit.
func (r *Registry) tellPollersLocked(org string) {
	n := 0
	for k := range r.pollers {
		if k.Org == org {
			n++
		}
	}
	r.sources[org].SetPollers(n, r.opts.MinRefresh)
}

// InUse lists the pools whose pollers are running.
func (r *Registry) InUse() []queue.Key {
	r.mu.Lock()
	defer r.mu.Unlock()
	keys := make([]queue.Key, 0, len(r.pollers))
	for k := range r.pollers {
		keys = append(keys, k)
	}
	return keys
}

// Ready reports whether every running poller has a fresh snapshot (or
// none runs): the scaler can answer KEDA from memory.
func (r *Registry) Ready() error {
	r.mu.Lock()
	pollers := make([]*Poller, 0, len(r.pollers))
	for _, p := range r.pollers {
		pollers = append(pollers, p)
	}
	r.mu.Unlock()
	for _, p := range pollers {
		if _, err := p.fresh(); err != nil && !errors.Is(err, errNoDataYet) {
			return err
		}
	}
	return nil
}

// stopIfIdle removes p when nobody asked for it within IdleAfter. Poller
// and this check share r.mu, so a poller just handed out is never stopped.
func (r *Registry) stopIfIdle(p *Poller) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.opts.Now().Sub(p.lastUsed) < r.opts.IdleAfter {
		return false
	}
	delete(r.pollers, p.pool.Key)
	r.tellPollersLocked(p.pool.Org)
	r.opts.Observer.ForgetPool(p.pool.Key)
	return true
}

// Statuses lists the pools in use as they are, by organization and pool
// name, without refreshing them.
func (r *Registry) Statuses() []Status {
	r.mu.Lock()
	pollers := make([]*Poller, 0, len(r.pollers))
	for _, p := range r.pollers {
		pollers = append(pollers, p)
	}
	r.mu.Unlock()
	out := make([]Status, 0, len(pollers))
	for _, p := range pollers {
		out = append(out, p.status())
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Pool.Org != out[j].Pool.Org {
			return out[i].Pool.Org < out[j].Pool.Org
		}
		return out[i].Pool.Name < out[j].Pool.Name
	})
	return out
}

// Latest lists the latest good snapshots of an organization's polled
// pools, by pool id, without refreshing them: the organization-wide view
// the parallel-job budget is decided on.
func (r *Registry) Latest(org string) []*queue.Snapshot {
	r.mu.Lock()
	pollers := make([]*Poller, 0, len(r.pollers))
	for k, p := range r.pollers {
		if k.Org == org {
			pollers = append(pollers, p)
		}
	}
	r.mu.Unlock()
	sort.Slice(pollers, func(i, j int) bool { return pollers[i].pool.ID < pollers[j].pool.ID })
	out := make([]*queue.Snapshot, 0, len(pollers))
	for _, p := range pollers {
		p.mu.Lock()
		if p.snap != nil {
			out = append(out, p.snap)
		}
		p.mu.Unlock()
	}
	return out
}
