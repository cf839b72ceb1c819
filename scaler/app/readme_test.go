package app

import (
	"flag"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/config"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/metrics"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/routing"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/trigger"
	"github.com/prometheus/client_golang/prometheus"
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

// The layout table (docs/development.md) lists every package of the module in import
// order: each imports only packages of rows above its own (go list), and
// none imports both the gRPC service and the Azure DevOps client.
func TestLayoutIsImportOrder(t *testing.T) {
	const module = "github.com/azdo-keda-scaler/azdo-keda-scaler/"
	b, err := os.ReadFile("../../docs/development.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	start := strings.Index(doc, "## Layout\n")
	if start < 0 {
		t.Fatal("docs/development.md has no Layout section")
	}
	layout := doc[start:]
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
			t.Errorf("docs/development.md's Layout section does not list %s", pkg)
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

// Every relative link in the project's documents leads somewhere: the file
// exists and, for a link with #anchor, a heading of that file has GitHub's
// slug for it. Moving a section breaks no reader's link unnoticed.
func TestDocumentLinksResolve(t *testing.T) {
	docs, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	charts, _ := filepath.Glob("../../charts/*/README.md")
	docs = append(append(docs, charts...), "../../README.md", "../../CHANGELOG.md")
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	checked := 0
	for _, doc := range docs {
		for _, m := range link.FindAllStringSubmatch(prose(t, doc), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path, anchor, _ := strings.Cut(target, "#")
			file := doc
			if path != "" {
				file = filepath.Join(filepath.Dir(doc), path)
				if _, err := os.Stat(file); err != nil {
					t.Errorf("%s links to %s, which does not exist", doc, target)
					continue
				}
			}
			checked++
			if anchor == "" {
				continue
			}
			if !slices.Contains(headingSlugs(t, file), anchor) {
				t.Errorf("%s links to %s: %s has no such heading", doc, target, file)
			}
		}
	}
	if checked < 30 {
		t.Fatalf("only %d links checked: is the pattern right?", checked)
	}
}

// prose is a Markdown file without its fenced code blocks.
func prose(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	fenced := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if !fenced {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// headingSlugs are the anchors GitHub gives a file's headings: lower case,
// punctuation other than '-' and '_' dropped, spaces turned into '-'.
func headingSlugs(t *testing.T, file string) []string {
	var slugs []string
	for _, line := range strings.Split(prose(t, file), "\n") {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		title := strings.TrimSpace(strings.TrimLeft(line, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(title) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				b.WriteRune(r)
			}
		}
		slugs = append(slugs, b.String())
	}
	return slugs
}

// The numbers the documents give for flags are the flags' defaults: the
// Flags table's default column, and every "`--flag` (value)" in the prose.
func TestDocumentedDefaultsAreTheFlagsDefaults(t *testing.T) {
	defaults := map[string]string{}
	config.NewFlagSet("x", &config.Flags{}).VisitAll(func(f *flag.Flag) { defaults[f.Name] = f.DefValue })
	same := func(documented, def string) bool {
		documented = strings.Trim(strings.TrimPrefix(documented, "default "), "`")
		documented = strings.Join(strings.Fields(documented), "") // "15 m" is 15m
		if d, err := time.ParseDuration(documented); err == nil {
			dd, err := time.ParseDuration(def)
			return err == nil && d == dd
		}
		return documented == def
	}
	readme := prose(t, "../../README.md")
	rows := 0
	for _, line := range strings.Split(readme, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 6 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`--") {
			continue
		}
		name := strings.Trim(strings.TrimSpace(cells[1]), "`-")
		def, ok := defaults[name]
		if !ok {
			t.Errorf("the Flags table lists --%s, which is no flag", name)
			continue
		}
		rows++
		cell := strings.TrimSpace(cells[3])
		if def == "" {
			continue // "all", "the pod's", "host name": described, not a value
		}
		if cell == "" {
			if name != "version" { // a command, not a setting
				t.Errorf("the Flags table gives --%s no default; the flag's is %q", name, def)
			}
			continue
		}
		first := cell
		if i := strings.Index(cell[1:], "`"); strings.HasPrefix(cell, "`") && i >= 0 {
			first = cell[:i+2]
		}
		if !same(first, def) {
			t.Errorf("the Flags table gives --%s the default %s; the flag's is %q", name, cell, def)
		}
	}
	if rows < len(defaults)-1 { // --version has a row too; AZDO_PAT has no flag
		t.Errorf("the Flags table has %d flag rows for %d flags", rows, len(defaults))
	}
	value := regexp.MustCompile("`--([a-z-]+)` \\(((default )?`?([0-9]+ ?[smh]?|[a-z*]+)`?)\\)")
	docs, _ := filepath.Glob("../../docs/*.md")
	found := 0
	for _, doc := range append(docs, "../../README.md") {
		for _, m := range value.FindAllStringSubmatch(prose(t, doc), -1) {
			def, ok := defaults[m[1]]
			if !ok {
				t.Errorf("%s names --%s, which is no flag", doc, m[1])
				continue
			}
			if m[4][0] < '0' || m[4][0] > '9' {
				if !strings.Contains(m[2], "`") {
					continue // "(see below)": words, not a value
				}
			}
			found++
			if !same(m[2], def) {
				t.Errorf("%s says --%s (%s); its default is %q", doc, m[1], m[2], def)
			}
		}
	}
	if found < 10 {
		t.Fatalf("only %d flag values found in the prose: is the pattern right?", found)
	}
}

// Every test, benchmark, fuzz target and make target the documents name
// exists, so a claim "shown by TestX" points at a test that runs.
func TestDocumentedTestsAndTargetsExist(t *testing.T) {
	funcs := map[string]bool{}
	decl := regexp.MustCompile(`(?m)^func (Test|Benchmark|Fuzz)(\w+)\(`)
	err := filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".work" || d.Name() == ".git" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range decl.FindAllStringSubmatch(string(b), -1) {
			funcs[m[1]+m[2]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	targets := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^([a-z0-9-]+):`).FindAllStringSubmatch(string(mk), -1) {
		targets[m[1]] = true
	}
	named := regexp.MustCompile(`\b(?:Test|Benchmark|Fuzz)[A-Z]\w+\*?`)
	target := regexp.MustCompile("`make ([a-z0-9-]+)|make ([a-z0-9-]+)`")
	docs, _ := filepath.Glob("../../docs/*.md")
	seen := 0
	for _, doc := range append(docs, "../../README.md", "../../CHANGELOG.md") {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range named.FindAllString(string(b), -1) {
			seen++
			if prefix, ok := strings.CutSuffix(n, "*"); ok { // TestNode*: a family
				if !slices.ContainsFunc(slices.Collect(maps.Keys(funcs)), func(f string) bool { return strings.HasPrefix(f, prefix) }) {
					t.Errorf("%s names %s, but no test's name starts so", doc, n)
				}
				continue
			}
			if !funcs[n] {
				t.Errorf("%s names %s, which no _test.go declares", doc, n)
			}
		}
		for _, m := range target.FindAllStringSubmatch(string(b), -1) {
			if n := m[1] + m[2]; !targets[n] {
				t.Errorf("%s names `make %s`, which the Makefile lacks", doc, n)
			}
		}
	}
	if seen < 20 {
		t.Fatalf("only %d test names found: is the pattern right?", seen)
	}
}

// The README's benchmark figures are the report's: every figure in its
// Benchmarks section appears in docs/benchmarks.md, which `make bench`
// regenerates, so a new report with other numbers fails here until the
// README says what it measured. It catches figures that change to ones the
// report does not hold anywhere (decimals, most multi-digit counts); a
// count that changes to another number the report happens to contain
// elsewhere goes unnoticed.
func TestREADMEBenchmarkFiguresAreTheReports(t *testing.T) {
	readme := prose(t, "../../README.md")
	start := strings.Index(readme, "\n## Benchmarks\n")
	if start < 0 {
		t.Fatal("README.md has no Benchmarks section")
	}
	section := readme[start+1:]
	section = section[:strings.Index(section, "\n## ")]
	report := prose(t, "../../docs/benchmarks.md")
	figure := regexp.MustCompile(`\d[\d,]*(?:\.\d+)?`)
	found := 0
	for _, f := range figure.FindAllString(section, -1) {
		plain := strings.ReplaceAll(f, ",", "")
		if len(plain) < 2 || plain == "2026" {
			continue // single digits are counts of things ("3 templates"), not measurements
		}
		found++
		in := func(x string) bool {
			return regexp.MustCompile(`(^|[^\d.,])` + regexp.QuoteMeta(x) + `($|[^\d,])`).MatchString(report)
		}
		if !in(f) && !in(plain) {
			t.Errorf("README.md's Benchmarks section gives %s, which docs/benchmarks.md does not contain", f)
		}
	}
	if found < 15 {
		t.Fatalf("only %d figures found: is the pattern right?", found)
	}
}

// describeRecorder is a prometheus.Registerer that keeps the names of the
// metrics registered with it.
type describeRecorder struct{ names []string }

func (r *describeRecorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 64)
	go func() { c.Describe(ch); close(ch) }()
	fq := regexp.MustCompile(`fqName: "([^"]+)"`)
	for d := range ch {
		if m := fq.FindStringSubmatch(d.String()); m != nil {
			r.names = append(r.names, m[1])
		}
	}
	return nil
}

func (r *describeRecorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = r.Register(c)
	}
}

func (r *describeRecorder) Unregister(prometheus.Collector) bool { return true }

// Every metric the scaler exports is in the README's reference.
func TestREADMEDocumentsEveryMetric(t *testing.T) {
	rec := &describeRecorder{}
	metrics.New(rec, "test", "test")
	if len(rec.names) < 15 {
		t.Fatalf("only %d metrics described: %v", len(rec.names), rec.names)
	}
	readme := prose(t, "../../README.md")
	for _, name := range rec.names {
		if !strings.Contains(readme, "`"+name+"`") && !strings.Contains(readme, "`"+name+"{") {
			t.Errorf("README.md does not document the metric %s", name)
		}
	}
}
