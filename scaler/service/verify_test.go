package service_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	pb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/scaledjobs"
)

const clusterAddr = "azdo-keda-scaler.keda.svc:6000"

// clusterTarget is a ScaledJob's external trigger as the cluster reader
// reports it.
func clusterTarget(ns, name string, md map[string]string) scaledjobs.Target {
	full := map[string]string{"scalerAddress": clusterAddr}
	for k, v := range md {
		full[k] = v
	}
	return scaledjobs.Target{ScaledJob: scaledjobs.Ref{Namespace: ns, Name: name}, Trigger: scaledjobs.Trigger{Index: 0, Metadata: full}, Room: 100}
}

// count asks what KEDA asks for a ScaledJob's trigger.
func (e *env) count(ns, name string, md map[string]string) (float64, error) {
	e.t.Helper()
	full := map[string]string{"scalerAddress": clusterAddr}
	for k, v := range md {
		full[k] = v
	}
	return e.metricFor(&pb.ScaledObjectRef{Namespace: ns, Name: name, ScalerMetadata: full})
}

// waitCount waits until a ScaledJob's trigger gets want, for at most 5 s.
func (e *env) waitCount(ns, name string, md map[string]string, want float64) {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := e.count(ns, name, md)
		if err == nil && n == want {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s/%s counts %v (%v), want %v", ns, name, n, err, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Issue #22's first case: the pool chart names ScaledJobs after the
// release, so team-a and team-b both have linux-agents on one pool. team-b
// runs 5 jobs on its own pods and 2 wait. By name shape team-a was credited
// with team-b's 5 running jobs; by pod identity each team gets its own, and
// the counts add up to the pool's 7 jobs: one pod per job.
func TestSameReleaseNameInTwoNamespaces(t *testing.T) {
	e, orgs := newEnv(t, envOptions{verify: true}, orgSpec{"contoso", "pat-verify"})
	org := orgs["contoso"]
	pool := org.AddPool("linux")
	md := map[string]string{"poolName": "linux"}
	var pods []scaledjobs.Pod
	for i := 0; i < 5; i++ {
		name := fmt.Sprintf("linux-agents-b%04d-p%04d", i, i)
		pods = append(pods, scaledjobs.Pod{Ref: scaledjobs.Ref{Namespace: "team-b", Name: name}, ScaledJob: "linux-agents"})
		agent := org.AddAgent(pool, fakeazdo.Agent{Name: name, Online: true})
		if err := org.AssignJob(org.QueueJob(pool, fakeazdo.Job{}), agent); err != nil {
			t.Fatal(err)
		}
	}
	org.QueueJob(pool, fakeazdo.Job{})
	org.QueueJob(pool, fakeazdo.Job{})
	n := e.svc.SyncTriggers(context.Background(), []scaledjobs.Target{
		clusterTarget("team-a", "linux-agents", md), clusterTarget("team-b", "linux-agents", md),
	}, scaledjobs.NewOwners(pods), 1)
	if n != 2 {
		t.Fatalf("%d triggers routed, want 2", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	var a, b float64
	var errA, errB error
	for time.Now().Before(deadline) {
		a, errA = e.count("team-a", "linux-agents", md)
		b, errB = e.count("team-b", "linux-agents", md)
		if errA == nil && errB == nil && a+b == 7 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// team-b: its 5 running jobs; the 2 waiting ones go to the first of two
	// equal templates by name (team-a), whose pods start for them.
	if errA != nil || errB != nil || a != 2 || b != 5 {
		t.Fatalf("team-a %v (%v), team-b %v (%v); want 2 and 5", a, errA, b, errB)
	}
}

// A caller is believed only when the cluster has its ScaledJob with this
// very metadata: anything else is refused and changes nothing (no trigger,
// no parent kept from the sweeper, no pool polled).
func TestUnverifiedCallersChangeNothing(t *testing.T) {
	e, orgs := newEnv(t, envOptions{verify: true}, orgSpec{"contoso", "pat-verify"})
	org := orgs["contoso"]
	shared := org.AddPool("linux")
	org.AddPool("secret-pool")
	org.QueueJob(shared, fakeazdo.Job{})
	md := map[string]string{"poolName": "linux"}
	e.svc.SyncTriggers(context.Background(), []scaledjobs.Target{clusterTarget("team-a", "linux-agents", md)}, scaledjobs.NewOwners(nil), 1)

	cases := []struct {
		name, ns, sj string
		md           map[string]string
		code         codes.Code
	}{
		{"no such ScaledJob", "team-x", "linux-agents", md, codes.NotFound},
		{"same name, other namespace", "team-b", "linux-agents", md, codes.NotFound},
		{"a known ScaledJob claiming a higher priority", "team-a", "linux-agents", map[string]string{"poolName": "linux", "priority": "1000"}, codes.PermissionDenied},
		{"a known ScaledJob naming a parent", "team-a", "linux-agents", map[string]string{"poolName": "linux", "parent": "static-vm"}, codes.PermissionDenied},
		{"a pool nobody uses", "team-x", "spy", map[string]string{"poolName": "secret-pool"}, codes.NotFound},
	}
	for _, c := range cases {
		_, err := e.count(c.ns, c.sj, c.md)
		if status.Code(err) != c.code {
			t.Errorf("%s: %v, want %v", c.name, err, c.code)
		}
	}
	if got := e.router.Tables(); len(got) != 1 || len(got[0].Triggers()) != 1 || got[0].Triggers()[0].ID != "team-a/linux-agents" {
		t.Fatalf("routing changed: %d tables", len(got))
	}
	for _, k := range e.reg.InUse() {
		if k.ID != shared {
			t.Fatalf("a refused call put pool %v in use", k)
		}
	}
	if c, err := e.count("team-a", "linux-agents", md); err != nil || c != 1 {
		t.Fatalf("the verified ScaledJob: %v, %v; want 1", c, err)
	}
}

// A deleted ScaledJob leaves routing at the next sync: its waiting jobs
// are counted by the other template at once, and its calls are refused.
func TestDeletedScaledJobLeavesAtOnce(t *testing.T) {
	e, orgs := newEnv(t, envOptions{verify: true}, orgSpec{"contoso", "pat-verify"})
	org := orgs["contoso"]
	pool := org.AddPool("linux")
	org.QueueJob(pool, fakeazdo.Job{Demands: []string{"Agent.OS -equals Linux"}})
	small := map[string]string{"poolName": "linux", "capabilities": "Agent.OS=Linux"}
	big := map[string]string{"poolName": "linux", "capabilities": "Agent.OS=Linux,docker"}
	both := []scaledjobs.Target{clusterTarget("ns", "small", small), clusterTarget("ns", "big", big)}
	e.svc.SyncTriggers(context.Background(), both, scaledjobs.NewOwners(nil), 1)
	waitCount(t, e, "ns", "small", small, 1)
	if c, err := e.count("ns", "big", big); err != nil || c != 0 {
		t.Fatalf("big: %v %v, want 0 (the least capable template counts the job)", c, err)
	}
	e.svc.SyncTriggers(context.Background(), both[1:], scaledjobs.NewOwners(nil), 2)
	if c, err := e.count("ns", "big", big); err != nil || c != 1 {
		t.Fatalf("big after small was deleted: %v %v, want 1", c, err)
	}
	if _, err := e.count("ns", "small", small); status.Code(err) != codes.NotFound {
		t.Fatalf("the deleted ScaledJob's call: %v, want NotFound", err)
	}
}

func waitCount(t *testing.T, e *env, ns, name string, md map[string]string, want float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	var got float64
	var err error
	for time.Now().Before(deadline) {
		if got, err = e.count(ns, name, md); err == nil && got == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s/%s: %v (%v), want %v", ns, name, got, err, want)
}

// A ScaledJob at its maxReplicaCount: the jobs beyond its room go to the
// next template that can run them instead of waiting for it.
func TestJobsBeyondMaxReplicaCountOverflow(t *testing.T) {
	e, orgs := newEnv(t, envOptions{verify: true}, orgSpec{"contoso", "pat-verify"})
	org := orgs["contoso"]
	pool := org.AddPool("linux")
	for range 3 {
		org.QueueJob(pool, fakeazdo.Job{Demands: []string{"Agent.OS -equals Linux"}})
	}
	small := map[string]string{"poolName": "linux", "capabilities": "Agent.OS=Linux"}
	big := map[string]string{"poolName": "linux", "capabilities": "Agent.OS=Linux,docker"}
	targets := []scaledjobs.Target{clusterTarget("ns", "small", small), clusterTarget("ns", "big", big)}
	targets[0].Room = 2 // maxReplicaCount: 2
	e.svc.SyncTriggers(context.Background(), targets, scaledjobs.NewOwners(nil), 1)
	waitCount(t, e, "ns", "small", small, 2)
	if c, err := e.count("ns", "big", big); err != nil || c != 1 {
		t.Fatalf("big: %v %v, want the 1 job small has no room for", c, err)
	}
}

// A sync looks each pool up once, however many ScaledJobs use it.
func TestSyncLooksEachPoolUpOnce(t *testing.T) {
	e, orgs := newEnv(t, envOptions{verify: true}, orgSpec{"contoso", "pat-verify"})
	orgs["contoso"].AddPool("linux")
	orgs["contoso"].AddPool("windows")
	var targets []scaledjobs.Target
	for i := range 6 {
		pool := []string{"linux", "windows"}[i%2]
		targets = append(targets, clusterTarget(fmt.Sprintf("team-%d", i), "agents", map[string]string{"poolName": pool}))
	}
	if n := e.svc.SyncTriggers(context.Background(), targets, scaledjobs.NewOwners(nil), 1); n != 6 {
		t.Fatalf("%d triggers routed, want 6", n)
	}
	if calls := e.fake.Calls("contoso", fakeazdo.Pools); calls != 2 {
		t.Fatalf("%d pool lookups for 6 triggers on 2 pools, want 2", calls)
	}
}

// A job whose pod is gone (its containers ended, or it was deleted) counts
// for no ScaledJob, though Azure DevOps may list it as running until the
// next snapshot: KEDA no longer counts that pod's Job as running, so
// crediting the job would start a pod for it again.
func TestRunningJobOfAGonePodCountsForNobody(t *testing.T) {
	e, orgs := newEnv(t, envOptions{verify: true}, orgSpec{"contoso", "pat-gone"})
	org := orgs["contoso"]
	pool := org.AddPool("linux")
	md := map[string]string{"poolName": "linux"}
	pod := scaledjobs.Pod{Ref: scaledjobs.Ref{Namespace: "team-a", Name: "agents-aaaaa-bbbbb"}, ScaledJob: "agents"}
	agent := org.AddAgent(pool, fakeazdo.Agent{Name: pod.Name, Online: true})
	if err := org.AssignJob(org.QueueJob(pool, fakeazdo.Job{}), agent); err != nil {
		t.Fatal(err)
	}
	targets := []scaledjobs.Target{clusterTarget("team-a", "agents", md)}
	e.svc.SyncTriggers(context.Background(), targets, scaledjobs.NewOwners([]scaledjobs.Pod{pod}), 1)
	e.waitCount("team-a", "agents", md, 1)
	pod.Gone = true
	e.svc.SyncTriggers(context.Background(), targets, scaledjobs.NewOwners([]scaledjobs.Pod{pod}), 2)
	e.waitCount("team-a", "agents", md, 0)
}
