// Package release checks the GitHub workflows: actionlint finds no error,
// and the release workflow publishes exactly the images and charts the
// charts' defaults point at, tagged as the charts expect.
package release

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/rhysd/actionlint"
	"go.yaml.in/yaml/v3"
)

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// TestWorkflowsLint runs actionlint (with shellcheck on run: scripts when
// it is installed, as make ship requires) on every workflow.
func TestWorkflowsLint(t *testing.T) {
	opts := &actionlint.LinterOptions{Color: actionlint.ColorOptionKindNever}
	if sc, err := exec.LookPath("shellcheck"); err == nil {
		opts.Shellcheck = sc
	} else {
		t.Log("shellcheck not installed: run: scripts are not checked")
	}
	var out strings.Builder
	linter, err := actionlint.NewLinter(&out, opts)
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(repoRoot(), ".github", "workflows", "*.yaml"))
	if len(files) < 2 {
		t.Fatalf("want the ci and release workflows, found %v", files)
	}
	errs, err := linter.LintFiles(files, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(errs) > 0 {
		t.Errorf("actionlint:\n%s", out.String())
	}
}

// workflow is the part of the release workflow this test reads. (YAML 1.2:
// "on" is a key, not YAML 1.1's true, so not sigs.k8s.io/yaml.)
type workflow struct {
	On struct {
		Push struct {
			Tags []string `yaml:"tags"`
		} `yaml:"push"`
	} `yaml:"on"`
	Env  map[string]string `yaml:"env"`
	Jobs map[string]struct {
		Uses        string            `yaml:"uses"`
		Permissions map[string]string `yaml:"permissions"`
		Needs       any               `yaml:"needs"`
		Strategy    struct {
			Matrix struct {
				Include []map[string]string `yaml:"include"`
			} `yaml:"matrix"`
		} `yaml:"strategy"`
		Steps []struct {
			ID   string            `yaml:"id"`
			Uses string            `yaml:"uses"`
			Run  string            `yaml:"run"`
			With map[string]string `yaml:"with"`
			Env  map[string]string `yaml:"env"`
		} `yaml:"steps"`
	} `yaml:"jobs"`
}

// TestReleaseMatchesChartDefaults: a user who installs a published chart
// with its defaults pulls images this workflow pushed, with the tag the
// chart asks for (its appVersion, the git tag without its v).
func TestReleaseMatchesChartDefaults(t *testing.T) {
	wf := readWorkflow(t, "release.yaml")
	if len(wf.On.Push.Tags) != 1 || wf.On.Push.Tags[0] != "v*" {
		t.Errorf("the release runs on tags v*, got %v", wf.On.Push.Tags)
	}

	pushed := map[string]bool{} // image repositories the images job pushes
	images := wf.Jobs["images"]
	var build map[string]string
	for _, s := range images.Steps {
		if strings.HasPrefix(s.Uses, "docker/build-push-action@") {
			build = s.With
		}
	}
	if build == nil || build["platforms"] != "linux/amd64,linux/arm64" || build["push"] != "true" {
		t.Fatalf("the images job must build and push for amd64 and arm64: %v", build)
	}
	if build["tags"] != "${{ env[matrix.image_env] }}:${{ steps.version.outputs.version }}" {
		t.Errorf("image tag %q: want the version from the tag", build["tags"])
	}
	for _, m := range images.Strategy.Matrix.Include {
		pushed[wf.Env[m["image_env"]]] = true
		if _, err := os.Stat(filepath.Join(repoRoot(), m["context"], "Dockerfile")); err != nil {
			t.Errorf("matrix %s: no Dockerfile in context %q", m["name"], m["context"])
		}
	}
	for _, s := range images.Steps {
		if strings.Contains(s.Run, "version=") && !strings.Contains(s.Run, `${GITHUB_REF_NAME#v}`) {
			t.Errorf("version step %q: want the tag without its v", s.Run)
		}
	}

	charts := wf.Jobs["charts"]
	if needs, _ := charts.Needs.([]any); !slices.Contains(needs, any("images")) || !slices.Contains(needs, any("windows-agent")) {
		t.Errorf("charts must be pushed only after every image (needs: [images, windows-agent]), got %v", charts.Needs)
	}
	var script string
	for _, s := range charts.Steps {
		script += s.Run
	}
	for _, want := range []string{`version="${GITHUB_REF_NAME#v}"`, `--version "$version" --app-version "$version"`, `helm push "dist/$chart-$version.tgz" "$CHART_REPOSITORY"`} {
		if !strings.Contains(script, want) {
			t.Errorf("charts job lacks %q:\n%s", want, script)
		}
	}
	if wf.Env["CHART_REPOSITORY"] != "oci://ghcr.io/azdo-keda-scaler/charts" {
		t.Errorf("CHART_REPOSITORY %q", wf.Env["CHART_REPOSITORY"])
	}

	for _, name := range []string{"azdo-keda-scaler", "azdo-agent-pool"} {
		if !strings.Contains(script, name) {
			t.Errorf("chart %s is not pushed", name)
		}
		var values struct {
			Image struct {
				Repository string `yaml:"repository"`
				Tag        string `yaml:"tag"`
			} `yaml:"image"`
		}
		b, err := os.ReadFile(filepath.Join(repoRoot(), "charts", name, "values.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(b, &values); err != nil {
			t.Fatal(err)
		}
		if repo := values.Image.Repository; !pushed[repo] {
			t.Errorf("chart %s defaults to image %s, which the release does not push (it pushes %v)", name, repo, pushed)
		}
		if tag := values.Image.Tag; tag != "" {
			t.Errorf("chart %s pins image.tag %q: the release's tag is the chart's appVersion", name, tag)
		}
	}
	t.Logf("release pushes %v and both charts to %s", pushed, wf.Env["CHART_REPOSITORY"])
}

func readWorkflow(t *testing.T, name string) workflow {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(), ".github", "workflows", name))
	if err != nil {
		t.Fatal(err)
	}
	var wf workflow
	if err := yaml.Unmarshal(b, &wf); err != nil {
		t.Fatal(err)
	}
	return wf
}

