// Package azdo is the scaler's access to Azure DevOps: agent pools, their
// job requests and agents, through the azure-devops-go-api SDK.
//
// The SDK has no retry, loses response headers on errors and has no default
// timeout, so this package adds, around the SDK's own clients: a timeout per
// attempt, retries with jittered exponential backoff on 5xx, 429, timeouts
// and malformed answers, a pause of the whole organization when Azure DevOps
// sends Retry-After or X-RateLimit-Delay, a client-side request rate limit,
// and PAT rotation. Auth, error decoding and the user agent stay the SDK's.
//
// Every error this package returns carries only a sanitized text: Azure
// DevOps' own message and type key (never the whole body), cut to
// maxErrorText, with every known secret and any credential-looking value
// removed (package secrets). A proxy that echoes the Authorization header
// in an error body cannot leak the PAT through it.
package azdo

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
	"github.com/sirupsen/logrus"
	"golang.org/x/time/rate"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/secrets"
)

// The job requests resource has no typed call in the SDK; its location id
// and route are those Azure DevOps publishes (see the fake's OPTIONS answer).
var (
	jobRequestsLocation = uuid.MustParse("fc825784-c92a-4299-9221-998a02d1b54f")
	distributedTaskArea = uuid.MustParse("a85b8835-c1a1-4aac-ae97-1c3d0ba72dbd")
)

const apiVersion = "7.1-preview.1"

// ErrNotFound is returned when a pool or agent does not exist (or the PAT
// may not see it).
var ErrNotFound = errors.New("not found")

// Observer receives what the client measures; the metrics package
// implements it with Prometheus.
type Observer interface {
	ObserveCall(org, endpoint, status string, d time.Duration)
	// ObserveRateLimitRemaining: X-RateLimit-Remaining of an answer;
	// reported is false when the answer had none (Azure DevOps sends the
	// header as an identity nears its limit, so none means not near).
	ObserveRateLimitRemaining(org string, remaining float64, reported bool)
	// ObserveThrottle: the client-side rate limit held a request back.
	ObserveThrottle(org string, wait time.Duration)
}

type nopObserver struct{}

func (nopObserver) ObserveCall(string, string, string, time.Duration) {}
func (nopObserver) ObserveRateLimitRemaining(string, float64, bool)   {}
func (nopObserver) ObserveThrottle(string, time.Duration)             {}

// maxErrorText bounds the text of an error from Azure DevOps.
const maxErrorText = 300

// minAutoQPS is the automatic rate limit's floor.
const minAutoQPS = 10

// Options configure a Client. Zero values take the defaults.
type Options struct {
	Name        string        // the organization's name in logs and metrics
	URL         string        // https://dev.azure.com/ORG
	PAT         PATSource     // a PAT (Basic auth), or:
	Token       TokenSource   // a Microsoft Entra ID access token (Bearer); exactly one of the two
	Timeout     time.Duration // per attempt; default 10s
	Attempts    int           // per call; default 3
	BaseBackoff time.Duration // first retry delay; default 500ms
	MaxBackoff  time.Duration // default 10s
	// QPS is the client-side request rate limit. 0: automatic, twice the
	// rate the pools' refreshes need (SetPollRate), at least 10.
	QPS      float64
	Burst    int // default twice the QPS
	Observer Observer
	Logger   logrus.FieldLogger
	// Secrets are redacted from every error text; the client adds each
	// PAT it reads. Default: a set of its own.
	Secrets *secrets.Set
	// Transport is the HTTP transport under the instrumentation; tests use
	// it to reach a fake. Default: a clone of http.DefaultTransport.
	Transport http.RoundTripper
}

