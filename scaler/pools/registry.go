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
)

// Source is what a poller needs of an organization's client.
type Source interface {
	Name() string
	PoolByName(ctx context.Context, name string) (azdo.Pool, error)
	PoolByID(ctx context.Context, id int) (azdo.Pool, error)
	UnfinishedJobRequests(ctx context.Context, poolID int) ([]taskagent.TaskAgentJobRequest, error)
}

// Observer receives the pollers' measurements (the metrics package).
type Observer interface {
	ObserveSnapshot(s *Snapshot)
	ForgetPool(org string, poolID int)
}

type nopObserver struct{}

func (nopObserver) ObserveSnapshot(*Snapshot) {}
func (nopObserver) ForgetPool(string, int)    {}

// Options configure a Registry.
type Options struct {
	RefreshInterval time.Duration // default 10s
	StaleAfter      time.Duration // default 2m
	IdleAfter       time.Duration // a poller nobody asked for this long stops; default 10m
	ResolveTTL      time.Duration // pool lookups are refreshed after this; default 10m
	NotFoundTTL     time.Duration // an unknown pool is looked up again after this; default 1m
	AttemptTimeout  time.Duration // the client's timeout per attempt, for messages
	// MinRefresh: a call that finds the snapshot older than this refreshes
	// it (once for all callers); default 2s. Never more than one refresh
	// of a pool per MinRefresh.
	MinRefresh time.Duration
	// DemandWait bounds how long a call waits for that refresh; default 2s.
	DemandWait time.Duration
	Now        func() time.Time // default time.Now
	Observer   Observer
	Logger     logrus.FieldLogger
}

// ErrUnavailable means there is no fresh enough snapshot to answer from.
var ErrUnavailable = errors.New("no fresh data from Azure DevOps")

// Registry owns the pollers and the pool lookups of every organization.
type Registry struct {
	opts    Options
	sources map[string]Source
	log     logrus.FieldLogger
	ctx     context.Context

	mu      sync.Mutex
	pollers map[Key]*Poller
	lookups map[lookupKey]*lookup
	group   singleflight.Group
}

// Key identifies a pool.
type Key struct {
	Organization string
	PoolID       int
}

type lookupKey struct {
	org  string
	name string // lower-cased; "" for lookups by id
	id   int
}

type lookup struct {
	pool       azdo.Pool
	err        error // only ErrNotFound errors are kept
	at         time.Time
	refreshing bool
}

// NewRegistry makes a registry; pollers live until ctx ends or they idle.
func NewRegistry(ctx context.Context, sources []Source, o Options) *Registry {
	if o.RefreshInterval <= 0 {
		o.RefreshInterval = 10 * time.Second
	}
	if o.StaleAfter <= 0 {
		o.StaleAfter = 2 * time.Minute
	}
	if o.IdleAfter <= 0 {
		o.IdleAfter = 10 * time.Minute
	}
	if o.ResolveTTL <= 0 {
		o.ResolveTTL = 10 * time.Minute
	}
	if o.NotFoundTTL <= 0 {
		o.NotFoundTTL = time.Minute
	}
	if o.MinRefresh <= 0 {
		o.MinRefresh = 2 * time.Second
	}
	if o.MinRefresh > o.RefreshInterval {
		o.MinRefresh = o.RefreshInterval
	}
	if o.DemandWait <= 0 {
		o.DemandWait = 2 * time.Second
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
		pollers: map[Key]*Poller{}, lookups: map[lookupKey]*lookup{}}
	for _, s := range sources {
		r.sources[s.Name()] = s
	}
	return r
}

// Options returns the effective options.
func (r *Registry) Options() Options { return r.opts }

// Resolve finds a pool by name (id 0) or id. Found pools are remembered and
// refreshed in the background after ResolveTTL, so only the first lookup
// of a pool waits for Azure DevOps; unknown pools are remembered for
// NotFoundTTL. Errors wrap azdo.ErrNotFound or are transient.
func (r *Registry) Resolve(ctx context.Context, org, name string, id int) (azdo.Pool, error) {
	src, ok := r.sources[org]
	if !ok {
		return azdo.Pool{}, fmt.Errorf("organization %q is not configured", org)
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
			return azdo.Pool{}, l.err
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
		return azdo.Pool{}, err
	}
	return v.(azdo.Pool), nil
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

func (r *Registry) lookupNow(ctx context.Context, src Source, k lookupKey) (azdo.Pool, error) {
	var p azdo.Pool
	var err error
	if k.name != "" {
		p, err = src.PoolByName(ctx, k.name)
	} else {
		p, err = src.PoolByID(ctx, k.id)
	}
	if err != nil && !errors.Is(err, azdo.ErrNotFound) {
		return azdo.Pool{}, err // transient: not remembered
	}
	r.mu.Lock()
	r.lookups[k] = &lookup{pool: p, err: err, at: time.Now()}
	r.mu.Unlock()
	return p, err
}

// Poller returns the running poller of a pool, starting one if needed, and
// marks the pool as in use.
func (r *Registry) Poller(org string, pool azdo.Pool) (*Poller, error) {
	src, ok := r.sources[org]
	if !ok {
		return nil, fmt.Errorf("organization %q is not configured", org)
	}
	k := Key{Organization: org, PoolID: pool.ID}
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.pollers[k]
	if !ok {
		p = newPoller(r, src, k, pool.Name)
		r.pollers[k] = p
		r.tellPollRateLocked(org)
		go p.run()
	}
	p.lastUsed = r.opts.Now()
	return p, nil
}

// tellPollRateLocked tells an organization's client how many requests per
// second its pollers need, for an automatic rate limit.
func (r *Registry) tellPollRateLocked(org string) {
	s, ok := r.sources[org].(interface{ SetPollRate(float64) })
	if !ok {
		return
	}
	n := 0
	for k := range r.pollers {
		if k.Organization == org {
			n++
		}
	}
	// At most one refresh per MinRefresh per pool, on demand.
	s.SetPollRate(float64(n) / r.opts.MinRefresh.Seconds())
}

// InUse lists the pools whose pollers are running.
func (r *Registry) InUse() []Key {
	r.mu.Lock()
	defer r.mu.Unlock()
	keys := make([]Key, 0, len(r.pollers))
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
	delete(r.pollers, p.key)
	r.tellPollRateLocked(p.key.Organization)
	r.opts.Observer.ForgetPool(p.key.Organization, p.key.PoolID)
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
		if out[i].Key.Organization != out[j].Key.Organization {
			return out[i].Key.Organization < out[j].Key.Organization
		}
		return out[i].Name < out[j].Name
	})
	return out
}
