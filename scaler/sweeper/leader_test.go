package sweeper

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes/fake"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/leader"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/queue"
)

// Two replicas share a Lease (package leader) (client-go's fake clientset) and sweep the
// same pool: while one leads, the other never deletes; when the leader
// stops, the other takes over; every stale agent is deleted exactly once.
func TestTwoSweepersShareALease(t *testing.T) {
	f := newFixture(t)
	pool := f.org.AddPool("p")
	for i := 0; i < 6; i++ {
		f.org.AddAgent(pool, fakeazdo.Agent{Name: fmt.Sprintf("agents-%d", i), StatusChangedOn: time.Now().Add(-time.Hour)})
	}
	r := rules
	r.MaxDeletions = 1 // one per sweep, so that sweeping spans a change of leader
	client := fake.NewClientset()

	var mu sync.Mutex
	leading := map[string]bool{}
	deletedBy := map[string]int{}
	overlap := false
	run := func(ctx context.Context, id string) {
		_ = leader.RunElected(ctx, leader.Election{Role: "sweeper", Client: client, Namespace: "keda", Lease: "sweeper", Identity: id, Logger: quietLogger(),
			LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 100 * time.Millisecond},
			func(lctx context.Context, l leader.Leadership) {
				mu.Lock()
				leading[id] = true
				for other, on := range leading {
					if other != id && on {
						overlap = true
					}
				}
				mu.Unlock()
				defer func() { mu.Lock(); leading[id] = false; mu.Unlock() }()
				s := f.sweeper([]queue.Pool{{Key: queue.Key{Org: "contoso", ID: pool}, Name: "p"}}, r, false, nil)
				s.o.Leading, s.o.DeleteBy = l.Valid, l.Until
				for lctx.Err() == nil {
					res := s.SweepOnce(lctx)
					mu.Lock()
					deletedBy[id] += res.Deleted
					mu.Unlock()
					time.Sleep(50 * time.Millisecond)
				}
			})
	}
	ctxA, stopA := context.WithCancel(context.Background())
	ctxB, stopB := context.WithCancel(context.Background())
	defer stopB()
	waitFor := func(cond func() bool) bool {
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			if cond() {
				return true
			}
			time.Sleep(20 * time.Millisecond)
		}
		return false
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); run(ctxA, "replica-a") }()
	if !waitFor(func() bool { mu.Lock(); defer mu.Unlock(); return leading["replica-a"] }) {
		t.Fatal("the first replica never took the Lease")
	}
	go func() { defer wg.Done(); run(ctxB, "replica-b") }()
	if !waitFor(func() bool { mu.Lock(); defer mu.Unlock(); return deletedBy["replica-a"] >= 2 }) {
		t.Fatal("the first replica never swept")
	}
	stopA() // releases the Lease
	if !waitFor(func() bool { return len(f.org.AgentNames(pool)) == 0 }) {
		t.Fatalf("agents left after failover: %v", f.org.AgentNames(pool))
	}
	stopB()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if overlap {
		t.Fatal("both replicas led at the same time")
	}
	if deletedBy["replica-b"] == 0 {
		t.Fatalf("the second replica never took over: %v", deletedBy)
	}
	if total := deletedBy["replica-a"] + deletedBy["replica-b"]; total != 6 || f.fake.Calls("contoso", fakeazdo.DeleteAgent) != 6 {
		t.Fatalf("deleted %v (%d delete calls), want 6 in all, each once", deletedBy, f.fake.Calls("contoso", fakeazdo.DeleteAgent))
	}
}
