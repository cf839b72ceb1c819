package scaledjobs

import (
	"fmt"
	"testing"
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
		got, ok := Owner(pods, c.agent)
		if got != c.want || ok != c.ok {
			t.Errorf("Owner(%s) = %v, %v; want %v, %v", c.agent, got, ok, c.want, c.ok)
		}
	}
	// The same pod name in two namespaces: the scaler cannot tell, so the
	// agent is nobody's (no credit, no deletion).
	twin := append(pods, Pod{Ref: Ref{"team-b", "linux-agents-x7k2p-b4c6d"}, ScaledJob: "linux-agents"})
	if got, ok := Owner(twin, "linux-agents-x7k2p-b4c6d"); ok {
		t.Errorf("an agent named after pods of two namespaces was given to %v", got)
	}
}

func ptr[T any](v T) *T { return &v }
