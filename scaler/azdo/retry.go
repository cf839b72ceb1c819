package azdo

import (
	"context"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
	"github.com/sirupsen/logrus"
)

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
		last = c.try(ctx, op, call)
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

// try makes one attempt of a call, within its own timeout.
func (c *Client) try(ctx context.Context, op string, call func(context.Context, *taskagent.ClientImpl) error) *Error {
	actx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	actx, seen := withExchange(actx)
	sdk, err := c.sdkClient(actx)
	if err == nil {
		err = call(actx, sdk)
	}
	if err == nil {
		return nil
	}
	e := classify(op, err, seen.status, actx, c.secrets)
	if e.Status == http.StatusUnauthorized {
		if c.pat != nil {
			c.pat.Refresh() // the Secret may have been rotated since the last read
		}
	}
	return e
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
