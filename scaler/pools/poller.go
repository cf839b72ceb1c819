package pools

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/azdo"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/queue"
)

// Poller refreshes one pool's snapshot every RefreshInterval, and sooner
// when a call finds it older than MinRefresh (one refresh for all callers).
type Poller struct {
	registry *Registry
	src      Source
	pool     queue.Pool
	log      logrus.FieldLogger

	lastUsed time.Time // guarded by registry.mu

	mu       sync.Mutex
	snap     *queue.Snapshot
	lastErr  error
	errSince time.Time     // start of the current run of failures
	ready    chan struct{} // closed at the first result, good or bad
	changed  chan struct{} // closed and replaced at every update
	stopped  bool
	started  time.Time // when the poller started
	inFlight time.Time // start of the refresh under way; zero when none
	// attemptErr is the latest failed attempt of the refresh under way,
	// known before the refresh's retries end.
	attemptErr  error
	lastAttempt time.Time     // start of the last refresh, good or bad
	pending     bool          // a call asked for a refresh that has not started yet
	wake        chan struct{} // asks the run loop for that refresh
}

var errNoDataYet = errors.New("the first snapshot is not there yet")

func newPoller(r *Registry, src Source, pool queue.Pool) *Poller {
	return &Poller{registry: r, src: src, pool: pool, started: r.opts.Now(),
		log:   r.log.WithFields(logrus.Fields{"organization": pool.Org, "pool": pool.Name, "poolID": pool.ID}),
		ready: make(chan struct{}), changed: make(chan struct{}), wake: make(chan struct{}, 1)}
}

