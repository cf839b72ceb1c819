package app

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/config"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/trigger"
)

// README.md is the front door: every flag, its environment variable and
// every trigger metadata key must be documented there.
func TestREADMEDocumentsEveryFlagAndKey(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	config.NewFlagSet("x", &config.Flags{}).VisitAll(func(f *flag.Flag) {
		wants := []string{"`--" + f.Name + "`", "`" + config.EnvName(f.Name) + "`"}
		if f.Name == "version" {
			wants = wants[:1] // a command, not a setting: no environment variable
		}
		for _, want := range wants {
			if !strings.Contains(readme, want) {
				t.Errorf("README.md does not document %s", want)
			}
		}
	})
	for _, key := range trigger.Keys() {
		if !strings.Contains(readme, "| `"+key+"` |") {
			t.Errorf("README.md's metadata table lacks %s", key)
			continue
		}
		row := readme[strings.Index(readme, "| `"+key+"` |"):]
		row = row[:strings.IndexByte(row, '\n')]
		if limit := fmt.Sprintf("| %d", trigger.Limit(key)); !strings.Contains(row, limit) {
			t.Errorf("README.md's row for %s does not give its limit (%d bytes): %s", key, trigger.Limit(key), row)
		}
		if def := trigger.Default(key); def != "" && !strings.HasPrefix(row, "| `"+key+"` | `"+def+"` |") {
			t.Errorf("README.md's row for %s does not give its default `%s`: %s", key, def, row)
		}
	}
	for _, cmd := range []string{"make run", "make test"} {
		if !strings.Contains(readme, cmd) {
			t.Errorf("README.md does not give %q", cmd)
		}
	}
}
