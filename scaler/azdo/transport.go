package azdo

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// exchange collects what the transport saw of the HTTP exchanges of one
// attempt. The SDK's Send drops the response on a non-2xx status, and with
// it the status code of a non-JSON body, so the transport records it here,
// found through the request's context. (Retry-After is acted on in the
// transport itself: it pauses the organization.)
type exchange struct {
	status int
}

type exchangeKey struct{}

func withExchange(ctx context.Context) (context.Context, *exchange) {
	x := &exchange{}
	return context.WithValue(ctx, exchangeKey{}, x), x
}

// transport wraps the HTTP transport of one organization's SDK clients: it
// times every call, reads the rate-limit headers, and pauses the
// organization when Azure DevOps asks for it.
type transport struct {
	next   http.RoundTripper
	client *Client
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.next.RoundTrip(req)
	endpoint := endpointOf(req)
	status := "error"
	if resp != nil {
		status = strconv.Itoa(resp.StatusCode)
	}
	t.client.observer.ObserveCall(t.client.name, endpoint, status, time.Since(start))
	if err != nil {
		return nil, err
	}
	h := resp.Header
	if n, perr := strconv.ParseFloat(h.Get("X-RateLimit-Remaining"), 64); perr == nil {
		t.client.observer.ObserveRateLimitRemaining(t.client.name, n, true)
	} else {
		t.client.observer.ObserveRateLimitRemaining(t.client.name, 0, false)
	}
	// X-RateLimit-Delay: Azure DevOps delayed this request that long; it
	// wants callers to slow down, so hold this organization's next calls
	// back by as much.
	if v := h.Get("X-RateLimit-Delay"); v != "" {
		if secs, perr := strconv.ParseFloat(v, 64); perr == nil && secs > 0 {
			t.client.pauseFor(time.Duration(secs*float64(time.Second)), "X-RateLimit-Delay")
		}
	}
	retryAfter := parseRetryAfter(h.Get("Retry-After"), time.Now())
	if retryAfter > 0 && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
		t.client.pauseFor(retryAfter, "Retry-After")
	}
	if x, ok := req.Context().Value(exchangeKey{}).(*exchange); ok {
		x.status = resp.StatusCode
	}
	return resp, nil
}

// parseRetryAfter reads seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// endpointOf names a call for metrics, from its method and route.
func endpointOf(req *http.Request) string {
	p := strings.ToLower(req.URL.Path)
	switch {
	case req.Method == http.MethodOptions:
		return "options"
	case strings.HasSuffix(p, "/_apis/resourceareas"):
		return "resourceareas"
	case strings.Contains(p, "/jobrequests"):
		return "jobrequests"
	case strings.Contains(p, "/agents") && req.Method == http.MethodDelete:
		return "deleteagent"
	case strings.Contains(p, "/agents"):
		return "agents"
	case strings.Contains(p, "/distributedtask/pools"):
		return "pools"
	case strings.HasSuffix(p, "/distributedtask/resourceusage"):
		return "resourceusage"
	}
	return "other"
}
