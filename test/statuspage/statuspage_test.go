// Package statuspage loads the scaler's status page, as `make run` serves
// it, in a real headless Chromium (Debian's chromium package), checks what
// the browser rendered, and takes the screenshot the README shows.
//
//	go test ./statuspage                 (from test/)
//	go test ./statuspage -update         rewrites docs/status-page.png
package statuspage

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"image"
	"image/png"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "write the screenshot to docs/status-page.png")

// chromiumFlags are those a headless Chromium needs on a machine without
// network or GPU: no background connections, no sandbox (tests run as
// root in CI), a fresh profile each time.
func chromiumFlags(profile string) []string {
	return []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
		"--force-device-scale-factor=1", "--user-data-dir=" + profile}
}

func TestStatusPageInChromium(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("this test needs Debian's chromium (apt-get install chromium); .ci/run installs it")
	}
	httpAddr := freeAddr(t)
	url := "http://" + httpAddr + "/"

	// Exactly what a newcomer runs, on ports of the test's own.
	var out bytes.Buffer
	run := exec.Command("make", "-s", "run", "RUN_GRPC=127.0.0.1:0", "RUN_HTTP="+httpAddr)
	run.Dir = "../.."
	run.Stdout, run.Stderr = &out, &out
	run.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // make and the scaler stop together
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-run.Process.Pid, syscall.SIGTERM)
		_ = run.Wait()
	})

	// The demo's pools are in use once its sample ScaledJobs have asked, and
	// the sweeper (every 5s under make run) has swept once.
	var page string
	deadline := time.Now().Add(90 * time.Second) // includes building the binary
	for {
		page = fetch(url)
		if strings.Contains(page, "demo / linux") && strings.Contains(page, "demo / windows") &&
			strings.Contains(page, "demo / gpu") && strings.Contains(page, "last sweep") &&
			(strings.Contains(page, "web-ci 2026") || strings.Contains(page, "api-ci 2026")) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("make run's status page never showed the demo's pools and a sweep:\n%s\n--- make run:\n%s", page, out.String())
		}
		time.Sleep(250 * time.Millisecond)
	}

	if *update {
		// For the picture: give the demo time to leave a dead agent to the
		// sweeper (one pod in four dies without deregistering).
		for end := time.Now().Add(45 * time.Second); time.Now().Before(end) && !strings.Contains(fetch(url), "<td>deleted</td>"); {
			time.Sleep(time.Second)
		}
	}

	// The DOM Chromium built from the page.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dump := exec.CommandContext(ctx, chromium, append(chromiumFlags(t.TempDir()), "--dump-dom", url)...)
	dom, err := dump.Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v", err)
	}
	for _, want := range []string{"<h1>azdo-keda-scaler</h1>", "Pools in use", "demo / linux", "demo/linux-docker",
		"capabilities=Agent.OS=Linux,docker", "counted by", "Sweeper", "This replica sweeps every 5s", "last sweep",
		`name="namespace"`, "/api/v1/jobs", "_build/results?buildId="} {
		if !strings.Contains(string(dom), want) {
			t.Errorf("Chromium's DOM lacks %q", want)
		}
	}
	if strings.Contains(string(dom), "<script") {
		t.Error("the status page must run no script")
	}
	// One team's view: its namespace's pools only.
	if p := fetch(url + "?namespace=demo"); !strings.Contains(p, "by namespace demo") || !strings.Contains(p, "demo / linux") {
		t.Error("?namespace=demo does not show the demo's pools")
	}
	if p := fetch(url + "?namespace=team-z"); strings.Contains(p, "demo / linux") || !strings.Contains(p, "matches the filter") {
		t.Error("?namespace=team-z shows pools no ScaledJob of team-z uses")
	}

	shot := filepath.Join(t.TempDir(), "status-page.png")
	if *update {
		shot, _ = filepath.Abs("../../docs/status-page.png")
	}
	capture := exec.CommandContext(ctx, chromium, append(chromiumFlags(t.TempDir()), "--window-size=1280,1500", "--screenshot="+shot, url)...)
	if b, err := capture.CombinedOutput(); err != nil {
		t.Fatalf("chromium --screenshot: %v\n%s", err, b)
	}
	checkScreenshot(t, shot)
}

// checkScreenshot: a PNG of the window's size that holds a rendered page,
// not a blank or an error screen of one colour.
func checkScreenshot(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("the screenshot is no PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 1280 || b.Dy() != 1500 {
		t.Fatalf("screenshot %v, want 1280x1500", b)
	}
	if n := colours(img); n < 8 {
		t.Fatalf("the screenshot has %d colours: a blank page", n)
	}
}

func colours(img image.Image) int {
	seen := map[[3]uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 4 {
		for x := b.Min.X; x < b.Max.X; x += 4 {
			r, g, bl, _ := img.At(x, y).RGBA()
			seen[[3]uint32{r >> 8, g >> 8, bl >> 8}] = true
		}
	}
	return len(seen)
}

func fetch(url string) string {
	resp, err := http.Get(url)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// freeAddr is a free loopback address: make run's scaler listens on it.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return fmt.Sprintf("127.0.0.1:%d", l.Addr().(*net.TCPAddr).Port)
}
