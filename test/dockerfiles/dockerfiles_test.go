// Package dockerfiles checks the project's Dockerfiles with BuildKit's own
// parser, since no container engine is here to build them: bases pinned,
// a non-root user in the final image, nothing fetched when a container starts.
package dockerfiles

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"golang.org/x/mod/modfile"
)

func repo(p string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", p)
}

type dockerfile struct {
	stages []instructions.Stage
	args   map[string]string // global ARG defaults
	bases  []string          // each stage's base, ARGs expanded
}

func parse(t *testing.T, path string) dockerfile {
	t.Helper()
	f, err := os.Open(repo(path))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := parser.Parse(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	for _, w := range res.Warnings {
		t.Errorf("%s: parser warning: %s", path, w.Short)
	}
	stages, metaArgs, err := instructions.Parse(res.AST, nil)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	d := dockerfile{stages: stages, args: map[string]string{}}
	for _, a := range metaArgs {
		for _, kv := range a.Args {
			if kv.Value != nil {
				d.args[kv.Key] = *kv.Value
			}
		}
	}
	lex := shell.NewLex('\\')
	for _, s := range stages {
		base, _, err := lex.ProcessWord(s.BaseName, shell.EnvsFromSlice(envs(d.args)))
		if err != nil {
			t.Fatalf("%s: FROM %s: %v", path, s.BaseName, err)
		}
		d.bases = append(d.bases, base)
	}
	return d
}

func envs(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
}

// pinned: an exact version tag (digits and dots, not "latest") or a digest,
// an earlier stage, or scratch.
var versionTag = regexp.MustCompile(`:[^:/]*[0-9]+\.[0-9]+(\.[0-9]+)?[^:/]*$|@sha256:[0-9a-f]{64}$`)

func checkPinned(t *testing.T, d dockerfile) {
	t.Helper()
	names := map[string]bool{}
	for i, s := range d.stages {
		base := d.bases[i]
		switch {
		case base == "scratch", names[strings.ToLower(base)]:
		case strings.HasSuffix(base, ":latest") || !versionTag.MatchString(base):
			t.Errorf("stage %d: base %q is not pinned to a version", i, base)
		}
		if s.Name != "" {
			names[strings.ToLower(s.Name)] = true
		}
	}
}

// finalUser is the USER of the last stage ("" if none).
func finalUser(d dockerfile) string {
	user := ""
	for _, c := range d.stages[len(d.stages)-1].Commands {
		if u, ok := c.(*instructions.UserCommand); ok {
			user = u.User
		}
	}
	return user
}

func checkNonRoot(t *testing.T, d dockerfile) {
	t.Helper()
	u := finalUser(d)
	name := strings.SplitN(u, ":", 2)[0]
	if u == "" || name == "0" || name == "root" {
		t.Errorf("final image runs as %q: want a non-root USER", u)
	}
}

func entrypoint(d dockerfile) []string {
	var cmd []string
	for _, c := range d.stages[len(d.stages)-1].Commands {
		switch e := c.(type) {
		case *instructions.EntrypointCommand:
			cmd = e.CmdLine
		}
	}
	return cmd
}

func TestScalerDockerfile(t *testing.T) {
	d := parse(t, "Dockerfile")
	checkPinned(t, d)
	checkNonRoot(t, d)
	final := d.stages[len(d.stages)-1]
	if d.bases[len(d.bases)-1] != "scratch" {
		t.Errorf("final base %s: want scratch (no shell, nothing but the binary)", d.bases[len(d.bases)-1])
	}
	for _, c := range final.Commands {
		if _, ok := c.(*instructions.RunCommand); ok {
			t.Errorf("the final stage runs %q: it has no shell", c)
		}
	}
	if ep := entrypoint(d); len(ep) != 1 || ep[0] != "/azdo-keda-scaler" {
		t.Errorf("ENTRYPOINT %q: want the binary alone, exec form", ep)
	}
	var static, version bool
	for _, c := range d.stages[0].Commands {
		if r, ok := c.(*instructions.RunCommand); ok {
			line := strings.Join(r.CmdLine, " ")
			static = static || strings.Contains(line, "CGO_ENABLED=0")
			version = version || strings.Contains(line, "app.Version=${VERSION}")
		}
	}
	if !static || !version {
		t.Errorf("build stage: static=%v version-stamped=%v, want both", static, version)
	}
	// The image builds with the Go the module asks for.
	b, err := os.ReadFile(repo("go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	mod, err := modfile.Parse("go.mod", b, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := d.args["GO_VERSION"]; got != mod.Go.Version {
		t.Errorf("Dockerfile GO_VERSION %s, go.mod says go %s", got, mod.Go.Version)
	}
	ignore, err := os.ReadFile(repo(".dockerignore"))
	if err != nil || !strings.HasPrefix(string(ignore), "*\n") {
		t.Error(".dockerignore must exclude everything but the sources (starts with *)")
	}
	checkSourcesCopied(t, &d, string(ignore))
}

// checkSourcesCopied: every folder of the module that the binary imports a
// package from is in the build context (.dockerignore lets it through) and
// copied into the build stage; else the image would not build.
func checkSourcesCopied(t *testing.T, d *dockerfile, ignore string) {
	t.Helper()
	const module = "github.com/azdo-keda-scaler/azdo-keda-scaler/"
	cmd := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", "./cmd/azdo-keda-scaler")
	cmd.Dir = repo(".")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	copied := map[string]bool{}
	for _, c := range d.stages[0].Commands {
		if cp, ok := c.(*instructions.CopyCommand); ok {
			for _, src := range cp.SourcePaths {
				copied[strings.TrimSuffix(src, "/")] = true
			}
		}
	}
	folders := map[string]bool{}
	for _, p := range strings.Fields(string(out)) {
		if rest, ok := strings.CutPrefix(p, module); ok {
			folders[strings.SplitN(rest, "/", 2)[0]] = true
		}
	}
	if len(folders) == 0 {
		t.Fatal("go list found none of the module's packages")
	}
	for f := range folders {
		if !copied[f] {
			t.Errorf("the binary imports packages under %s/, which the Dockerfile's build stage does not COPY", f)
		}
		if !strings.Contains(ignore, "\n!"+f+"/\n") {
			t.Errorf(".dockerignore keeps %s/ out of the build context, but the binary imports packages under it", f)
		}
	}
}

func TestAgentDockerfile(t *testing.T) {
	d := parse(t, "deploy/agent/Dockerfile")
	checkPinned(t, d)
	checkNonRoot(t, d)
	ep := strings.Join(entrypoint(d), " ")
	if !strings.HasSuffix(ep, "/azp/start.sh") {
		t.Errorf("ENTRYPOINT %q: want start.sh", ep)
	}
	var fetched, plugins bool
	final := d.stages[len(d.stages)-1]
	for _, c := range final.Commands {
		switch c := c.(type) {
		case *instructions.RunCommand:
			// The agent package is fetched and verified at build time, at
			// AGENT_VERSION and BuildKit's TARGETARCH.
			if strings.Contains(strings.Join(c.CmdLine, " "), `fetch-agent.sh "${AGENT_VERSION}" "${TARGETARCH}" /azp/agent`) {
				fetched = true
			}
		case *instructions.CopyCommand:
			srcs := strings.Join(c.SourcePaths, " ")
			if c.From == "docker-cli" && strings.Contains(srcs, "docker-buildx") && strings.Contains(srcs, "docker-compose") {
				plugins = true
			}
		}
	}
	if !fetched {
		t.Error("the agent package must be fetched (and verified) by fetch-agent.sh at AGENT_VERSION and TARGETARCH")
	}
	if !plugins {
		t.Error("the image must have the buildx and compose plugins")
	}
	var targetArch bool
	for _, c := range final.Commands {
		if a, ok := c.(*instructions.ArgCommand); ok {
			for _, kv := range a.Args {
				targetArch = targetArch || kv.Key == "TARGETARCH"
			}
		}
	}
	if !targetArch {
		t.Error("the image must be built per architecture (ARG TARGETARCH)")
	}
}

// fakePackage serves one agent package, as Microsoft's download site does.
func fakePackage(t *testing.T, file string, body []byte) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/4.261.0/"+file {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// tarball is a gzipped tar holding bin/Agent.Listener.
func tarball(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	content := []byte("#!/bin/sh\n")
	if err := tw.WriteHeader(&tar.Header{Name: "bin/Agent.Listener", Mode: 0o755, Size: int64(len(content))}); err != nil {
		t.Fatal(err)
	}
	_, _ = tw.Write(content)
	_ = tw.Close()
	_ = gz.Close()
	return buf.Bytes()
}

// The checksum file: every line is "<sha256>  <package of the pinned
// version>"; a line for another version is a mistake.
func TestAgentChecksumFileMatchesTheVersion(t *testing.T) {
	version := agentVersionFile(t)
	b, err := os.ReadFile(repo("deploy/agent/agent-packages.sha256"))
	if err != nil || version == "" {
		t.Fatalf("version %q, %v", version, err)
	}
	v := regexp.QuoteMeta(version)
	line := regexp.MustCompile(`^[0-9a-f]{64}  vsts-agent-(linux-(x64|arm64)-` + v + `\.tar\.gz|win-x64-` + v + `\.zip)$`)
	for i, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") && !line.MatchString(l) {
			t.Errorf("agent-packages.sha256:%d is not a checksum of a %s package: %q", i+1, version, l)
		}
	}
}

