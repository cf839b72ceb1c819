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
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/secrets"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
	"github.com/sirupsen/logrus"
	"golang.org/x/time/rate"
)

const apiVersion = "7.1-preview.1"

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

// DefaultTimeout is the default timeout of one attempt (--azdo-timeout).
const DefaultTimeout = 10 * time.Second

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
		o.Timeout = DefaultTimeout
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

// URL is the organization's URL, normalized as the SDK does (lower case, no
// trailing slash).
func (c *Client) URL() string { return c.url }

func normalizeURL(u string) string { return strings.ToLower(strings.TrimRight(u, "/")) }
