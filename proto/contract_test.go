package proto

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	pb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/service"
)

// The service implements KEDA's generated server interface.
var _ pb.ExternalScalerServer = (*service.Service)(nil)

func TestProtoIsKEDAsOwn(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/kedacore/keda/v2").Output()
	if err != nil {
		t.Fatalf("locating the KEDA module: %v", err)
	}
	want, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "pkg", "scalers", "externalscaler", "externalscaler.proto"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("externalscaler.proto")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("proto/externalscaler.proto differs from the pinned KEDA module's; copy it again (make proto)")
	}
}
