// Package fakeazdotest starts a fake Azure DevOps for one test, as
// httptest.NewServer does for a handler. It is apart from package fakeazdo
// so that the demo binary, which embeds the fake, does not link "testing".
package fakeazdotest

import (
	"testing"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo"
)

// Start serves a fake Azure DevOps on a loopback port until the test ends.
func Start(tb testing.TB) *fakeazdo.Server {
	tb.Helper()
	s := fakeazdo.New()
	if err := s.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	return s
}
