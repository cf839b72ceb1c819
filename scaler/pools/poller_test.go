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

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/azdo"
)

// stubSource answers job requests as told: block until released, report
// a failed attempt first, or fail.
type stubSource struct {
	release  chan struct{}
	attempts error // reported through the context before blocking
	fail     error
}

func (s *stubSource) Name() string { return "contoso" }
func (s *stubSource) PoolByName(context.Context, string) (azdo.Pool, error) {
	return azdo.Pool{ID: 1, Name: "p"}, nil
}
func (s *stubSource) PoolByID(context.Context, int) (azdo.Pool, error) {
	return azdo.Pool{ID: 1, Name: "p"}, nil
}
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
	p, err := r.Poller("contoso", azdo.Pool{ID: 1, Name: "p"})
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

// rateSource records the poll rate the registry tells it.
type rateSource struct {
	stubSource
	mu    sync.Mutex
	rates []float64
}

func (r *rateSource) SetPollRate(perSecond float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rates = append(r.rates, perSecond)
}

// The registry tells the client the rate its pollers need, so that an
// automatic rate limit never holds the refreshes back.
func TestRegistryTellsThePollRate(t *testing.T) {
	src := &rateSource{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := NewRegistry(ctx, []Source{src}, Options{RefreshInterval: 10 * time.Second, StaleAfter: time.Minute})
	for id := 1; id <= 3; id++ {
		if _, err := r.Poller("contoso", azdo.Pool{ID: id, Name: fmt.Sprint(id)}); err != nil {
			t.Fatal(err)
		}
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	if len(src.rates) != 3 || src.rates[2] != 0.3 {
		t.Fatalf("rates told = %v, want 0.1, 0.2, 0.3 (pollers per second of refresh)", src.rates)
	}
}