// TestReleaseIsGatedSignedAndAttested: nothing is published before the CI
// workflow passed on the tagged commit; each image gets SBOM and provenance
// attestations and a keyless signature of the digest it pushed; each chart
// is signed by the digest helm pushed; the GitHub release's notes come
// from CHANGELOG.md, which has a section to take them from.
func TestReleaseIsGatedSignedAndAttested(t *testing.T) {
	wf := readWorkflow(t, "release.yaml")
	if ci := wf.Jobs["ci"]; ci.Uses != "./.github/workflows/ci.yaml" {
		t.Errorf("the release must call the CI workflow on the tagged commit, got job ci %+v", ci)
	}
	ciWorkflow, err := os.ReadFile(filepath.Join(repoRoot(), ".github", "workflows", "ci.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var ci struct {
		On map[string]any `yaml:"on"`
	}
	if err := yaml.Unmarshal(ciWorkflow, &ci); err != nil {
		t.Fatal(err)
	}
	if _, ok := ci.On["workflow_call"]; !ok {
		t.Error("ci.yaml must be callable (on: workflow_call) for the release to wait for it")
	}
	for _, job := range []string{"images", "windows-agent"} {
		if wf.Jobs[job].Needs != "ci" {
			t.Errorf("%s must need ci, got %v", job, wf.Jobs[job].Needs)
		}
	}
	var windowsScript string
	for _, s := range wf.Jobs["windows-agent"].Steps {
		windowsScript += s.Run
	}
	if wf.Jobs["windows-agent"].Permissions["id-token"] != "write" || !strings.Contains(windowsScript, "docker build -f deploy/agent/Dockerfile.windows") ||
		!strings.Contains(windowsScript, "cosign sign --yes $digest") {
		t.Errorf("the Windows agent image must be built from Dockerfile.windows and signed by digest:\n%s", windowsScript)
	}
	for name, job := range wf.Jobs {
		if job.Uses == "" && name != "github-release" && job.Needs == nil {
			t.Errorf("job %s publishes without waiting for CI", name)
		}
	}

	images := wf.Jobs["images"]
	if images.Permissions["id-token"] != "write" {
		t.Error("the images job needs id-token: write to sign keyless")
	}
	var buildID string
	var signed bool
	for _, s := range images.Steps {
		if strings.HasPrefix(s.Uses, "docker/build-push-action@") {
			buildID = s.ID
			if s.With["sbom"] != "true" || s.With["provenance"] != "mode=max" {
				t.Errorf("the image build must attach an SBOM and provenance (mode=max): %v", s.With)
			}
		}
		if strings.Contains(s.Run, "cosign sign --yes") {
			signed = buildID != "" && strings.Contains(s.Run, "@${DIGEST}") && s.Env["DIGEST"] == "${{ steps."+buildID+".outputs.digest }}"
		}
	}
	if !signed {
		t.Error("the images job must sign, after the build, the digest it pushed (cosign sign --yes IMAGE@DIGEST)")
	}

	charts := wf.Jobs["charts"]
	var script string
	for _, s := range charts.Steps {
		script += s.Run
	}
	if charts.Permissions["id-token"] != "write" || !strings.Contains(script, `cosign sign --yes "${CHART_REPOSITORY#oci://}/$chart@$digest"`) ||
		!strings.Contains(script, `awk '/^Digest:/ {print $2}'`) {
		t.Errorf("the charts job must sign each chart by the digest helm push printed:\n%s", script)
	}

	release := wf.Jobs["github-release"]
	if release.Needs != "charts" || release.Permissions["contents"] != "write" {
		t.Errorf("the GitHub release comes last (needs charts) with contents: write: %+v", release)
	}
	changelog, err := os.ReadFile(filepath.Join(repoRoot(), "CHANGELOG.md"))
	if err != nil || !strings.Contains(string(changelog), "\n## [Unreleased]\n") {
		t.Errorf("CHANGELOG.md must have an Unreleased section (%v)", err)
	}
}
