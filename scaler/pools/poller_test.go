package pools

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/azdo"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/queue"
)

// stubSource answers job requests as told: block until released, report
// a failed attempt first, or fail.
type stubSource struct {
	release  chan struct{}
	attempts error // reported through the context before blocking
	fail     error
}

// testPool is the pool the stub sources know.
var testPool = queue.Pool{Key: queue.Key{Org: "contoso", ID: 1}, Name: "p"}

func (s *stubSource) Name() string { return "contoso" }
func (s *stubSource) PoolByName(context.Context, string) (queue.Pool, error) {
	return testPool, nil
}
func (s *stubSource) PoolByID(context.Context, int) (queue.Pool, error) {
	return testPool, nil
}
func (s *stubSource) PausedUntil() time.Time        { return time.Time{} }
func (s *stubSource) SetPollers(int, time.Duration) {}
func (s *stubSource) UnfinishedJobRequests(ctx context.Context, _ int) ([]taskagent.TaskAgentJobRequest, error) {
	if s.attempts != nil {
		azdo.ReportAttempt(ctx, s.attempts) // as the client does after a failed attempt
	}
	if s.release != nil {
		select {
		case <-s.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return nil, s.fail
}

func newTestRegistry(t *testing.T, src Source, stale time.Duration) *Registry {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return NewRegistry(ctx, []Source{src}, Options{RefreshInterval: time.Hour, StaleAfter: stale, AttemptTimeout: 10 * time.Second})
}

func firstSnapshot(t *testing.T, r *Registry, wait time.Duration) error {
	p, err := r.Poller(testPool)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_, err = p.Snapshot(ctx)
	return err
}

// While the first refresh waits for Azure DevOps, the error says so.
func TestFirstRefreshInFlightIsACause(t *testing.T) {
	src := &stubSource{release: make(chan struct{})}
	defer close(src.release)
	err := firstSnapshot(t, newTestRegistry(t, src, time.Minute), 200*time.Millisecond)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "first refresh of pool p of contoso is still in flight after") ||
		!strings.Contains(err.Error(), "a refresh has waited") {
		t.Fatalf("err = %v", err)
	}
}

// A failed attempt is the cause at once, before the refresh's retries end.
func TestFailedAttemptIsTheCauseBeforeRetriesEnd(t *testing.T) {
	src := &stubSource{release: make(chan struct{}), attempts: errors.New("azure devops: list job requests of pool 1: timed out: context deadline exceeded")}
	defer close(src.release)
	err := firstSnapshot(t, newTestRegistry(t, src, time.Minute), 200*time.Millisecond)
	if !strings.Contains(err.Error(), "timed out") || !strings.Contains(err.Error(), "(retrying)") {
		t.Fatalf("err = %v", err)
	}
}

// A refresh that failed is the cause until one succeeds.
func TestFailedRefreshIsTheCause(t *testing.T) {
	src := &stubSource{fail: errors.New("azure devops: list job requests of pool 1: HTTP 503: Service Unavailable")}
	err := firstSnapshot(t, newTestRegistry(t, src, time.Minute), 5*time.Second)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "HTTP 503") {
		t.Fatalf("err = %v", err)
	}
}

// rateSource records the pollers the registry tells it of.
type rateSource struct {
	stubSource
	mu    sync.Mutex
	rates []string
}

func (r *rateSource) SetPollers(pools int, minRefresh time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rates = append(r.rates, fmt.Sprintf("%d per %s", pools, minRefresh))
}

// The registry tells the client how many pools it polls and how often at
// most, so that an automatic rate limit never holds the refreshes back
// (the limit itself: azdo's TestAutomaticRateLimitAndThrottleMetric).
func TestRegistryTellsThePollRate(t *testing.T) {
	src := &rateSource{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := NewRegistry(ctx, []Source{src}, Options{RefreshInterval: 10 * time.Second, StaleAfter: time.Minute})
	for id := 1; id <= 3; id++ {
		if _, err := r.Poller(queue.Pool{Key: queue.Key{Org: "contoso", ID: id}, Name: fmt.Sprint(id)}); err != nil {
			t.Fatal(err)
		}
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	// At most one refresh per MinRefresh (default 2s) per pool.
	if want := "[1 per 2s 2 per 2s 3 per 2s]"; fmt.Sprint(src.rates) != want {
		t.Fatalf("pollers told = %v, want %s", src.rates, want)
	}
}

// countingSource counts job-request calls; a call may be held until
// release is closed.
type countingSource struct {
	stubSource
	mu     sync.Mutex
	calls  int
	hold   chan struct{}
	paused time.Time
}

func (c *countingSource) UnfinishedJobRequests(ctx context.Context, _ int) ([]taskagent.TaskAgentJobRequest, error) {
	c.mu.Lock()
	c.calls++
	hold := c.hold
	c.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return nil, nil
}

func (c *countingSource) PausedUntil() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.paused
}

func (c *countingSource) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}

