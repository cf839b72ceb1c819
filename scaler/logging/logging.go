// Package logging sets up logrus and keeps secrets out of every log line.
package logging

import (
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/sirupsen/logrus"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/azdo"
)

// New returns a logger writing to w in format "text" or "json" at level.
// Its Redactor removes registered secrets from messages and fields.
func New(w io.Writer, format, level string) (*logrus.Logger, *Redactor, error) {
	l := logrus.New()
	l.SetOutput(w)
	lvl, err := logrus.ParseLevel(level)
	if err != nil {
		return nil, nil, fmt.Errorf("--log-level: %w", err)
	}
	l.SetLevel(lvl)
	switch format {
	case "json":
		l.SetFormatter(&logrus.JSONFormatter{})
	case "text", "":
		l.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, DisableColors: true})
	default:
		return nil, nil, fmt.Errorf("--log-format must be text or json, not %q", format)
	}
	r := &Redactor{}
	l.AddHook(r)
	return l, r, nil
}

// Redactor is a logrus hook that replaces known secrets with [REDACTED].
// Nothing in this project logs a PAT on purpose; this is the second line of
// defence, against an error message from a library that quotes one.
type Redactor struct {
	mu      sync.RWMutex
	secrets []string
}

// Add registers a secret.
func (r *Redactor) Add(secret string) {
	if len(secret) < 4 { // too short to redact without mangling logs
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.secrets {
		if s == secret {
			return
		}
	}
	r.secrets = append(r.secrets, secret)
}

// Levels implements logrus.Hook.
func (r *Redactor) Levels() []logrus.Level { return logrus.AllLevels }

// Fire implements logrus.Hook.
func (r *Redactor) Fire(e *logrus.Entry) error {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if len(r.secrets) == 0 {
		return nil
	}
	e.Message = r.redact(e.Message)
	for k, v := range e.Data {
		var s string
		switch t := v.(type) {
		case string:
			s = t
		case error:
			s = t.Error()
		case fmt.Stringer:
			s = t.String()
		default:
			continue
		}
		if red := r.redact(s); red != s {
			e.Data[k] = red
		}
	}
	return nil
}

func (r *Redactor) redact(s string) string {
	for _, secret := range r.secrets {
		if strings.Contains(s, secret) {
			s = strings.ReplaceAll(s, secret, "[REDACTED]")
		}
	}
	return s
}

// Watch wraps a PAT source so that every token it returns is redacted.
func (r *Redactor) Watch(src azdo.PATSource) azdo.PATSource {
	return &watchedPAT{src: src, r: r}
}

type watchedPAT struct {
	src azdo.PATSource
	r   *Redactor
}

func (w *watchedPAT) PAT() (string, error) {
	pat, err := w.src.PAT()
	if err == nil {
		w.r.Add(pat)
	}
	return pat, err
}

// Refresh passes a 401's refresh on to the wrapped source.
func (w *watchedPAT) Refresh() {
	if r, ok := w.src.(interface{ Refresh() }); ok {
		r.Refresh()
	}
}
