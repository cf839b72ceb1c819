package scaledjobs

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// Room follows KEDA's rule (test/kedarules checks it against KEDA's own
// code for every combination).
func TestRoom(t *testing.T) {
	cases := []struct {
		minN, maxN *int64
		want       int64
	}{
		{nil, nil, 100},
		{nil, ptr[int64](10), 10},
		{ptr[int64](2), ptr[int64](10), 8},   // the minimum is kept apart
		{ptr[int64](12), ptr[int64](10), 10}, // a minimum above the maximum: the maximum
		{ptr[int64](3), nil, 100},
	}
	for _, c := range cases {
		if got := (ScaledJob{MinReplicaCount: c.minN, MaxReplicaCount: c.maxN}).Room(); got != c.want {
			t.Errorf("min %v max %v: Room %d, want %d", c.minN, c.maxN, got, c.want)
		}
	}
}

func TestTargetsMatchTheScalersAddresses(t *testing.T) {
	ext := func(i int, addr string) Trigger {
		return Trigger{Index: i, Metadata: map[string]string{"scalerAddress": addr, "poolName": "linux"}}
	}
	sjs := []ScaledJob{
		{Ref: Ref{"team-b", "linux"}, Triggers: []Trigger{ext(0, "azdo-keda-scaler.keda.svc.cluster.local:6000")}},
		{Ref: Ref{"team-a", "linux"}, Triggers: []Trigger{ext(1, "DNS:///AZDO-KEDA-SCALER.keda.svc.:6000"), ext(0, "other.keda.svc:6000")}},
		{Ref: Ref{"team-c", "linux"}, Triggers: []Trigger{ext(0, "azdo-keda-scaler.keda.svc:7000")}}, // another port
		{Ref: Ref{"team-d", "none"}},
	}
	got := Targets(sjs, []string{"azdo-keda-scaler.keda.svc:6000"})
	var names []string
	for _, g := range got {
		names = append(names, fmt.Sprintf("%s#%d room %d", g.ScaledJob, g.Trigger.Index, g.Room))
	}
	if want := "[team-a/linux#1 room 100 team-b/linux#0 room 100]"; fmt.Sprint(names) != want {
		t.Fatalf("targets %v, want %s", names, want)
	}
}

// Same release name in two namespaces: each agent belongs to the ScaledJob
// whose Job made its pod, never to the other namespace's namesake; an agent
// named like a pod but of no known pod is nobody's, whatever its shape.
func TestOwnerIsThePodsScaledJob(t *testing.T) {
	pods := []Pod{
		{Ref: Ref{"team-a", "linux-agents-x7k2p-b4c6d"}, ScaledJob: "linux-agents", Job: "linux-agents-x7k2p"},
		{Ref: Ref{"team-b", "linux-agents-q9w8e-r5t6y"}, ScaledJob: "linux-agents", Job: "linux-agents-q9w8e", Gone: true},
	}
	cases := []struct {
		agent string
		want  Ref
		ok    bool
	}{
		{"linux-agents-x7k2p-b4c6d", Ref{"team-a", "linux-agents"}, true},
		{"LINUX-AGENTS-Q9W8E-R5T6Y", Ref{"team-b", "linux-agents"}, true}, // gone pods still tell whose agent it was
		{"linux-agents-aaaaa-bbbbb", Ref{}, false},                        // pod-shaped, but no such pod
		{"prod-agent-win10", Ref{}, false},                                // a static agent
	}
	for _, c := range cases {
		got, ok := NewOwners(pods).Of(c.agent)
		if got != c.want || ok != c.ok {
			t.Errorf("Of(%s) = %v, %v; want %v, %v", c.agent, got, ok, c.want, c.ok)
		}
	}
	// The same pod name in two namespaces: the scaler cannot tell, so the
	// agent is nobody's (no credit, no deletion).
	twin := append(pods, Pod{Ref: Ref{"team-b", "linux-agents-x7k2p-b4c6d"}, ScaledJob: "linux-agents"})
	if got, ok := NewOwners(twin).Of("linux-agents-x7k2p-b4c6d"); ok {
		t.Errorf("an agent named after pods of two namespaces was given to %v", got)
	}
}

func ptr[T any](v T) *T { return &v }

func TestStall(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	grace := 2 * time.Minute
	sj := Ref{"team-a", "linux"}
	job := func(name string, age time.Duration) Job {
		return Job{Ref: Ref{"team-a", name}, ScaledJob: "linux", Created: now.Add(-age)}
	}
	pod := func(name, job, problem string) Pod {
		return Pod{Ref: Ref{"team-a", name}, ScaledJob: "linux", Job: job, Problem: problem}
	}
	cases := []struct {
		name string
		jobs []Job
		pods []Pod
		want string // a part of the reason; "" not stalled
	}{
		{"no Jobs", nil, nil, ""},
		{"a young Job without a pod", []Job{job("j1", time.Minute)}, nil, ""},
		{"an old Job without a pod (ResourceQuota)", []Job{job("j1", 3*time.Minute)}, nil, "Job j1 has no pod after 3m0s"},
		{"an old Job with a running pod", []Job{job("j1", time.Hour)}, []Pod{pod("p1", "j1", "")}, ""},
		{"an old Job whose pod cannot be scheduled", []Job{job("j1", 3*time.Minute)},
			[]Pod{pod("p1", "j1", "Unschedulable: 0/3 nodes are available")}, "pod p1: Unschedulable"},
		{"an image that cannot be pulled", []Job{job("j1", 3*time.Minute)}, []Pod{pod("p1", "j1", "ImagePullBackOff: not found")}, "ImagePullBackOff"},
		{"a bad pod and a good retry", []Job{job("j1", 3*time.Minute)},
			[]Pod{pod("p1", "j1", "CreateContainerConfigError: secret missing"), pod("p2", "j1", "")}, ""},
		{"another ScaledJob's Job", []Job{{Ref: Ref{"team-a", "j9"}, ScaledJob: "gpu", Created: now.Add(-time.Hour)}}, nil, ""},
		{"the same name in another namespace", []Job{{Ref: Ref{"team-b", "j9"}, ScaledJob: "linux", Created: now.Add(-time.Hour)}}, nil, ""},
		{"two stalled Jobs", []Job{job("j1", 3*time.Minute), job("j2", 4*time.Minute)}, nil, "(and 1 more)"},
	}
	for _, c := range cases {
		got := Stall(sj, c.jobs, c.pods, now, grace)
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
