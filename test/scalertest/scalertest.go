// Package scalertest runs the whole scaler in a test of the test module, as
// cmd/azdo-keda-scaler does, on loopback ports.
package scalertest

import (
	"context"
	"io"
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
