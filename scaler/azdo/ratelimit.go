package azdo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/time/rate"
)

// minAutoQPS is the automatic rate limit's floor.
const minAutoQPS = 10

// autoQPS is the automatic request rate limit of an organization whose
// client refreshes pools pools, each at most once per minRefresh.
func autoQPS(pools int, minRefresh time.Duration) float64 {
	return max(minAutoQPS, 2*float64(pools)/minRefresh.Seconds())
}

// SetPollers sets the automatic rate limit from the pools this client
// refreshes: each pool makes at most one job-requests call per minRefresh,
// so they need pools/minRefresh requests per second; the limit is twice
// that, at least minAutoQPS, so that it never holds the refreshes back and
// leaves room for lookups, the sweeper and the placeholders. A fixed
// --azdo-qps is left alone.
func (c *Client) SetPollers(pools int, minRefresh time.Duration) {
	if !c.autoQPS || minRefresh <= 0 {
		return
	}
	qps := autoQPS(pools, minRefresh)
	if rate.Limit(qps) != c.limiter.Limit() {
		c.limiter.SetLimit(rate.Limit(qps))
		c.limiter.SetBurst(max(1, int(2*qps)))
	}
}

// Limit is the current client-side request rate limit.
func (c *Client) Limit() float64 { return float64(c.limiter.Limit()) }

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