// Client talks to one organization. It is safe for concurrent use.
type Client struct {
	name     string
	url      string
	pat      PATSource
	token    TokenSource
	opts     Options
	observer Observer
	log      logrus.FieldLogger
	http     *http.Client
	limiter  *rate.Limiter
	autoQPS  bool
	secrets  *secrets.Set

	mu          sync.Mutex
	pausedUntil time.Time
	sdk         *taskagent.ClientImpl
	sdkAuth     [32]byte // hash of the Authorization header the SDK client was built with
	locationURL string   // distributedtask's base URL, from ResourceAreas
}

// New builds a client. It makes no call until one is needed.
func New(o Options) (*Client, error) {
	if (o.PAT == nil) == (o.Token == nil) {
		return nil, errors.New("azdo: exactly one of a PAT source and a token source is required")
	}
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("azdo: organization URL %q is not an http(s) URL", o.URL)
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Attempts <= 0 {
		o.Attempts = 3
	}
	if o.BaseBackoff <= 0 {
		o.BaseBackoff = 500 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 10 * time.Second
	}
	auto := o.QPS <= 0
	if auto {
		o.QPS = minAutoQPS
	}
	if o.Burst <= 0 {
		o.Burst = max(1, int(2*o.QPS))
	}
	if o.Secrets == nil {
		o.Secrets = secrets.NewSet()
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	if o.Logger == nil {
		o.Logger = logrus.StandardLogger()
	}
	if o.Name == "" {
		o.Name = u.Path
	}
	next := o.Transport
	if next == nil {
		next = http.DefaultTransport.(*http.Transport).Clone()
	}
	c := &Client{
		name: o.Name, url: normalizeURL(o.URL), pat: o.PAT, token: o.Token, opts: o, observer: o.Observer,
		log:     o.Logger.WithField("organization", o.Name),
		limiter: rate.NewLimiter(rate.Limit(o.QPS), o.Burst), autoQPS: auto, secrets: o.Secrets,
	}
	// The attempt's context carries the timeout; this is a backstop.
	c.http = &http.Client{Transport: &transport{next: next, client: c}, Timeout: o.Timeout + time.Second}
	return c, nil
}

// Name is the organization's name.
func (c *Client) Name() string { return c.name }

// SetPollRate tells an automatic rate limit how many requests per second
// the pools' refreshes need; the limit becomes twice that, at least 10, so
// that it never holds the configured refreshes back. A fixed --azdo-qps
// is left alone.
func (c *Client) SetPollRate(perSecond float64) {
	if !c.autoQPS {
		return
	}
	qps := max(minAutoQPS, 2*perSecond)
	if rate.Limit(qps) != c.limiter.Limit() {
		c.limiter.SetLimit(rate.Limit(qps))
		c.limiter.SetBurst(max(1, int(2*qps)))
	}
}

// Limit is the current client-side request rate limit.
func (c *Client) Limit() float64 { return float64(c.limiter.Limit()) }

// URL is the organization's URL, normalized as the SDK does (lower case, no
// trailing slash).
func (c *Client) URL() string { return c.url }

func normalizeURL(u string) string { return strings.ToLower(strings.TrimRight(u, "/")) }

// Pool identifies an agent pool.
type Pool struct {
	ID   int
	Name string
}

// PoolByName finds a pool by its name.
func (c *Client) PoolByName(ctx context.Context, name string) (Pool, error) {
	var pools *[]taskagent.TaskAgentPool
	err := c.do(ctx, "get pool "+strconv.Quote(name), func(ctx context.Context, sdk *taskagent.ClientImpl) (err error) {
		pools, err = sdk.GetAgentPools(ctx, taskagent.GetAgentPoolsArgs{PoolName: &name})
		return err
	})
	if err != nil {
		return Pool{}, err
	}
	var found []Pool
	for _, p := range *pools {
		if p.Id != nil && p.Name != nil && strings.EqualFold(*p.Name, name) {
			found = append(found, Pool{ID: *p.Id, Name: *p.Name})
		}
	}
	switch len(found) {
	case 0:
		return Pool{}, fmt.Errorf("agent pool %q: %w in organization %s", name, ErrNotFound, c.name)
	case 1:
		return found[0], nil
	default:
		return Pool{}, fmt.Errorf("agent pool name %q matches %d pools in organization %s; use poolID", name, len(found), c.name)
	}
}

// PoolByID finds a pool by its id.
func (c *Client) PoolByID(ctx context.Context, id int) (Pool, error) {
	var pool *taskagent.TaskAgentPool
	err := c.do(ctx, "get pool "+strconv.Itoa(id), func(ctx context.Context, sdk *taskagent.ClientImpl) (err error) {
		pool, err = sdk.GetAgentPool(ctx, taskagent.GetAgentPoolArgs{PoolId: &id})
		return err
	})
	if err != nil {
		var e *Error
		if errors.As(err, &e) && e.Status == http.StatusNotFound {
			return Pool{}, fmt.Errorf("agent pool %d: %w in organization %s", id, ErrNotFound, c.name)
		}
		return Pool{}, err
	}
	if pool.Id == nil || pool.Name == nil {
		return Pool{}, &Error{Op: "get pool " + strconv.Itoa(id), Err: errors.New("the answer has no pool id or name"), Retryable: true}
	}
	return Pool{ID: *pool.Id, Name: *pool.Name}, nil
}

// UnfinishedJobRequests lists a pool's job requests that have no result yet
// (queued and running), with the demands and matched agents of each.
//
// It asks for completedRequestCount=0 instead of KEDA's $top=250: the answer
// holds every unfinished request and no finished one, however busy the pool,
// and it keeps matchedAgents, which $top drops.
func (c *Client) UnfinishedJobRequests(ctx context.Context, poolID int) ([]taskagent.TaskAgentJobRequest, error) {
	var out []taskagent.TaskAgentJobRequest
	err := c.do(ctx, fmt.Sprintf("list job requests of pool %d", poolID), func(ctx context.Context, sdk *taskagent.ClientImpl) error {
		resp, err := sdk.Client.Send(ctx, http.MethodGet, jobRequestsLocation, apiVersion,
			map[string]string{"poolId": strconv.Itoa(poolID)}, url.Values{"completedRequestCount": {"0"}},
			nil, "", "application/json", nil)
		if err != nil {
			return err
		}
		out = nil
		if err := sdk.Client.UnmarshalCollectionBody(resp, &out); err != nil {
			return &Error{Op: "decode job requests", Err: err, Retryable: true, Detail: sanitize(c.secrets, err.Error())}
		}
		return nil
	})
	return out, err
}

// Agents lists a pool's agents with their capabilities, assigned request
// and last completed request.
func (c *Client) Agents(ctx context.Context, poolID int) ([]taskagent.TaskAgent, error) {
	var agents *[]taskagent.TaskAgent
	yes := true
	err := c.do(ctx, fmt.Sprintf("list agents of pool %d", poolID), func(ctx context.Context, sdk *taskagent.ClientImpl) (err error) {
		agents, err = sdk.GetAgents(ctx, taskagent.GetAgentsArgs{PoolId: &poolID, IncludeCapabilities: &yes,
			IncludeAssignedRequest: &yes, IncludeLastCompletedRequest: &yes})
		return err
	})
	if err != nil {
		return nil, err
	}
	return *agents, nil
}

// SelfHostedPools lists the organization's self-hosted agent pools
// (automation pools, not Microsoft-hosted ones).
func (c *Client) SelfHostedPools(ctx context.Context) ([]Pool, error) {
	var pools *[]taskagent.TaskAgentPool
	automation := taskagent.TaskAgentPoolTypeValues.Automation
	err := c.do(ctx, "list agent pools", func(ctx context.Context, sdk *taskagent.ClientImpl) (err error) {
		pools, err = sdk.GetAgentPools(ctx, taskagent.GetAgentPoolsArgs{PoolType: &automation})
		return err
	})
	if err != nil {
		return nil, err
	}
	var out []Pool
	for _, p := range *pools {
		if p.Id == nil || p.Name == nil {
			return nil, &Error{Op: "list agent pools", Err: errors.New("a pool in the answer has no id or name"), Retryable: true}
		}
		if p.IsHosted != nil && *p.IsHosted {
			continue
		}
		out = append(out, Pool{ID: *p.Id, Name: *p.Name})
	}
	return out, nil
}

// AddAgent registers an agent in a pool, as config.sh does. It is not
// retried within the call: a registration that may have reached Azure
// DevOps is looked for again by the caller's next round.
func (c *Client) AddAgent(ctx context.Context, poolID int, agent taskagent.TaskAgent) (taskagent.TaskAgent, error) {
	var added *taskagent.TaskAgent
	err := c.doAttempts(ctx, fmt.Sprintf("register agent in pool %d", poolID), 1, func(ctx context.Context, sdk *taskagent.ClientImpl) (err error) {
		added, err = sdk.AddAgent(ctx, taskagent.AddAgentArgs{PoolId: &poolID, Agent: &agent})
		return err
	})
	if err != nil {
		return taskagent.TaskAgent{}, err
	}
	return *added, nil
}

// DeleteAgent removes an agent from a pool. It is never retried within the
// call: a failed delete is retried by the caller's next sweep.
func (c *Client) DeleteAgent(ctx context.Context, poolID, agentID int) error {
	return c.doAttempts(ctx, fmt.Sprintf("delete agent %d of pool %d", agentID, poolID), 1, func(ctx context.Context, sdk *taskagent.ClientImpl) error {
		return sdk.DeleteAgent(ctx, taskagent.DeleteAgentArgs{PoolId: &poolID, AgentId: &agentID})
	})
}

// Error is a failed call to Azure DevOps.
type Error struct {
	Op        string
	Status    int // HTTP status; 0 when there was no answer
	Retryable bool
	Err       error
	// Detail is the sanitized text of Err: Azure DevOps' message and type
	// key only, redacted and cut. Error() shows it, never Err's own text.
	Detail string
}

func (e *Error) Error() string {
	detail := e.Detail
	if detail == "" && e.Err != nil {
		detail = e.Err.Error() // an error this package made itself
	}
	if e.Status != 0 {
		return fmt.Sprintf("azure devops: %s: HTTP %d: %s", e.Op, e.Status, detail)
	}
	return fmt.Sprintf("azure devops: %s: %s", e.Op, detail)
}

func (e *Error) Unwrap() error { return e.Err }

func (c *Client) do(ctx context.Context, op string, call func(context.Context, *taskagent.ClientImpl) error) error {
	return c.doAttempts(ctx, op, c.opts.Attempts, call)
}

// doAttempts runs call with a timeout per attempt, retrying what is worth
// retrying with jittered exponential backoff, within ctx.
func (c *Client) doAttempts(ctx context.Context, op string, attempts int, call func(context.Context, *taskagent.ClientImpl) error) error {
	var last *Error
	for i := 0; i < attempts; i++ {
		if i > 0 {
			// Full jitter keeps many pollers from retrying in step.
			backoff := min(c.opts.BaseBackoff<<(i-1), c.opts.MaxBackoff)
			if last.Status == http.StatusTooManyRequests || last.Status == http.StatusServiceUnavailable {
				backoff = 0 // the pause set from Retry-After is the wait
			}
			if err := sleep(ctx, rand.N(backoff+1)); err != nil {
				return last
			}
		}
		if err := c.waitTurn(ctx); err != nil {
			if last != nil {
				return last
			}
			return &Error{Op: op, Err: err, Retryable: true}
		}
		last = c.attempt(ctx, op, call)
		if last == nil {
			return nil
		}
		ReportAttempt(ctx, last) // the caller learns the cause now, not after every retry
		c.log.WithFields(logrus.Fields{"op": op, "attempt": i + 1, "status": last.Status}).WithError(last.Err).Debug("azure devops call failed")
		if !last.Retryable || ctx.Err() != nil {
			return last
		}
	}
	return last
}

func (c *Client) attempt(ctx context.Context, op string, call func(context.Context, *taskagent.ClientImpl) error) *Error {
	actx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	actx, seen := withAttempt(actx)
	sdk, err := c.sdkClient(actx)
	if err == nil {
		err = call(actx, sdk)
	}
	if err == nil {
		return nil
	}
	e := classify(op, err, seen.status, actx, c.secrets)
	if e.Status == http.StatusUnauthorized {
		if r, ok := c.pat.(interface{ Refresh() }); ok {
			r.Refresh() // the Secret may have been rotated since the last read
		}
	}
	return e
}

// authorization is the Authorization header of the next call: a PAT's
// changes when its Secret is rotated, an access token's when the token
// source refreshes it before it expires.
func (c *Client) authorization(ctx context.Context) (string, error) {
	if c.token != nil {
		tok, err := c.token.Token(ctx)
		if err != nil {
			return "", &Error{Op: "get an access token", Err: err, Retryable: true, Detail: sanitize(c.secrets, err.Error())}
		}
		c.secrets.AddRotating("access token of "+c.name, tok)
		return "Bearer " + tok, nil
	}
	pat, err := c.pat.PAT()
	if err != nil {
		return "", &Error{Op: "read PAT", Err: err, Detail: sanitize(c.secrets, err.Error())}
	}
	c.secrets.Add(pat)
	return azuredevops.CreateBasicAuthHeaderValue("", pat), nil
}

// classify turns any of the SDK's error shapes into an *Error: a
// *WrappedError or WrappedError value (JSON or text bodies), a decode error
// when the body was neither (status known only to the transport), or a
// transport error. Its Detail is sanitized (see the package comment).
func classify(op string, err error, seenStatus int, actx context.Context, set *secrets.Set) *Error {
	var already *Error
	if errors.As(err, &already) {
		return already
	}
	status := seenStatus
	var wrapped *azuredevops.WrappedError
	var wrappedValue azuredevops.WrappedError
	text := ""
	switch {
	case errors.As(err, &wrapped):
		text = wrappedText(wrapped)
		if wrapped.StatusCode != nil {
			status = *wrapped.StatusCode
		}
	case errors.As(err, &wrappedValue):
		text = wrappedText(&wrappedValue)
		if wrappedValue.StatusCode != nil {
			status = *wrappedValue.StatusCode
		}
	default:
		text = err.Error()
	}
	e := &Error{Op: op, Status: status, Err: err}
	var netErr net.Error
	switch {
	case errors.Is(actx.Err(), context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout()):
		e.Retryable, text = true, "timed out: "+text
	case status == http.StatusTooManyRequests || status >= 500:
		e.Retryable = true
	case status >= 200 && status < 300:
		e.Retryable = true // a 2xx the SDK could not decode: malformed JSON
	case status == 0:
		e.Retryable = true // no answer at all: connection refused or reset
	}
	if status == http.StatusNonAuthoritativeInfo {
		text, e.Retryable = "Azure DevOps answered with a sign-in page: the PAT is not valid", false
	}
	e.Detail = sanitize(set, text)
	return e
}

// sanitize is the one way a text from Azure DevOps, or about a call to
// it, becomes part of an Error: redacted, then cut.
func sanitize(set *secrets.Set, text string) string {
	return secrets.Truncate(set.Redact(text), maxErrorText)
}

// wrappedText is Azure DevOps' own message and type key, and nothing else
// of the body (a text/plain body is its message, whole: hence the cut).
func wrappedText(w *azuredevops.WrappedError) string {
	msg := ""
	if w.Message != nil {
		msg = strings.TrimSpace(*w.Message)
	}
	if msg == "" {
		msg = "no message"
	}
	if w.TypeKey != nil && *w.TypeKey != "" {
		msg += " (" + *w.TypeKey + ")"
	}
	return msg
}

type attemptErrorsKey struct{}

// WithAttemptErrors makes calls made with the returned context report the
// error of every failed attempt to report, as it happens: a caller that
// retries for tens of seconds knows the cause after the first failure.
func WithAttemptErrors(ctx context.Context, report func(error)) context.Context {
	return context.WithValue(ctx, attemptErrorsKey{}, report)
}

// ReportAttempt tells the caller that set WithAttemptErrors on ctx about a
// failed attempt; without one it does nothing.
func ReportAttempt(ctx context.Context, err error) {
	if report, ok := ctx.Value(attemptErrorsKey{}).(func(error)); ok && report != nil {
		report(err)
	}
}

// sdkClient returns the SDK client for the current PAT or token, building
// it (and, once, discovering distributedtask's location) when needed.
func (c *Client) sdkClient(ctx context.Context) (*taskagent.ClientImpl, error) {
	auth, err := c.authorization(ctx)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(auth))
	c.mu.Lock()
	if c.sdk != nil && c.sdkAuth == sum {
		sdk := c.sdk
		c.mu.Unlock()
		return sdk, nil
	}
	locationURL := c.locationURL
	c.mu.Unlock()

	conn := &azuredevops.Connection{AuthorizationString: auth, BaseUrl: c.url, SuppressFedAuthRedirect: true}
	if locationURL == "" {
		// What taskagent.NewClient does, but on our HTTP client so that these
		// calls are timed, limited and counted like the others.
		areas, err := azuredevops.NewClientWithOptions(conn, c.url, azuredevops.WithHTTPClient(c.http)).GetResourceAreas(ctx)
		if err != nil {
			return nil, err
		}
		locationURL = c.url // on-premises servers answer an empty list
		for _, a := range *areas {
			if a.Id != nil && *a.Id == distributedTaskArea && a.LocationUrl != nil {
				locationURL = normalizeURL(*a.LocationUrl)
			}
		}
	}
	sdk := &taskagent.ClientImpl{Client: *azuredevops.NewClientWithOptions(conn, locationURL, azuredevops.WithHTTPClient(c.http))}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sdk != nil && c.sdkAuth != sum {
		if c.pat != nil {
			c.log.Info("personal access token changed; using the new one")
		} else {
			c.log.Debug("access token refreshed; using the new one")
		}
	}
	c.sdk, c.sdkAuth, c.locationURL = sdk, sum, locationURL
	return sdk, nil
}

