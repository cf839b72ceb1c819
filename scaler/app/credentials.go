package app

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/azdo"
)

// credentialRecheck is how often a refused credential is tried again (a
// rotated Secret is read at the next call). A variable for tests.
var credentialRecheck = 30 * time.Second

// credentials tries each organization's credential once at start and a
// refused one again every credentialRecheck, so that a wrong PAT or
// service principal shows at once, in readiness and a metric, instead of
// as later errors in the logs.
type credentialCheck struct {
	mu      sync.Mutex
	refused map[string]string // organization -> cause
}

type credentialObserver interface {
	ObserveCredential(org string, accepted bool)
}

func (c *credentialCheck) run(ctx context.Context, clients map[string]*azdo.Client, m credentialObserver, log logrus.FieldLogger) {
	pending := make(map[string]*azdo.Client, len(clients))
	for name, cl := range clients {
		pending[name] = cl
	}
	for len(pending) > 0 {
		for name, cl := range pending {
			err := cl.CheckCredential(ctx)
			if ctx.Err() != nil {
				return
			}
			l := log.WithField("organization", name)
			switch {
			case errors.Is(err, azdo.ErrRefused):
				c.set(name, err.Error())
				m.ObserveCredential(name, false)
				l.WithError(err).Error("Azure DevOps refuses this organization's credential: not ready until it accepts it")
				continue
			case err != nil:
				// No answer is no verdict: an outage must not make the
				// scaler unready (see readyz); the pools' errors will say it.
				l.WithError(err).Warn("could not check this organization's credential; trying again")
				continue
			}
			if c.set(name, "") {
				l.Info("Azure DevOps accepts this organization's credential")
			}
			m.ObserveCredential(name, true)
			delete(pending, name)
		}
		if len(pending) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(credentialRecheck):
		}
	}
}

// set records an organization's verdict; it reports whether it had been
// refused before.
func (c *credentialCheck) set(org, cause string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refused == nil {
		c.refused = map[string]string{}
	}
	_, was := c.refused[org]
	if cause == "" {
		delete(c.refused, org)
	} else {
		c.refused[org] = cause
	}
	return was
}

// problem is why the scaler is not ready ("" when every credential was
// accepted or not yet judged).
func (c *credentialCheck) problem() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for org, cause := range c.refused {
		out = append(out, "organization "+org+": "+cause)
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}
