package dockerfiles

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo/fakeazdotest"
)

// fetch-agent.sh verifies the agent package against the first source that
// has its SHA-256: a pinned line, Azure DevOps' package list (with a PAT as
// a BuildKit secret), or the release notes on GitHub. Each is played here
// by a local fake in its real shape.

const (
	agentVersion = "4.261.0"
	buildPAT     = "build-pat-5e1d"
)

// fakeAzureDevOps is the project's fake Azure DevOps, offering agent
// packages (file name to hashValue) for the PAT only; the returned func
// counts the package-list calls.
func fakeAzureDevOps(t *testing.T, packages map[string]string) (string, func() int) {
	t.Helper()
	fake := fakeazdotest.Start(t)
	org := fake.AddOrg("contoso", buildPAT)
	for file, hash := range packages {
		// vsts-agent-<platform>-<version>.tar.gz
		rest := strings.TrimSuffix(strings.TrimPrefix(file, "vsts-agent-"), ".tar.gz")
		i := strings.LastIndex(rest, "-")
		org.AddAgentPackage(fakeazdo.AgentPackage{Platform: rest[:i], Version: rest[i+1:], HashValue: hash,
			DownloadURL: "https://download.agent.dev.azure.com/agent/" + rest[i+1:] + "/" + file})
	}
	return fake.OrgURL("contoso"), func() int { return fake.Calls("contoso", fakeazdo.AgentPackages) }
}

// fakeGitHub answers the releases API for the agent's repository with
// release notes whose "Agent Downloads" table has rows.
func fakeGitHub(t *testing.T, rows map[string]string) (string, *atomic.Int32) {
	t.Helper()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.URL.Path != "/repos/microsoft/azure-pipelines-agent/releases/tags/v"+agentVersion {
			http.NotFound(w, r)
			return
		}
		body := "## Changes\r\n - a fix\r\n\r\n## Agent Downloads\r\n\r\n|  | Package | SHA-256 |\r\n| -- | -- | -- |\r\n"
		for file, sum := range rows {
			body += fmt.Sprintf("| Linux | [%s](https://download.agent.dev.azure.com/agent/%s/%s) | %s |\r\n", file, agentVersion, file, sum)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"tag_name": "v" + agentVersion, "name": "v" + agentVersion, "body": body,
			"assets": []any{}, "html_url": "https://github.com/microsoft/azure-pipelines-agent/releases/tag/v" + agentVersion})
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &calls
}

// unreachable is a URL where nothing listens any more.
func unreachable(t *testing.T) string {
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	return srv.URL
}

