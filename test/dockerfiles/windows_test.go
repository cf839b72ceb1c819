package dockerfiles

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
)

// The Windows agent image (the pool chart's os: windows): parsed as Docker
// parses it, since no Windows builder runs here. Its base is pinned, it
// runs as ContainerUser, fetches and verifies the agent of agent-version
// with fetch-agent.ps1, and start.ps1 is its entry point; start.ps1 keeps
// start.sh's contract where Windows allows (the PowerShell itself is not
// run here: no PowerShell on these machines).
func TestWindowsAgentImage(t *testing.T) {
	d := parse(t, "deploy/agent/Dockerfile.windows")
	if len(d.stages) != 1 {
		t.Fatalf("%d stages", len(d.stages))
	}
	s := d.stages[0]
	if !strings.HasPrefix(s.BaseName, "mcr.microsoft.com/windows/servercore:ltsc") {
		t.Errorf("base %s: want a pinned Windows Server Core LTSC", s.BaseName)
	}
	var user, entrypoint string
	var fetch bool
	for _, c := range s.Commands {
		switch c := c.(type) {
		case *instructions.UserCommand:
			user = c.User
		case *instructions.EntrypointCommand:
			entrypoint = strings.Join(c.CmdLine, " ")
		case *instructions.RunCommand:
			fetch = fetch || strings.Contains(strings.Join(c.CmdLine, " "), "fetch-agent.ps1 -Version $env:AGENT_VERSION")
		case *instructions.ArgCommand:
			for _, kv := range c.Args {
				if kv.Key == "AGENT_VERSION" && kv.Value != nil && *kv.Value != "" {
					t.Errorf("AGENT_VERSION defaults to %s: the version is agent-version's", *kv.Value)
				}
			}
		}
	}
	if user != "ContainerUser" || !fetch || !strings.HasSuffix(entrypoint, `C:\azp\start.ps1`) {
		t.Errorf("user %q, fetch %v, entrypoint %q", user, fetch, entrypoint)
	}
	script, err := os.ReadFile(repo("deploy/agent/start.ps1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"'--disableupdate'", "'--once'", "'--replace'", "VSTS_AGENT_INPUT_TOKEN", "VSTS_AGENT_INPUT_CLIENTSECRET",
		"AZP_IDLE_TIMEOUT", "'remove', '--unattended'", "Remove-Item \"Env:$var\""} {
		if !strings.Contains(string(script), want) {
			t.Errorf("start.ps1 lacks %s", want)
		}
	}
	fetchScript, err := os.ReadFile(repo("deploy/agent/fetch-agent.ps1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Get-FileHash -Algorithm SHA256", "refusing it", "agent-packages.sha256", "agent-version"} {
		if !strings.Contains(string(fetchScript), want) {
			t.Errorf("fetch-agent.ps1 lacks %s", want)
		}
	}
	if slices.Contains(strings.Fields(string(fetchScript)), "-SkipCertificateCheck") {
		t.Error("fetch-agent.ps1 must not skip certificate checks")
	}
}
