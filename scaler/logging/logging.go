// Package logging sets up logrus and keeps secrets out of every log line.
package logging

import (
	"fmt"
	"io"

	"github.com/sirupsen/logrus"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/secrets"
)

// New returns a logger writing to w in format "text" or "json" at level,
// and the set of secrets redacted from every line it writes (the message
// and every string, error or Stringer field).
func New(w io.Writer, format, level string) (*logrus.Logger, *secrets.Set, error) {
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
	set := secrets.NewSet()
	l.AddHook(hook{set})
	return l, set, nil
}

// hook redacts secrets from each entry before it is written. Nothing in
// this project logs a secret on purpose; this is the second line of
// defence, against a library's message that quotes one.
type hook struct{ set *secrets.Set }

// Levels implements logrus.Hook: every level.
func (hook) Levels() []logrus.Level { return logrus.AllLevels }

// Fire implements logrus.Hook.
func (h hook) Fire(e *logrus.Entry) error {
	e.Message = h.set.Redact(e.Message)
	for k, v := range e.Data {
		var s string
		switch t := v.(type) {
		case string:
			s = t
		case error:
			s = t.Error()
		case fmt.Stringer:
			s = t.String()
		case []string:
			s = fmt.Sprint(t)
		default:
			continue
		}
		if red := h.set.Redact(s); red != s {
			e.Data[k] = red
		}
	}
	return nil
}