// run refreshes at once, then RefreshInterval after each refresh, or when
// a call asks for it (Snapshot): never more than once per MinRefresh.
func (p *Poller) run() {
	o := p.registry.opts
	p.log.Info("polling pool")
	timer := time.NewTimer(o.RefreshInterval)
	defer timer.Stop()
	for {
		p.refresh()
		timer.Reset(o.RefreshInterval)
		select {
		case <-p.registry.ctx.Done():
			p.stop()
			return
		case <-timer.C:
		case <-p.wake:
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
	// A refresh's retries stay within half of --stale-after (and 30s), so
	// that a failing refresh ends, with its cause, before the data is stale.
	ctx, cancel := context.WithTimeout(p.registry.ctx, min(max(o.RefreshInterval, 30*time.Second), o.StaleAfter/2))
	defer cancel()
	ctx = azdo.WithAttemptErrors(ctx, func(err error) {
		p.mu.Lock()
		p.attemptErr = err
		p.mu.Unlock()
	})
	p.mu.Lock()
	p.inFlight, p.attemptErr, p.pending = o.Now(), nil, false
	p.lastAttempt = p.inFlight
	// A call may have asked for a refresh after the timer fired and before
	// this one began: this refresh answers it. demand sends under p.mu and
	// never while one is in flight, so nothing is lost by dropping it.
	select {
	case <-p.wake:
	default:
	}
	p.mu.Unlock()
	requests, err := p.src.UnfinishedJobRequests(ctx, p.pool.ID)
	now := o.Now()

	p.mu.Lock()
	defer p.mu.Unlock()
	p.inFlight, p.attemptErr = time.Time{}, nil
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
		p.snap = NewSnapshot(p.pool, requests, now)
		o.Observer.ObserveSnapshot(p.snap)
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
// error wraps ErrUnavailable and says why: never a made-up zero, and never
// an error without its most recent cause.
//
// A snapshot older than MinRefresh is refreshed first, once for all the
// callers that find it so, and the call waits for that refresh up to
// DemandWait (then answers from what it has). A refresh is not asked for
// within MinRefresh of the last one, nor while Azure DevOps asked this
// organization to wait (Retry-After): rate limits and backoff come first.
func (p *Poller) Snapshot(ctx context.Context) (*queue.Snapshot, error) {
	select {
	case <-p.ready:
	case <-ctx.Done():
		p.mu.Lock()
		defer p.mu.Unlock()
		now := p.registry.opts.Now()
		return nil, fmt.Errorf("%w: the first refresh of pool %s of %s is still in flight after %s%s",
			ErrUnavailable, p.pool.Name, p.pool.Org, now.Sub(p.started).Round(time.Second), p.causeLocked(now))
	}
	if wait := p.demand(); wait != nil {
		t := time.NewTimer(p.registry.opts.DemandWait)
		select {
		case <-wait:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	return p.fresh()
}

// demand asks for a refresh when the snapshot is older than MinRefresh and
// one may be made now, and returns the channel closed when the refresh
// under way (asked for now or before) ends; nil when there is none to wait
// for.
func (p *Poller) demand() <-chan struct{} {
	o := p.registry.opts
	p.mu.Lock()
	defer p.mu.Unlock()
	now := o.Now()
	if p.stopped || (p.snap != nil && p.snap.Age(now) < o.MinRefresh) {
		return nil
	}
	if p.pending || !p.inFlight.IsZero() {
		return p.changed
	}
	if now.Sub(p.lastAttempt) < o.MinRefresh || p.paused() {
		return nil
	}
	p.pending = true
	select {
	case p.wake <- struct{}{}:
	default:
	}
	return p.changed
}

// paused reports whether Azure DevOps asked this organization to wait
// (a wall-clock pause the client keeps).
func (p *Poller) paused() bool { return time.Now().Before(p.src.PausedUntil()) }

func (p *Poller) fresh() (*queue.Snapshot, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.registry.opts.Now()
	stale := p.registry.opts.StaleAfter
	switch {
	case p.snap != nil && p.snap.Age(now) <= stale:
		return p.snap, nil
	case p.snap != nil:
		return nil, fmt.Errorf("%w: the last good data about pool %s of %s is %s old (limit %s)%s",
			ErrUnavailable, p.pool.Name, p.pool.Org, p.snap.Age(now).Round(time.Second), stale, p.causeLocked(now))
	case p.lastErr != nil:
		return nil, fmt.Errorf("%w: pool %s of %s%s", ErrUnavailable, p.pool.Name, p.pool.Org, p.causeLocked(now))
	}
	return nil, errNoDataYet
}

// causeLocked is the most recent cause of the missing data, as ": ..."
// text: the failed attempt of the refresh under way, else the last failed
// refresh, else how long the refresh under way has waited for an answer.
func (p *Poller) causeLocked(now time.Time) string {
	switch {
	case p.attemptErr != nil:
		return fmt.Sprintf(": %v (retrying)", p.attemptErr)
	case p.lastErr != nil:
		return fmt.Sprintf(": %v", p.lastErr)
	case !p.inFlight.IsZero():
		return fmt.Sprintf(": a refresh has waited %s for Azure DevOps' answer (--azdo-timeout %s per attempt)",
			now.Sub(p.inFlight).Round(time.Second), p.registry.opts.AttemptTimeout)
	}
	return ""
}

// Changed returns a channel closed at the next update of the poller.
func (p *Poller) Changed() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.changed
}

// Pool is the poller's pool.
func (p *Poller) Pool() queue.Pool { return p.pool }

// Status is a pool's state as it is, without refreshing anything: its
// latest good snapshot (nil before the first) and, while refreshes fail,
// the cause.
type Status struct {
	Pool     queue.Pool
	Snapshot *queue.Snapshot
	Problem  string // "" while refreshes succeed
}

func (p *Poller) status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := Status{Pool: p.pool, Snapshot: p.snap}
	if cause := p.causeLocked(p.registry.opts.Now()); cause != "" && (p.lastErr != nil || p.attemptErr != nil || p.snap == nil) {
		s.Problem = strings.TrimPrefix(cause, ": ")
	}
	return s
}
