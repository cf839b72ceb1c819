package pools

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// Poller refreshes one pool's snapshot every RefreshInterval.
type Poller struct {
	registry *Registry
	src      Source
	key      Key
	name     string
	log      logrus.FieldLogger

	lastUsed time.Time // guarded by registry.mu

	mu       sync.Mutex
	snap     *Snapshot
	lastErr  error
	errSince time.Time     // start of the current run of failures
	ready    chan struct{} // closed at the first result, good or bad
	changed  chan struct{} // closed and replaced at every update
	stopped  bool
}

var errNoDataYet = errors.New("the first snapshot is not there yet")

func newPoller(r *Registry, src Source, k Key, name string) *Poller {
	return &Poller{registry: r, src: src, key: k, name: name,
		log:   r.log.WithFields(logrus.Fields{"organization": k.Organization, "pool": name, "poolID": k.PoolID}),
		ready: make(chan struct{}), changed: make(chan struct{})}
}

func (p *Poller) run() {
	o := p.registry.opts
	p.log.Info("polling pool")
	ticker := time.NewTicker(o.RefreshInterval)
	defer ticker.Stop()
	for {
		p.refresh()
		select {
		case <-p.registry.ctx.Done():
			p.stop()
			return
		case <-ticker.C:
		}
		if p.registry.stopIfIdle(p) {
			p.log.WithField("idleFor", o.IdleAfter.String()).Info("no trigger asked for this pool lately; stopped polling it")
			p.stop()
			return
		}
	}
}

func (p *Poller) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = true
	p.notifyLocked()
}

func (p *Poller) refresh() {
	o := p.registry.opts
	// A refresh may retry within the client, but never past the next
	// interval's worth of waiting plus the client's own timeouts.
	ctx, cancel := context.WithTimeout(p.registry.ctx, max(o.RefreshInterval, 30*time.Second))
	defer cancel()
	requests, err := p.src.UnfinishedJobRequests(ctx, p.key.PoolID)
	now := time.Now()

	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		if p.lastErr == nil {
			p.errSince = now
		}
		p.lastErr = err
		age := "never fetched"
		if p.snap != nil {
			age = p.snap.Age(now).Round(time.Second).String()
		}
		p.log.WithError(err).WithField("snapshotAge", age).Warn("refreshing the pool's job requests failed")
	} else {
		if p.lastErr != nil {
			p.log.WithField("failingFor", now.Sub(p.errSince).Round(time.Second).String()).Info("Azure DevOps answers again")
		}
		p.lastErr = nil
		p.snap = NewSnapshot(p.key.Organization, p.key.PoolID, p.name, requests, now)
		o.Observer.ObserveSnapshot(p.key.Organization, strconv.Itoa(p.key.PoolID), len(p.snap.Jobs), now)
	}
	p.notifyLocked()
}

func (p *Poller) notifyLocked() {
	select {
	case <-p.ready:
	default:
		close(p.ready)
	}
	close(p.changed)
	p.changed = make(chan struct{})
}

// Snapshot returns the latest snapshot if it is fresh enough, waiting for
// the first one within ctx. While Azure DevOps fails, the last good
// snapshot is served until it is older than StaleAfter; after that the
// error wraps ErrUnavailable and says why: never a made-up zero.
func (p *Poller) Snapshot(ctx context.Context) (*Snapshot, error) {
	select {
	case <-p.ready:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: waiting for the first answer about pool %s of %s: %v", ErrUnavailable, p.name, p.key.Organization, ctx.Err())
	}
	return p.fresh()
}

func (p *Poller) fresh() (*Snapshot, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	stale := p.registry.opts.StaleAfter
	switch {
	case p.snap != nil && p.snap.Age(now) <= stale:
		return p.snap, nil
	case p.lastErr != nil && p.snap != nil:
		return nil, fmt.Errorf("%w: the last good data about pool %s of %s is %s old (limit %s): %v",
			ErrUnavailable, p.name, p.key.Organization, p.snap.Age(now).Round(time.Second), stale, p.lastErr)
	case p.lastErr != nil:
		return nil, fmt.Errorf("%w: pool %s of %s: %v", ErrUnavailable, p.name, p.key.Organization, p.lastErr)
	case p.snap != nil:
		return nil, fmt.Errorf("%w: the data about pool %s of %s is %s old (limit %s)",
			ErrUnavailable, p.name, p.key.Organization, p.snap.Age(now).Round(time.Second), stale)
	}
	return nil, errNoDataYet
}

// Changed returns a channel closed at the next update of the poller.
func (p *Poller) Changed() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.changed
}

// Stopped reports whether the poller stopped (idle, or shutting down).
func (p *Poller) Stopped() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stopped
}

// Key identifies the poller's pool.
func (p *Poller) Key() Key { return p.key }