// TestStartScriptDownloadsNothing: what a container runs must not install or
// fetch software (its one HTTP call is the pool lookup).
func TestStartScriptDownloadsNothing(t *testing.T) {
	b, err := os.ReadFile(repo("deploy/agent/start.sh"))
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"wget", "apt-get", "apk ", "tar ", "download", "curl -o", "installdependencies"} {
		for i, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "#") {
				continue
			}
			if strings.Contains(line, bad) {
				t.Errorf("start.sh:%d fetches or installs at run time (%q): %s", i+1, bad, line)
			}
		}
	}
}

// TestCheckerCatchesMistakes keeps the checks honest: they fail on the
// mistakes they exist for.
func TestCheckerCatchesMistakes(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "Dockerfile")
	if err := os.WriteFile(bad, []byte("ARG TAG=latest\nFROM ubuntu:${TAG}\nFROM golang AS x\nUSER root\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rel, _ := filepath.Rel(repo("."), bad)
	d := parse(t, rel)
	if got := d.bases; got[0] != "ubuntu:latest" || got[1] != "golang" {
		t.Fatalf("bases %v", got)
	}
	for _, b := range d.bases {
		if versionTag.MatchString(b) {
			t.Errorf("%s passes as pinned", b)
		}
	}
	if u := finalUser(d); u != "root" {
		t.Errorf("USER %q", u)
	}
}
