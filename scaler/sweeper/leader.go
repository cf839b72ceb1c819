package sweeper

import (
	"context"
	"time"

	"github.com/sirupsen/logrus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Election configures Lease-based leader election.
type Election struct {
	Client        kubernetes.Interface
	Namespace     string
	Lease         string
	Identity      string
	LeaseDuration time.Duration // default 15s
	RenewDeadline time.Duration // default 10s
	RetryPeriod   time.Duration // default 2s
	Logger        logrus.FieldLogger
}

// RunElected runs lead while this replica holds the Lease, and stands for
// election again whenever it loses it, until ctx ends. lead gets a context
// that ends when leadership ends, and isLeader, to check before each
// deletion.
func RunElected(ctx context.Context, e Election, lead func(ctx context.Context, isLeader func() bool)) error {
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
	log := e.Logger.WithFields(logrus.Fields{"component": "sweeper", "lease": e.Namespace + "/" + e.Lease, "identity": e.Identity})
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: e.Namespace, Name: e.Lease},
		Client:     e.Client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: e.Identity},
	}
	for ctx.Err() == nil {
		var elector *leaderelection.LeaderElector
		var err error
		elector, err = leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: lock, LeaseDuration: e.LeaseDuration, RenewDeadline: e.RenewDeadline, RetryPeriod: e.RetryPeriod,
			ReleaseOnCancel: true, Name: e.Lease,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					log.Info("holding the sweeper Lease; this replica sweeps")
					lead(ctx, elector.IsLeader)
				},
				OnStoppedLeading: func() { log.Info("not holding the sweeper Lease; this replica does not sweep") },
			},
		})
		if err != nil {
			return err
		}
		elector.Run(ctx) // returns when leadership is lost or ctx ends
	}
	return nil
}
