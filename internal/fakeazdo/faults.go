package fakeazdo

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Fault changes the answers to matching calls.
type Fault struct {
	Org      string   // organization name; "" matches every organization
	Endpoint Endpoint // Any matches every endpoint
	Times    int      // how many calls it applies to; 0 means until ClearFaults

	Status         int           // answer with this status instead (0: answer normally)
	Body           string        // with Status, or alone: this raw body (malformed JSON, say); EchoAuthorization in it becomes the request's Authorization header
	ContentType    string        // of Body; default application/json
	RetryAfter     time.Duration // Retry-After header, whole seconds
	RateLimitDelay time.Duration // X-RateLimit-Delay header, seconds (fractions allowed)
	Delay          time.Duration // wait this long before answering (timeouts)
}

// EchoAuthorization in a Fault's Body is replaced with the request's
// Authorization header, as some proxies and servers do in error pages.
const EchoAuthorization = "{{authorization}}"

// InjectFault adds a fault; the first matching fault with calls left applies.
func (s *Server) InjectFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	copied := f
	s.faults = append(s.faults, &copied)
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

func (s *Server) takeFault(org string, ep Endpoint) *Fault {
	for i, f := range s.faults {
		if (f.Org == "" || strings.EqualFold(f.Org, org)) && (f.Endpoint == Any || f.Endpoint == ep) {
			copied := *f
			if f.Times > 0 {
				f.Times--
				if f.Times == 0 {
					s.faults = append(s.faults[:i:i], s.faults[i+1:]...)
				}
			}
			return &copied
		}
	}
	return nil
}

// rateLimit is Azure DevOps' global consumption limit, simplified: every
// request costs one TSTU of a budget per identity over a sliding window
// (Azure DevOps: 200 TSTUs per 5 minutes).
type rateLimit struct {
	limit  int
	window time.Duration
	used   []time.Time
}

// SetRateLimit gives the organization a TSTU budget: every answer then
// carries X-RateLimit-Resource, -Limit, -Remaining and -Reset, and a request
// over budget is answered 429 with Retry-After. limit <= 0 removes it.
func (o *Org) SetRateLimit(limit int, window time.Duration) {
	o.server.mu.Lock()
	defer o.server.mu.Unlock()
	if limit <= 0 {
		o.rateLimit = nil
		return
	}
	o.rateLimit = &rateLimit{limit: limit, window: window}
}

// applyRateLimit sets the rate-limit headers and reports whether the
// request was blocked (and answered).
func (s *Server) applyRateLimit(o *Org, w http.ResponseWriter) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	rl := o.rateLimit
	if rl == nil {
		return false
	}
	now := time.Now()
	kept := rl.used[:0]
	for _, t := range rl.used {
		if now.Sub(t) < rl.window {
			kept = append(kept, t)
		}
	}
	rl.used = kept
	reset := now.Add(rl.window)
	if len(rl.used) > 0 {
		reset = rl.used[0].Add(rl.window)
	}
	remaining := rl.limit - len(rl.used)
	h := w.Header()
	h.Set("X-RateLimit-Resource", "Core")
	h.Set("X-RateLimit-Limit", strconv.Itoa(rl.limit))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(reset.Unix(), 10))
	if remaining <= 0 {
		h.Set("X-RateLimit-Remaining", "0")
		h.Set("Retry-After", strconv.Itoa(int(math.Ceil(reset.Sub(now).Seconds()))))
		writeError(w, http.StatusTooManyRequests, "RequestBlockedException",
			"Request was blocked due to exceeding usage of resource 'Core' in namespace 'User'.")
		return true
	}
	rl.used = append(rl.used, now)
	h.Set("X-RateLimit-Remaining", strconv.Itoa(remaining-1))
	return false
}