func TestFetchAgentVerifiesAgainstTheFirstSourceThatHasTheChecksum(t *testing.T) {
	pkg := tarball(t)
	sum := fmt.Sprintf("%x", sha256.Sum256(pkg))
	wrong := strings.Repeat("0", 64)
	// The agent writes hashes as .NET's BitConverter does: upper case, dashes.
	dotnet := strings.ToUpper(sum[:2]) + "-" + strings.ToUpper(sum[2:])
	const amd64 = "vsts-agent-linux-x64-" + agentVersion + ".tar.gz"
	const arm64 = "vsts-agent-linux-arm64-" + agentVersion + ".tar.gz"
	for _, c := range []struct {
		name        string
		arch, file  string
		pinned      string            // agent-packages.sha256
		azdo        map[string]string // nil: no AZP_URL
		azdoDown    bool
		noToken     bool
		github      map[string]string // nil: unreachable
		want        string
		ok          bool
		askedGitHub bool
	}{
		{name: "pinned", arch: "amd64", file: amd64, pinned: sum + "  " + amd64, want: "verified against the pinned line in sums", ok: true},
		{name: "pinned arm64", arch: "arm64", file: arm64, pinned: sum + "  " + arm64, want: "verified against the pinned line in sums", ok: true},
		{name: "pinned, wrong", arch: "amd64", file: amd64, pinned: wrong + "  " + amd64, azdo: map[string]string{amd64: sum},
			want: "but the pinned line in sums says " + wrong + ": refusing it"},
		{name: "Azure DevOps", arch: "amd64", file: amd64, pinned: sum + "  " + arm64, azdo: map[string]string{amd64: dotnet},
			want: "verified against Azure DevOps", ok: true},
		{name: "Azure DevOps arm64", arch: "arm64", file: arm64, azdo: map[string]string{arm64: sum, "vsts-agent-linux-arm64-4.264.2.tar.gz": wrong},
			want: "verified against Azure DevOps", ok: true},
		{name: "Azure DevOps, wrong", arch: "amd64", file: amd64, azdo: map[string]string{amd64: wrong}, github: map[string]string{amd64: sum},
			want: "but Azure DevOps (", askedGitHub: false},
		{name: "Azure DevOps unreachable: no fallback", arch: "amd64", file: amd64, azdo: map[string]string{}, azdoDown: true,
			github: map[string]string{amd64: sum}, want: "cannot read the agent packages"},
		{name: "Azure DevOps without a PAT", arch: "amd64", file: amd64, azdo: map[string]string{amd64: sum}, noToken: true,
			want: "there is no PAT in"},
		{name: "Azure DevOps lists only newer: GitHub", arch: "amd64", file: amd64, azdo: map[string]string{"vsts-agent-linux-x64-4.264.2.tar.gz": wrong},
			github: map[string]string{amd64: sum, arm64: wrong}, want: "verified against the release notes of v4.261.0 on GitHub", ok: true, askedGitHub: true},
		{name: "GitHub", arch: "arm64", file: arm64, github: map[string]string{amd64: wrong, arm64: sum},
			want: "verified against the release notes of v4.261.0 on GitHub", ok: true, askedGitHub: true},
		{name: "GitHub, wrong", arch: "amd64", file: amd64, github: map[string]string{amd64: wrong}, want: "refusing it", askedGitHub: true},
		{name: "GitHub without the package", arch: "amd64", file: amd64, github: map[string]string{arm64: sum},
			want: "no SHA-256 for " + amd64 + " in the release notes", askedGitHub: true},
		{name: "nothing reachable", arch: "amd64", file: amd64, want: "GitHub's release v4.261.0 cannot be read"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			sumsFile := filepath.Join(dir, "sums")
			must(t, os.WriteFile(sumsFile, []byte("# pinned\n"+c.pinned+"\n"), 0o644))
			tokenFile := filepath.Join(dir, "azp_token")
			if !c.noToken {
				must(t, os.WriteFile(tokenFile, []byte(buildPAT+"\n"), 0o600))
			}
			env := append(os.Environ(), "AGENT_SHA256_FILE="+sumsFile, "AGENT_BASE_URL="+fakePackage(t, c.file, pkg),
				"AZP_TOKEN_FILE="+tokenFile, "GITHUB_TOKEN_FILE="+filepath.Join(dir, "none"))
			azdoCalls := func() int { return 0 }
			if c.azdo != nil {
				url, calls := fakeAzureDevOps(t, c.azdo)
				if c.azdoDown {
					url = unreachable(t) + "/contoso"
				}
				env, azdoCalls = append(env, "AZP_URL="+url), calls
			}
			githubURL, githubCalls := unreachable(t), &atomic.Int32{}
			if c.github != nil {
				githubURL, githubCalls = fakeGitHub(t, c.github)
			}
			env = append(env, "GITHUB_API_URL="+githubURL)
			cmd := exec.Command("bash", repo("deploy/agent/fetch-agent.sh"), agentVersion, c.arch, filepath.Join(dir, "agent"))
			cmd.Env = env
			out, err := cmd.CombinedOutput()
			if (err == nil) != c.ok || !strings.Contains(string(out), c.want) {
				t.Errorf("err %v, want ok=%v and %q in:\n%s", err, c.ok, c.want, out)
			}
			if _, statErr := os.Stat(filepath.Join(dir, "agent", "bin", "Agent.Listener")); (statErr == nil) != c.ok {
				t.Errorf("unpacked = %v, want %v", statErr == nil, c.ok)
			}
			if strings.Contains(string(out), buildPAT) || strings.Contains(string(out), base64.StdEncoding.EncodeToString([]byte(":"+buildPAT))) {
				t.Errorf("the PAT is in the output:\n%s", out)
			}
			if asked := githubCalls.Load() > 0; asked != c.askedGitHub {
				t.Errorf("GitHub asked = %v, want %v", asked, c.askedGitHub)
			}
			if strings.Contains(c.pinned, c.file) && azdoCalls() > 0 {
				t.Error("Azure DevOps was asked although the checksum is pinned")
			}
		})
	}
	out, err := exec.Command("bash", repo("deploy/agent/fetch-agent.sh"), agentVersion, "", t.TempDir()).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no agent package for architecture ''") {
		t.Errorf("no TARGETARCH: %v %s", err, out)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
