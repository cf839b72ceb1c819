// Package scalertest runs the whole scaler in a test of the test module, as
// cmd/azdo-keda-scaler does, on loopback ports.
package scalertest

import (
	"bytes"
	"context"
	"io"
	"sync"
	"testing"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/app"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/config"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/logging"
)

// Start runs the scaler with the test's flags after loopback addresses,
// logging to logs, until the test ends.
func Start(t *testing.T, logs io.Writer, args ...string) *app.Instance {
	t.Helper()
	args = append([]string{"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, args...)
	flags, err := config.Parse("test", args, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	log, redactor, err := logging.New(logs, flags.LogFormat, flags.LogLevel)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := app.Start(context.Background(), flags, log, redactor, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(inst.Stop)
	return inst
}

// LockedBuffer is output read while it is written.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Reset empties the buffer.
func (l *LockedBuffer) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Reset()
}
