package azdo

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo/fakeazdotest"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/secrets"
)

const testPAT = "pat-for-tests-0123456789"

func startFake(t *testing.T) (*fakeazdo.Server, *fakeazdo.Org) {
	t.Helper()
	s := fakeazdotest.Start(t)
	return s, s.AddOrg("Contoso", testPAT)
}

type recordingObserver struct {
	mu        sync.Mutex
	calls     map[string]int
	remaining []float64
	throttled []time.Duration
}

func (r *recordingObserver) ObserveCall(_, endpoint, status string, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.calls == nil {
		r.calls = map[string]int{}
	}
	r.calls[endpoint+" "+status]++
}

func (r *recordingObserver) ObserveThrottle(_ string, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.throttled = append(r.throttled, d)
}

func (r *recordingObserver) ObserveRateLimitRemaining(_ string, v float64, reported bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !reported {
		v = -1 // the answer had no X-RateLimit-Remaining
	}
	r.remaining = append(r.remaining, v)
}

func newClient(t *testing.T, s *fakeazdo.Server, pat PATSource, mutate ...func(*Options)) *Client {
	t.Helper()
	o := Options{Name: "contoso", URL: s.OrgURL("Contoso"), PAT: pat, Timeout: time.Second,
		BaseBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, QPS: 1000, Burst: 1000}
	for _, m := range mutate {
		m(&o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestPoolsAndJobRequestsThroughTheSDK(t *testing.T) {
	s, org := startFake(t)
	linux := org.AddPool("Linux Pool")
	org.AddPool("other")
	queued := org.QueueJob(linux, fakeazdo.Job{Demands: []string{"Agent.OS -equals Linux", "docker"}})
	running := org.QueueJob(linux, fakeazdo.Job{})
	finished := org.QueueJob(linux, fakeazdo.Job{})
	if err := org.ReceiveJob(running); err != nil {
		t.Fatal(err)
	}
	if err := org.FinishJob(finished, "succeeded"); err != nil {
		t.Fatal(err)
	}
	obs := &recordingObserver{}
	c := newClient(t, s, StaticPAT(testPAT), func(o *Options) { o.Observer = obs })
	ctx := context.Background()

	p, err := c.PoolByName(ctx, "linux pool")
	if err != nil || p.ID != linux || p.Name != "Linux Pool" {
		t.Fatalf("PoolByName = %+v, %v", p, err)
	}
	p, err = c.PoolByID(ctx, linux)
	if err != nil || p.Name != "Linux Pool" {
		t.Fatalf("PoolByID = %+v, %v", p, err)
	}
	if _, err := c.PoolByName(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("PoolByName(nope) error = %v, want ErrNotFound", err)
	}
	if _, err := c.PoolByID(ctx, 99); !errors.Is(err, ErrNotFound) {
		t.Fatalf("PoolByID(99) error = %v, want ErrNotFound", err)
	}
	jobs, err := c.UnfinishedJobRequests(ctx, linux)
	if err != nil {
		t.Fatal(err)
	}
	got := map[uint64]bool{}
	for _, j := range jobs {
		got[*j.RequestId] = true
		if *j.RequestId == queued && (j.Demands == nil || len(*j.Demands) != 2 || (*j.Demands)[0] != "Agent.OS -equals Linux") {
			t.Errorf("queued job demands = %v", j.Demands)
		}
		if *j.RequestId == running && (j.ReceiveTime == nil || j.ReceiveTime.Time.IsZero()) {
			t.Error("running job has no receiveTime")
		}
	}
	if !got[queued] || !got[running] || got[finished] || len(jobs) != 2 {
		t.Fatalf("unfinished requests = %v, want %d and %d only", got, queued, running)
	}
	// Discovery happened once, through our transport.
	if n := s.Calls("contoso", fakeazdo.Options); n != 1 {
		t.Errorf("OPTIONS calls = %d, want 1", n)
	}
	if n := s.Calls("contoso", fakeazdo.ResourceAreas); n != 1 {
		t.Errorf("ResourceAreas calls = %d, want 1", n)
	}
	if obs.calls["jobrequests 200"] != 1 || obs.calls["options 200"] != 1 {
		t.Errorf("observed calls = %v", obs.calls)
	}
}

func TestRetriesServerErrorsThenSucceeds(t *testing.T) {
	s, org := startFake(t)
	pool := org.AddPool("p")
	c := newClient(t, s, StaticPAT(testPAT))
	if _, err := c.UnfinishedJobRequests(context.Background(), pool); err != nil { // warm discovery
		t.Fatal(err)
	}
	s.ResetCalls()
	s.InjectFault(fakeazdo.Fault{Endpoint: fakeazdo.JobRequests, Status: 503, Body: `{"message":"busy"}`, Times: 2})
	if _, err := c.UnfinishedJobRequests(context.Background(), pool); err != nil {
		t.Fatalf("after two 503s the third attempt must succeed: %v", err)
	}
	if n := s.Calls("contoso", fakeazdo.JobRequests); n != 3 {
		t.Errorf("job request calls = %d, want 3", n)
	}
	s.InjectFault(fakeazdo.Fault{Endpoint: fakeazdo.JobRequests, Status: 500, Body: "oops", ContentType: "text/plain", Times: 3})
	_, err := c.UnfinishedJobRequests(context.Background(), pool)
	var e *Error
	if !errors.As(err, &e) || e.Status != 500 || !e.Retryable {
		t.Fatalf("error after a burst of 500s = %#v", err)
	}
}

func TestNoRetryOnClientErrors(t *testing.T) {
	s, org := startFake(t)
	pool := org.AddPool("p")
	c := newClient(t, s, StaticPAT("wrong-pat"))
	_, err := c.UnfinishedJobRequests(context.Background(), pool)
	var e *Error
	if !errors.As(err, &e) || e.Status != http.StatusUnauthorized || e.Retryable {
		t.Fatalf("wrong PAT error = %#v", err)
	}
	if n := s.Calls("contoso", fakeazdo.Any); n != 1 {
		t.Errorf("calls with a wrong PAT = %d, want 1 (no retry)", n)
	}
	if strings.Contains(err.Error(), "wrong-pat") {
		t.Fatal("the error message contains the PAT")
	}
}

func TestMalformedAnswerIsAnErrorNotEmpty(t *testing.T) {
	s, org := startFake(t)
	pool := org.AddPool("p")
	org.QueueJob(pool, fakeazdo.Job{})
	c := newClient(t, s, StaticPAT(testPAT), func(o *Options) { o.Attempts = 1 })
	if _, err := c.UnfinishedJobRequests(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	s.InjectFault(fakeazdo.Fault{Endpoint: fakeazdo.JobRequests, Body: `{"count": 1, "value": [{"requestId": `, Times: 1})
	jobs, err := c.UnfinishedJobRequests(context.Background(), pool)
	if err == nil {
		t.Fatalf("malformed JSON gave %d jobs and no error", len(jobs))
	}
	// An HTML answer with status 500 (a proxy's error page) keeps its status.
	s.InjectFault(fakeazdo.Fault{Endpoint: fakeazdo.JobRequests, Status: 502, Body: "<html>bad gateway</html>", ContentType: "text/html", Times: 1})
	_, err = c.UnfinishedJobRequests(context.Background(), pool)
	var e *Error
	if !errors.As(err, &e) || e.Status != 502 {
		t.Fatalf("HTML 502 error = %#v", err)
	}
}

func TestTimeoutPerAttempt(t *testing.T) {
	s, org := startFake(t)
	pool := org.AddPool("p")
	c := newClient(t, s, StaticPAT(testPAT), func(o *Options) { o.Timeout = 100 * time.Millisecond })
	if _, err := c.UnfinishedJobRequests(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	s.InjectFault(fakeazdo.Fault{Endpoint: fakeazdo.JobRequests, Delay: 2 * time.Second, Times: 1})
	if _, err := c.UnfinishedJobRequests(context.Background(), pool); err != nil {
		t.Fatalf("one slow answer then a fast one must succeed: %v", err)
	}
	s.InjectFault(fakeazdo.Fault{Endpoint: fakeazdo.JobRequests, Delay: 2 * time.Second})
	_, err := c.UnfinishedJobRequests(context.Background(), pool)
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("error when every answer is slow = %v", err)
	}
}

func TestRetryAfterPausesTheOrganization(t *testing.T) {
	s, org := startFake(t)
	pool := org.AddPool("p")
	c := newClient(t, s, StaticPAT(testPAT))
	if _, err := c.UnfinishedJobRequests(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	s.InjectFault(fakeazdo.Fault{Endpoint: fakeazdo.JobRequests, Status: 429, RetryAfter: time.Second, Body: `{"message":"blocked"}`, Times: 1})
	start := time.Now()
	if _, err := c.UnfinishedJobRequests(context.Background(), pool); err != nil {
		t.Fatalf("the retry after Retry-After must succeed: %v", err)
	}
	if waited := time.Since(start); waited < 900*time.Millisecond {
		t.Fatalf("retried after %v, before Retry-After (1s)", waited)
	}
	// A caller whose deadline ends before the pause does not call at all.
	s.InjectFault(fakeazdo.Fault{Endpoint: fakeazdo.JobRequests, Status: 429, RetryAfter: 30 * time.Second, Times: 1})
	s.ResetCalls()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := c.UnfinishedJobRequests(ctx, pool)
	if err == nil || s.Calls("contoso", fakeazdo.JobRequests) != 1 {
		t.Fatalf("err = %v, calls = %d; want an error after exactly one call", err, s.Calls("contoso", fakeazdo.JobRequests))
	}
	if c.PausedUntil().Before(time.Now().Add(25 * time.Second)) {
		t.Fatalf("paused until %v, want about 30s from now", c.PausedUntil())
	}
	if _, err := c.PoolByID(ctx, pool); err == nil {
		t.Fatal("every call of the organization must wait out the pause")
	}
}

func TestRateLimitHeaders(t *testing.T) {
	s, org := startFake(t)
	pool := org.AddPool("p")
	org.SetRateLimit(1000, time.Minute)
	obs := &recordingObserver{}
	c := newClient(t, s, StaticPAT(testPAT), func(o *Options) { o.Observer = obs })
	if _, err := c.UnfinishedJobRequests(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	if len(obs.remaining) == 0 || obs.remaining[len(obs.remaining)-1] >= 1000 || obs.remaining[len(obs.remaining)-1] < 0 {
		t.Fatalf("X-RateLimit-Remaining not recorded: %v", obs.remaining)
	}
	s.InjectFault(fakeazdo.Fault{Endpoint: fakeazdo.JobRequests, RateLimitDelay: 1500 * time.Millisecond, Times: 1})
	if _, err := c.UnfinishedJobRequests(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	if c.PausedUntil().IsZero() {
		t.Fatal("X-RateLimit-Delay must slow the organization down")
	}
}

func TestPATRotation(t *testing.T) {
	s, org := startFake(t)
	pool := org.AddPool("p")
	file := filepath.Join(t.TempDir(), "pat")
	if err := os.WriteFile(file, []byte(testPAT+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := &FilePAT{Path: file, CheckEvery: time.Hour}
	c := newClient(t, s, src)
	if _, err := c.UnfinishedJobRequests(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	// Rotation: Azure DevOps accepts only the new token, the Secret is
	// updated. The 401 makes the client read the file again at once.
	org.SetPATs("the-new-pat")
	if err := os.WriteFile(file, []byte("the-new-pat"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UnfinishedJobRequests(context.Background(), pool); err == nil {
		t.Fatal("the old PAT must fail once")
	}
	if _, err := c.UnfinishedJobRequests(context.Background(), pool); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	// Rotation without a 401 is picked up on the next check.
	src2 := &FilePAT{Path: file, CheckEvery: time.Millisecond}
	if err := os.WriteFile(file, []byte("third"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	if p, _ := src2.PAT(); p != "third" {
		t.Fatalf("FilePAT = %q after the file changed", p)
	}
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	if _, err := src2.PAT(); err == nil {
		t.Fatal("an empty PAT file must be an error")
	}
}

func TestSignInPageMeansBadPAT(t *testing.T) {
	// Callers that do not send X-TFS-FedAuthRedirect get a 203 sign-in page,
	// as from Azure DevOps; classify must not call that success.
	e := classify("x", errors.New("invalid character '<'"), http.StatusNonAuthoritativeInfo, context.Background(), secrets.NewSet())
	if e.Retryable || !strings.Contains(e.Error(), "sign-in page") {
		t.Fatalf("classify(203) = %v", e)
	}
}

func TestDeleteAgentIsNotRetried(t *testing.T) {
	s, org := startFake(t)
	pool := org.AddPool("p")
	id := org.AddAgent(pool, fakeazdo.Agent{Name: "a1"})
	c := newClient(t, s, StaticPAT(testPAT))
	if _, err := c.Agents(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	s.InjectFault(fakeazdo.Fault{Endpoint: fakeazdo.DeleteAgent, Status: 500, Body: `{"message":"x"}`, Times: 1})
	if err := c.DeleteAgent(context.Background(), pool, id); err == nil {
		t.Fatal("delete must report the 500")
	}
	if n := s.Calls("contoso", fakeazdo.DeleteAgent); n != 1 {
		t.Fatalf("delete calls = %d, want 1", n)
	}
	if err := c.DeleteAgent(context.Background(), pool, id); err != nil {
		t.Fatal(err)
	}
	if names := org.AgentNames(pool); len(names) != 0 {
		t.Fatalf("agents left: %v", names)
	}
	if err := c.DeleteAgent(context.Background(), pool, id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleting a missing agent: error = %v, want ErrNotFound (any 404 is)", err)
	}
}

// The automatic rate limit follows the pools' refresh rate; a request the
// limit holds back is observed (the throttle metric).
func TestAutomaticRateLimitAndThrottleMetric(t *testing.T) {
	s, org := startFake(t)
	org.AddPool("p")
	obs := &recordingObserver{}
	auto := newClient(t, s, StaticPAT(testPAT), func(o *Options) { o.QPS, o.Burst, o.Observer = 0, 0, obs })
	if auto.Limit() != 10 {
		t.Fatalf("automatic limit with no pools = %v, want the floor 10", auto.Limit())
	}
	auto.SetPollers(300, 10*time.Second) // 30 requests/s
	if auto.Limit() != 60 {
		t.Fatalf("automatic limit = %v, want twice the poll rate (60)", auto.Limit())
	}
	fixed := newClient(t, s, StaticPAT(testPAT), func(o *Options) { o.QPS, o.Burst, o.Observer = 2, 1, obs })
	fixed.SetPollers(300, 10*time.Second)
	if fixed.Limit() != 2 {
		t.Fatalf("a fixed --azdo-qps changed to %v", fixed.Limit())
	}
	for range 3 {
		if _, err := fixed.PoolByName(context.Background(), "p"); err != nil {
			t.Fatal(err)
		}
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.throttled) == 0 {
		t.Fatal("3 quick requests at 2 per second (burst 1): none observed as throttled")
	}
}
