// Package scalertest runs the whole scaler in a test of the test module, as
// cmd/azdo-keda-scaler does, on loopback ports.
package scalertest

import (
	"context"
	"io"
	"testing"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/app"
)

// Start runs the scaler with the test's flags after loopback addresses,
// logging to logs, until the test ends.
func Start(t *testing.T, logs io.Writer, args ...string) *app.Instance {
	t.Helper()
	args = append([]string{"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, args...)
	inst, err := app.StartArgs(context.Background(), args, func(string) string { return "" }, logs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(inst.Stop)
	return inst
}
