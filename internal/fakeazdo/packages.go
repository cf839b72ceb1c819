package fakeazdo

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
)

// AgentPackage is an agent package the organization offers, as in
// GET _apis/distributedtask/packages/agent?platform=P&top=N (what
// Microsoft's own agent image scripts and the agent's self-update read).
type AgentPackage struct {
	Platform    string // e.g. linux-x64
	Version     string // MAJOR.MINOR.PATCH
	DownloadURL string
	HashValue   string // the archive's SHA-256, as the agent's self-update checks it
}

// AddAgentPackage makes the organization offer an agent package.
func (o *Org) AddAgentPackage(p AgentPackage) {
	o.server.mu.Lock()
	defer o.server.mu.Unlock()
	parts := strings.SplitN(p.Version, ".", 3)
	v := make([]int, 3)
	for i := range parts {
		v[i], _ = strconv.Atoi(parts[i])
	}
	ext := ".tar.gz"
	if strings.HasPrefix(p.Platform, "win") {
		ext = ".zip"
	}
	file := fmt.Sprintf("vsts-agent-%s-%s%s", p.Platform, p.Version, ext)
	o.packages = append(o.packages, taskagent.PackageMetadata{
		Type: ptr("agent"), Platform: ptr(p.Platform), Filename: &file, DownloadUrl: ptr(p.DownloadURL), HashValue: ptr(p.HashValue),
		CreatedOn: &azuredevops.Time{Time: time.Now().UTC()}, InfoUrl: ptr("https://go.microsoft.com/fwlink/?LinkId=798199"),
		Version: &taskagent.PackageVersion{Major: &v[0], Minor: &v[1], Patch: &v[2]},
	})
}

// agentPackages answers the package list: a platform's packages, newest
// first, at most top of them.
func (o *Org) agentPackages(q queryValues) (int, []byte) {
	var out []taskagent.PackageMetadata
	for _, p := range o.packages {
		if platform := q.Get("platform"); platform == "" || strings.EqualFold(platform, *p.Platform) {
			out = append(out, p)
		}
	}
	newer := func(a, b *taskagent.PackageVersion) bool {
		if *a.Major != *b.Major {
			return *a.Major > *b.Major
		}
		if *a.Minor != *b.Minor {
			return *a.Minor > *b.Minor
		}
		return *a.Patch > *b.Patch
	}
	sort.SliceStable(out, func(i, j int) bool { return newer(out[i].Version, out[j].Version) })
	if top, err := strconv.Atoi(q.Get("top")); err == nil && top >= 0 && top < len(out) {
		out = out[:top]
	}
	return collection(out)
}
