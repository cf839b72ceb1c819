package fakeazdo

import (
	"math"
	"net/http"
	"strconv"
	"time"
)

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