// pauseFor holds this organization's calls back for d.
func (c *Client) pauseFor(d time.Duration, why string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	until := time.Now().Add(d)
	if until.After(c.pausedUntil) {
		c.pausedUntil = until
		c.log.WithFields(logrus.Fields{"for": d.String(), "reason": why}).Warn("Azure DevOps asked to slow down; pausing calls to this organization")
	}
}

// PausedUntil tells until when calls are held back (zero: not paused).
func (c *Client) PausedUntil() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Now().After(c.pausedUntil) {
		return time.Time{}
	}
	return c.pausedUntil
}

// waitTurn waits out a pause and the client-side rate limit.
func (c *Client) waitTurn(ctx context.Context) error {
	if until := c.PausedUntil(); !until.IsZero() {
		if dl, ok := ctx.Deadline(); ok && dl.Before(until) {
			return fmt.Errorf("calls to %s are paused for %s at Azure DevOps' request", c.name, time.Until(until).Round(time.Second))
		}
		if err := sleep(ctx, time.Until(until)); err != nil {
			return err
		}
	}
	r := c.limiter.Reserve()
	if !r.OK() {
		return errors.New("the client-side rate limit admits no request")
	}
	if d := r.Delay(); d > 0 {
		c.observer.ObserveThrottle(c.name, d)
		if err := sleep(ctx, d); err != nil {
			r.Cancel()
			return err
		}
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
