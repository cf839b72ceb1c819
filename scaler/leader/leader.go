// Package leader runs a function while this replica holds a Kubernetes
// Lease (client-go's leader election), and tells it whether the holding is
// still sure before each action that must not be done twice, such as a
// deletion. It knows nothing of what the leader does; it is the only
// package besides app that needs client-go's Kubernetes clients.
package leader

import (
	"context"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Election configures Lease-based leader election.
type Election struct {
	// Role names what the holder does, for logs ("sweeper").
	Role          string
	Client        kubernetes.Interface
	Namespace     string
	Lease         string
	Identity      string
	LeaseDuration time.Duration // default 15s
	RenewDeadline time.Duration // default 10s
	RetryPeriod   time.Duration // default 2s
	Logger        logrus.FieldLogger
}

// Leadership is what lead gets besides its context: whether this replica
// surely holds the Lease, asked before each action.
type Leadership struct {
	lock *trackedLock
	ctx  context.Context
}

// Valid reports whether this replica surely holds the Lease now: its term
// has not ended and its last write of the Lease began less than the renew
// deadline ago. Past that, client-go gives up, and another replica may take
// the Lease once it has seen it unchanged for the lease duration.
func (l Leadership) Valid() bool {
	return l.ctx.Err() == nil && time.Now().Before(l.lock.validUntil())
}

// Until is when the holding surely ends unless renewed: an action's
// request must be over by then.
func (l Leadership) Until() time.Time { return l.lock.validUntil() }

// RunElected runs lead while this replica holds the Lease, and stands for
// election again whenever it loses it, until ctx ends.
//
// client-go starts the leading callback in a goroutine of its own and,
// when its context is cancelled, releases the Lease without waiting for
// it. Here the elector's context ends only after lead has returned: the
// Lease is released after the last deletion, a new term starts only after
// the previous one's lead returned, and two replicas never lead at once.
func RunElected(ctx context.Context, e Election, lead func(ctx context.Context, l Leadership)) error {
	if e.LeaseDuration == 0 {
		e.LeaseDuration = 15 * time.Second
	}
	if e.RenewDeadline == 0 {
		e.RenewDeadline = 10 * time.Second
	}
	if e.RetryPeriod == 0 {
		e.RetryPeriod = 2 * time.Second
	}
	if e.Logger == nil {
		e.Logger = logrus.StandardLogger()
	}
	if e.Role == "" {
		e.Role = "leader"
	}
	log := e.Logger.WithFields(logrus.Fields{"component": e.Role, "lease": e.Namespace + "/" + e.Lease, "identity": e.Identity})
	lock := &trackedLock{Interface: &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: e.Namespace, Name: e.Lease},
		Client:     e.Client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: e.Identity},
	}, identity: e.Identity, valid: e.RenewDeadline}
	for ctx.Err() == nil {
		electorCtx, stopElector := context.WithCancel(context.WithoutCancel(ctx))
		leadDone := make(chan struct{})
		elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: lock, LeaseDuration: e.LeaseDuration, RenewDeadline: e.RenewDeadline, RetryPeriod: e.RetryPeriod,
			ReleaseOnCancel: true, Name: e.Lease,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(termCtx context.Context) {
					defer close(leadDone)
					leadCtx, cancel := context.WithCancel(termCtx)
					defer cancel()
					defer context.AfterFunc(ctx, cancel)() // shutdown ends the term too
					log.Info("holding the " + e.Role + " Lease; this replica leads")
					lead(leadCtx, Leadership{lock: lock, ctx: leadCtx})
				},
				OnStoppedLeading: func() { log.Info("not holding the " + e.Role + " Lease; this replica does not lead") },
			},
		})
		if err != nil {
			stopElector()
			return err
		}
		lock.startTerm()
		runDone := make(chan struct{})
		go func() {
			defer close(runDone)
			elector.Run(electorCtx)
		}()
		select {
		case <-runDone: // the term ended: client-go cancelled lead's context
		case <-ctx.Done(): // shutdown: lead's context ends with ctx
		}
		// client-go calls OnStartedLeading whenever it acquired the Lease,
		// even if ctx ended just after: then wait for that lead to return.
		if lock.acquired() {
			<-leadDone
		}
		stopElector() // only now may client-go release the Lease
		<-runDone
	}
	return nil
}

// trackedLock records this replica's successful writes of the Lease, so
// that a deletion can check that the holding is still sure.
type trackedLock struct {
	resourcelock.Interface
	identity string
	valid    time.Duration // the renew deadline

	mu   sync.Mutex
	held time.Time // start of the last successful write holding the Lease; zero when released
	won  bool      // a write holding the Lease succeeded in this term
}

func (l *trackedLock) Create(ctx context.Context, r resourcelock.LeaderElectionRecord) error {
	start := time.Now()
	err := l.Interface.Create(ctx, r)
	l.note(start, err, r)
	return err
}

func (l *trackedLock) Update(ctx context.Context, r resourcelock.LeaderElectionRecord) error {
	start := time.Now()
	err := l.Interface.Update(ctx, r)
	l.note(start, err, r)
	return err
}

func (l *trackedLock) note(start time.Time, err error, r resourcelock.LeaderElectionRecord) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case err != nil:
	case r.HolderIdentity == l.identity:
		l.held, l.won = start, true
	default:
		l.held = time.Time{} // released
	}
}

func (l *trackedLock) startTerm() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.won = false
}

func (l *trackedLock) acquired() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.won
}

func (l *trackedLock) validUntil() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held.IsZero() {
		return time.Time{}
	}
	return l.held.Add(l.valid)
}
