package fakeazdo

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
)

// The agent package list as Microsoft's agent image scripts read it: a
// platform's packages, newest first, top of them, for a credential only;
// an api-version past the resource's range (6.0) is refused.
func TestAgentPackages(t *testing.T) {
	s := New()
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	org := s.AddOrg("contoso", "pat-1")
	for _, p := range []AgentPackage{
		{Platform: "linux-x64", Version: "4.261.0", HashValue: "aa"},
		{Platform: "linux-x64", Version: "4.264.2", HashValue: "bb"},
		{Platform: "linux-arm64", Version: "4.264.2", HashValue: "cc"},
	} {
		org.AddAgentPackage(p)
	}
	url := s.OrgURL("contoso") + "/_apis/distributedtask/packages/agent?platform=linux-x64"
	resp, b := do(t, http.MethodGet, url+"&top=1", "pat-1", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	l := decodeList(t, b)
	var first taskagent.PackageMetadata
	if len(l.Value) != 1 || json.Unmarshal(l.Value[0], &first) != nil || *first.Filename != "vsts-agent-linux-x64-4.264.2.tar.gz" || *first.HashValue != "bb" {
		t.Errorf("top=1: %s", b)
	}
	if _, b := do(t, http.MethodGet, url, "pat-1", nil); decodeList(t, b).Count != 2 {
		t.Errorf("linux-x64: %s", b)
	}
	if resp, _ := do(t, http.MethodGet, url, "wrong", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a wrong PAT: %d", resp.StatusCode)
	}
	if resp, b := do(t, http.MethodGet, url+"&api-version=7.1", "pat-1", nil); resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "out of range") {
		t.Errorf("api-version 7.1: %d %s", resp.StatusCode, b)
	}
}
