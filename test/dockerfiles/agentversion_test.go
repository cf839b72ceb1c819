package dockerfiles

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/placeholders"
)

// agentVersionFile is the agent version, from its one place.
func agentVersionFile(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(repo("deploy/agent/agent-version"))
	if err != nil {
		t.Fatal(err)
	}
	v := strings.TrimSpace(string(b))
	if !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(v) {
		t.Fatalf("deploy/agent/agent-version holds %q, not MAJOR.MINOR.PATCH", v)
	}
	return v
}

// The agent version is set in deploy/agent/agent-version only: the image
// build reads it (no default in the Dockerfile), the placeholders' default
// is it, the charts pin none, and the README names it.
func TestAgentVersionHasOnePlace(t *testing.T) {
	v := agentVersionFile(t)
	if placeholders.DefaultAgentVersion != v {
		t.Errorf("placeholders.DefaultAgentVersion %s, agent-version %s", placeholders.DefaultAgentVersion, v)
	}
	d := parse(t, "deploy/agent/Dockerfile")
	for _, s := range d.stages {
		for _, c := range s.Commands {
			if a, ok := c.(*instructions.ArgCommand); ok {
				for _, kv := range a.Args {
					if kv.Key == "AGENT_VERSION" && kv.Value != nil && *kv.Value != "" {
						t.Errorf("the Dockerfile's AGENT_VERSION defaults to %s", *kv.Value)
					}
				}
			}
		}
	}
	version := regexp.MustCompile(`\b4\.\d{3}\.\d+\b`)
	for _, f := range []string{"charts/azdo-keda-scaler/values.yaml", "charts/azdo-agent-pool/values.yaml", "charts/azdo-agent-pool/Chart.yaml",
		"charts/azdo-keda-scaler/Chart.yaml", "deploy/agent/Dockerfile", "deploy/agent/start.sh"} {
		b, err := os.ReadFile(repo(f))
		if err != nil {
			t.Fatal(err)
		}
		if m := version.FindString(string(b)); m != "" {
			t.Errorf("%s pins agent version %s", f, m)
		}
	}
	readme, err := os.ReadFile(repo("README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "`"+v+"`") {
		t.Errorf("README does not name the agent version %s", v)
	}
}
