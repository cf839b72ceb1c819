package app

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/config"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/routing"
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
	// The explain API's reason codes: all of them, where the README lists them.
	why := readme[strings.Index(readme, "**Why is my job waiting?**"):]
	why = why[:strings.Index(why, "\n\n")]
	for _, r := range routing.Reasons {
		if !strings.Contains(why, "`"+r+"`") {
			t.Errorf("README.md's \"Why is my job waiting?\" does not list the reason %s", r)
		}
	}
	for _, cmd := range []string{"make run", "make test"} {
		if !strings.Contains(readme, cmd) {
			t.Errorf("README.md does not give %q", cmd)
		}
	}
}

// The README's layout table lists every package of the module in import
// order: each imports only packages of rows above its own (go list), and
// none imports both the gRPC service and the Azure DevOps client.
func TestLayoutIsImportOrder(t *testing.T) {
	const module = "github.com/azdo-keda-scaler/azdo-keda-scaler/"
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	start := strings.Index(readme, "## Layout\n")
	if start < 0 {
		t.Fatal("README.md has no Layout section")
	}
	layout := readme[start:]
	if end := strings.Index(layout[1:], "\n## "); end > 0 {
		layout = layout[:end+1]
	}
	row := map[string]int{} // package -> its row
	pathCell := regexp.MustCompile("`([a-z/-]+)`")
	for i, line := range strings.Split(layout, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 3 {
			continue
		}
		for _, m := range pathCell.FindAllStringSubmatch(cells[1], -1) {
			row[m[1]] = i
		}
	}
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "./...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	pkgs := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg := strings.TrimPrefix(fields[0], module)
		if pkg == "proto" || strings.HasSuffix(pkg, "/fakeazdotest") {
			continue // the proto check has no imports; fakeazdotest is named in fakeazdo's row
		}
		pkgs++
		mine, ok := row[pkg]
		if !ok {
			t.Errorf("README.md's Layout section does not list %s", pkg)
			continue
		}
		var grpc, azdo bool
		for _, imp := range fields[1:] {
			grpc = grpc || strings.HasPrefix(imp, "google.golang.org/grpc") || strings.HasSuffix(imp, "/externalscaler")
			azdo = azdo || strings.HasPrefix(imp, "github.com/microsoft/azure-devops-go-api")
			dep, ok := strings.CutPrefix(imp, module)
			if !ok {
				continue
			}
			if r, listed := row[dep]; listed && r >= mine {
				t.Errorf("%s imports %s, which the Layout lists at or below it", pkg, dep)
			}
		}
		if grpc && azdo && pkg != "scaler/app" {
			t.Errorf("%s knows both gRPC and Azure DevOps' HTTP API", pkg)
		}
	}
	if pkgs < 20 {
		t.Fatalf("go list found only %d packages", pkgs)
	}
}