func demandRegistry(t *testing.T, src Source, clk *testingclock.FakeClock, wait time.Duration) *Poller {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r := NewRegistry(ctx, []Source{src}, Options{RefreshInterval: time.Hour, StaleAfter: time.Hour, MinRefresh: 2 * time.Second,
		DemandWait: wait, Now: clk.Now})
	p, err := r.Poller(testPool)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Snapshot(context.Background()); err != nil {
		t.Fatal(err)
	}
	return p
}

// Many calls find the snapshot stale at once: one refresh for all, and
// every caller gets its result.
func TestDemandRefreshOnceForAllCallers(t *testing.T) {
	src := &countingSource{}
	clk := testingclock.NewFakeClock(time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC))
	p := demandRegistry(t, src, clk, 5*time.Second)
	if src.count() != 1 {
		t.Fatalf("%d calls for the first snapshot", src.count())
	}
	if _, err := p.Snapshot(context.Background()); err != nil || src.count() != 1 {
		t.Fatalf("a fresh snapshot (age 0 < 2s) must be answered from memory: %d calls, %v", src.count(), err)
	}
	clk.Step(3 * time.Second)
	var wg sync.WaitGroup
	ages := make(chan time.Duration, 200)
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := p.Snapshot(context.Background())
			if err != nil {
				t.Error(err)
				return
			}
			ages <- s.Age(clk.Now())
		}()
	}
	wg.Wait()
	close(ages)
	if n := src.count(); n != 2 {
		t.Fatalf("200 callers of a stale pool made %d refreshes, want 1", n-1)
	}
	for age := range ages {
		if age != 0 {
			t.Fatalf("a caller got the old snapshot (age %v) instead of the refreshed one", age)
		}
	}
}

// No refresh within MinRefresh of the last one, nor while Azure DevOps
// asked the organization to wait; a refresh that takes longer than
// DemandWait is not waited for.
func TestDemandRefreshLimits(t *testing.T) {
	src := &countingSource{}
	clk := testingclock.NewFakeClock(time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC))
	p := demandRegistry(t, src, clk, 100*time.Millisecond)
	clk.Step(time.Second)
	_, _ = p.Snapshot(context.Background())
	if src.count() != 1 {
		t.Fatal("refreshed within MinRefresh")
	}
	src.mu.Lock()
	src.paused = time.Now().Add(time.Hour)
	src.mu.Unlock()
	clk.Step(5 * time.Second)
	if s, err := p.Snapshot(context.Background()); err != nil || s == nil || src.count() != 1 {
		t.Fatalf("refreshed while Azure DevOps asked to wait (%d calls), or no answer: %v", src.count(), err)
	}
	src.mu.Lock()
	src.paused, src.hold = time.Time{}, make(chan struct{})
	src.mu.Unlock()
	start := time.Now()
	s, err := p.Snapshot(context.Background())
	if err != nil || s.Age(clk.Now()) != 6*time.Second {
		t.Fatalf("a slow refresh: want the snapshot at hand, got %v, %v", s, err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("waited %v for a refresh bounded by DemandWait (100ms)", took)
	}
	close(src.hold)
}

// The background refresh and a call's demand race: the timer fires, and
// before the refresh it starts has marked itself in flight, a call finds
// the snapshot older than MinRefresh and asks for a refresh. That refresh
// is the one about to start: it must not leave the call's wake-up behind,
// or the loop fetches the pool again the moment it ends (twice within
// milliseconds, with --refresh-interval equal to --min-refresh-interval).
func TestBackgroundRefreshAnswersADemandMadeJustBefore(t *testing.T) {
	src := &countingSource{}
	clk := testingclock.NewFakeClock(time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := NewRegistry(ctx, []Source{src}, Options{RefreshInterval: 2 * time.Second, StaleAfter: time.Hour, MinRefresh: 2 * time.Second,
		DemandWait: time.Second, Now: clk.Now})
	p := newPoller(r, src, testPool) // not running: the test plays its loop
	p.refresh()
	clk.Step(2 * time.Second) // the timer fires; a call comes first
	if p.demand() == nil {
		t.Fatal("a snapshot older than MinRefresh asked for no refresh")
	}
	p.refresh() // the timer's refresh
	select {
	case <-p.wake:
		t.Fatal("the call's wake-up outlived the refresh that answered it: the loop would fetch the pool again at once")
	default:
	}
	if src.count() != 2 {
		t.Fatalf("%d fetches, want 2", src.count())
	}
}
