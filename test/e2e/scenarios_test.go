//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	pb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo"
)

var (
	linuxJob   = fakeazdo.Job{Demands: []string{"Agent.OS -equals Linux", "docker"}}
	windowsJob = fakeazdo.Job{Demands: []string{"Agent.OS -equals Windows_NT"}}
	linuxCaps  = map[string]any{"capabilities": "Agent.OS=Linux,docker"}
)

// appear is the limit for Jobs to appear: two KEDA polling intervals, plus
// one scaler refresh for a job queued after the last snapshot.
const appear = 2*pollingInterval + refresh

// Scenario 1: one pool, 3 Linux and 2 Windows jobs, two ScaledJobs with
// different capabilities: exactly 3 and 2 Jobs, and no more afterwards.
func TestMixedPoolTwoScaledJobs(t *testing.T) {
	ns := "e2e-mixed"
	pool := env.contoso.AddPool("mixed")
	linux := installPool(t, ns, "linux", "contoso", "mixed", linuxCaps)
	windows := installPool(t, ns, "windows", "contoso", "mixed", map[string]any{"capabilities": "Agent.OS=Windows_NT"})
	waitReconciled(t, ns, linux, windows)
	for range 3 {
		env.contoso.QueueJob(pool, linuxJob)
	}
	for range 2 {
		env.contoso.QueueJob(pool, windowsJob)
	}
	// The first scenario's calls start the scaler's routing warm-up.
	dl := waitJobs(t, ns, linux, 3, appear+warmup)
	dw := waitJobs(t, ns, windows, 2, appear+warmup)
	holdJobs(t, ns, linux, 3, 5*pollingInterval)
	if n := len(jobs(t, ns, windows)); n != 2 {
		t.Fatalf("windows: %d Jobs after five intervals, want 2", n)
	}
	record("1 mixed pool: linux 3 Jobs %s after the jobs were queued, windows 2 Jobs after %s; still 3 and 2 after %s more",
		dl.Round(100*time.Millisecond), dw.Round(100*time.Millisecond), 5*pollingInterval)
}

// Scenario 2: jobs finish in Azure DevOps and their Kubernetes Jobs
// complete: nothing new; newly queued jobs make new Jobs.
func TestFinishedJobsAreNotReplaced(t *testing.T) {
	ns := "e2e-finish"
	pool := env.contoso.AddPool("finish")
	sj := installPool(t, ns, "linux", "contoso", "finish", linuxCaps)
	waitReconciled(t, ns, sj)
	var reqs []uint64
	for range 3 {
		reqs = append(reqs, env.contoso.QueueJob(pool, linuxJob))
	}
	waitJobs(t, ns, sj, 3, appear)

	// Each agent takes a job, runs it, and its pod exits: Azure DevOps
	// finishes the request, then the Job completes.
	for _, r := range reqs {
		if err := env.contoso.FinishJob(r, "succeeded"); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(2 * refresh)
	for _, j := range jobs(t, ns, sj) {
		completeJob(t, j)
	}
	holdJobs(t, ns, sj, 3, 5*pollingInterval)
	if n := running(t, ns, sj); n != 0 {
		t.Fatalf("%d Jobs still running", n)
	}
	env.contoso.QueueJob(pool, linuxJob)
	env.contoso.QueueJob(pool, linuxJob)
	d := waitJobs(t, ns, sj, 5, appear)
	holdJobs(t, ns, sj, 5, 3*pollingInterval)
	record("2 finish: 3 Jobs completed, none created in %s; 2 new queued jobs -> 2 new Jobs in %s", 5*pollingInterval, d.Round(100*time.Millisecond))
}

// Scenario 3: an empty pool creates nothing; one queued job creates one Job.
func TestScaleFromZero(t *testing.T) {
	ns := "e2e-zero"
	pool := env.contoso.AddPool("zero")
	sj := installPool(t, ns, "linux", "contoso", "zero", linuxCaps)
	waitReconciled(t, ns, sj)
	holdJobs(t, ns, sj, 0, 5*pollingInterval)
	env.contoso.QueueJob(pool, linuxJob)
	d := waitJobs(t, ns, sj, 1, appear)
	holdJobs(t, ns, sj, 1, 3*pollingInterval)
	record("3 from zero: 0 Jobs for %s on an empty pool; 1 queued job -> 1 Job in %s", 5*pollingInterval, d.Round(100*time.Millisecond))
}

// Scenario 4: the scaler restarts mid-run; KEDA recovers without duplicates.
func TestScalerRestart(t *testing.T) {
	ns := "e2e-restart"
	pool := env.contoso.AddPool("restart")
	sj := installPool(t, ns, "linux", "contoso", "restart", linuxCaps)
	waitReconciled(t, ns, sj)
	env.contoso.QueueJob(pool, linuxJob)
	env.contoso.QueueJob(pool, linuxJob)
	waitJobs(t, ns, sj, 2, appear)

	env.scaler.Proc.Stop(10 * time.Second)
	holdJobs(t, ns, sj, 2, 2*pollingInterval) // KEDA polls a dead address
	started := time.Now()
	if err := env.scaler.Start(); err != nil {
		t.Fatal(err)
	}
	restart := time.Since(started)
	holdJobs(t, ns, sj, 2, 5*pollingInterval)
	env.contoso.QueueJob(pool, linuxJob)
	d := waitJobs(t, ns, sj, 3, appear)
	record("4 restart: scaler down %s and back (ready in %s); still 2 Jobs for %s after; a new job -> 3rd Job in %s",
		2*pollingInterval, restart.Round(100*time.Millisecond), 5*pollingInterval, d.Round(100*time.Millisecond))
}

// Scenario 5: Azure DevOps fails (5xx) for longer than --stale-after: no
// Jobs from stale or made-up numbers, the error shows on the ScaledJob,
// and scaling resumes when Azure DevOps is back.
func TestAzureDevOpsOutage(t *testing.T) {
	ns := "e2e-outage"
	pool := env.outage.AddPool("linux")
	sj := installPool(t, ns, "linux", "outage", "linux", linuxCaps)
	waitReconciled(t, ns, sj)
	env.outage.QueueJob(pool, linuxJob)
	waitJobs(t, ns, sj, 1, appear)

	env.fake.InjectFault(fakeazdo.Fault{Org: "outage", Endpoint: fakeazdo.JobRequests, Status: 503,
		Body: `{"message":"Service Unavailable"}`})
	env.outage.QueueJob(pool, linuxJob)
	env.outage.QueueJob(pool, linuxJob)
	// Past --stale-after, KEDA gets Unavailable: its Ready condition turns False.
	waited := waitFor(t, "ScaledJob Ready=False", staleAfter+4*pollingInterval+10*time.Second, func() bool {
		st := scaledJobStatus(t, ns, sj)
		c := st.Status.Conditions.GetReadyCondition()
		return c.IsFalse()
	})
	holdJobs(t, ns, sj, 1, 3*pollingInterval)
	var failed string
	for _, e := range events(t, ns, sj) {
		if strings.Contains(e, "KEDAScalerFailed") && strings.Contains(e, "Unavailable") {
			failed = e
		}
	}
	if failed == "" {
		t.Fatalf("no KEDAScalerFailed event with our Unavailable error; events: %q", events(t, ns, sj))
	}
	if !strings.Contains(failed, "503") {
		t.Errorf("the event does not carry the cause (HTTP 503): %s", failed)
	}
	st := scaledJobStatus(t, ns, sj)
	cond := st.Status.Conditions.GetReadyCondition()
	env.fake.ClearFaults()
	d := waitJobs(t, ns, sj, 3, refresh+appear+5*time.Second)
	record("5 outage: Ready=False (%s) %s after the outage began; 1 Job kept, none made up; event %q; after recovery 3 Jobs in %s",
		cond.Reason, waited.Round(100*time.Millisecond), failed, d.Round(100*time.Millisecond))
}

// Scenario 6: a ScaledJob with invalid metadata: KEDA gets our
// InvalidArgument (it logs it; a ScaledJob without a metric creates nothing).
func TestInvalidMetadata(t *testing.T) {
	ns := "e2e-invalid"
	env.contoso.QueueJob(env.contoso.AddPool("invalid"), linuxJob)
	vals := poolValues("contoso", "invalid", linuxCaps)
	vals["scaler"].(map[string]any)["organization"] = "fabrikam"
	helmInstall(t, "azdo-agent-pool", ns, "bad", vals)
	sj := "bad"
	keda := env.cluster.procs[len(env.cluster.procs)-1].Log
	var line string
	d := waitFor(t, "KEDA to log our InvalidArgument", 4*pollingInterval+10*time.Second, func() bool {
		line = lineWith(keda, "code = InvalidArgument", "organization", "fabrikam", "is not a configured organization")
		return line != ""
	})
	holdJobs(t, ns, sj, 0, 3*pollingInterval)
	msg := line[strings.Index(line, "rpc error"):]
	msg, _, _ = strings.Cut(msg, `"`+",")
	record("6 invalid metadata: KEDA logged %s within %s; 0 Jobs", msg, d.Round(100*time.Millisecond))
}

// Scenario 7: two scaler processes sweep under one Lease on the real API
// server: stale agents deleted once, protected ones kept; when the leader
// dies, the other takes over.
func TestSweeperLeaderElection(t *testing.T) {
	ctx := context.Background()
	ns := "e2e-sweeper"
	if err := env.cluster.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	pool := sweepPool
	old := time.Now().Add(-time.Hour)
	stale := func(name string) { env.contoso.AddAgent(pool, fakeazdo.Agent{Name: name, StatusChangedOn: old}) }
	for i := range 3 {
		stale(fmt.Sprintf("e2e-agent-%d", i))
	}
	env.contoso.AddAgent(pool, fakeazdo.Agent{Name: "template-agent", StatusChangedOn: old})         // protected
	env.contoso.AddAgent(pool, fakeazdo.Agent{Name: "e2e-agent-online", Online: true})               // online
	env.contoso.AddAgent(pool, fakeazdo.Agent{Name: "e2e-agent-fresh", StatusChangedOn: time.Now()}) // offline, not long enough
	env.contoso.AddAgent(pool, fakeazdo.Agent{Name: "static-vm-1", StatusChangedOn: old})            // outside the pattern
	deletesBefore := env.fake.Calls("contoso", fakeazdo.DeleteAgent)

	sweeper := func(name string) *Scaler {
		s, err := StartScaler(name, env.cluster.LogDir,
			"--sweep-interval=2s", "--sweep-offline-for=10m", "--sweep-agent-pattern=e2e-agent-*",
			"--sweep-protect=template-*", "--leader-elect", "--kubeconfig="+env.cluster.Kubeconfig,
			"--leader-elect-namespace="+ns, "--leader-elect-identity="+name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Proc.Stop(10 * time.Second) })
		return s
	}
	a, b := sweeper("sweeper-a"), sweeper("sweeper-b")
	want := []string{"e2e-agent-fresh", "e2e-agent-online", "static-vm-1", "template-agent"}
	d := waitFor(t, "the stale agents to go", 30*time.Second, func() bool {
		return strings.Join(env.contoso.AgentNames(pool), ",") == strings.Join(want, ",")
	})
	time.Sleep(3 * 2 * time.Second) // three more sweeps by whoever leads
	if got := env.fake.Calls("contoso", fakeazdo.DeleteAgent) - deletesBefore; got != 3 {
		t.Fatalf("%d DELETE calls for 3 stale agents", got)
	}
	var lease coordinationv1.Lease
	if err := env.kube.Get(ctx, ctrlclient.ObjectKey{Namespace: ns, Name: "azdo-keda-scaler-sweeper"}, &lease); err != nil {
		t.Fatal(err)
	}
	leader := *lease.Spec.HolderIdentity
	leaderS, other := a, b
	if leader == "sweeper-b" {
		leaderS, other = b, a
	}
	if lineWith(other.Proc.Log, "deleted stale offline agent") != "" {
		t.Errorf("%s deleted agents while %s held the Lease", other.Name, leader)
	}

	// The leader dies without releasing the Lease; the other waits it out and sweeps.
	leaderS.Proc.Kill()
	stale("e2e-agent-3")
	stale("e2e-agent-4")
	failover := waitFor(t, "the new leader to sweep", 60*time.Second, func() bool {
		return strings.Join(env.contoso.AgentNames(pool), ",") == strings.Join(want, ",")
	})
	if got := env.fake.Calls("contoso", fakeazdo.DeleteAgent) - deletesBefore; got != 5 {
		t.Fatalf("%d DELETE calls for 5 stale agents", got)
	}
	record("7 sweeper: 2 processes, Lease held by %s; 3 stale agents deleted once in %s (3 DELETE calls), protected/online/fresh/out-of-pattern kept; leader killed, %s deleted 2 more in %s (5 DELETE calls in all)",
		leader, d.Round(100*time.Millisecond), other.Name, failover.Round(100*time.Millisecond))
}

// Scenario 8: 50 ScaledJobs on 5 pools: Azure DevOps sees job-request calls
// per pool, not per ScaledJob, and each pool's one job makes one Job.
func TestFiftyScaledJobsFivePools(t *testing.T) {
	ns := "e2e-load"
	var pools []int
	for p := range 5 {
		pools = append(pools, env.contoso.AddPool(fmt.Sprintf("load-%d", p)))
	}
	var sjs []string
	for i := range 50 {
		sjs = append(sjs, installPool(t, ns, fmt.Sprintf("sj-%02d", i), "contoso", fmt.Sprintf("load-%d", i%5), linuxCaps))
	}
	waitReconciled(t, ns, sjs...)
	for _, id := range pools {
		env.contoso.QueueJob(id, linuxJob)
	}
	perPoolJobs := func() []int {
		out := make([]int, 5)
		for i, sj := range sjs {
			out[i%5] += len(jobs(t, ns, sj))
		}
		return out
	}
	waitFor(t, "one Job per pool", time.Minute, func() bool {
		return slices.Equal(perPoolJobs(), []int{1, 1, 1, 1, 1})
	})
	// Measure a window once every ScaledJob is being polled.
	const window = 30 * time.Second
	before := map[int]int{}
	for _, p := range pools {
		before[p] = env.fake.PoolCalls("contoso", fakeazdo.JobRequests, p)
	}
	getMetrics0, err := env.scaler.Metric("grpc_server_handled_total", `grpc_method="GetMetrics"`)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(window)
	getMetrics, _ := env.scaler.Metric("grpc_server_handled_total", `grpc_method="GetMetrics"`)
	var perPool []int
	total := 0
	for _, p := range pools {
		n := env.fake.PoolCalls("contoso", fakeazdo.JobRequests, p) - before[p]
		perPool = append(perPool, n)
		total += n
		if max := int(window/refresh) + 3; n > max {
			t.Errorf("pool %d: %d job-request calls in %s, want at most %d (one per --min-refresh-interval)", p, n, window, max)
		}
	}
	calls := getMetrics - getMetrics0
	// Each of the 50 ScaledJobs is polled every pollingInterval.
	if minCalls := 0.5 * 50 * float64(window/pollingInterval); calls < minCalls {
		t.Errorf("KEDA made %.0f GetMetrics calls in %s, want at least %.0f", calls, window, minCalls)
	}
	if got := perPoolJobs(); !slices.Equal(got, []int{1, 1, 1, 1, 1}) {
		t.Errorf("Jobs per pool %v, want one each: every pool's job counts for one of its 10 ScaledJobs", got)
	}
	record("8 load: 50 ScaledJobs on 5 pools, %s window: KEDA made %.0f GetMetrics calls; Azure DevOps got %d job-request calls (%v per pool, --min-refresh-interval %s); 5 Jobs, one per pool's job (10 ScaledJobs each)",
		window, calls, total, perPool, refresh)
}

// Scenario 9: one pod per job. Three ScaledJobs share a pool with
// overlapping templates (plain Linux, Linux+Docker, GPU): a plain job any
// of them can run. Pods are simulated (podSim): each agent takes the job
// the fake Azure DevOps dispatches to it, the oldest it can run, as Azure
// DevOps does. Staged, every queued job makes exactly one Job. All at once,
// an agent may take a job routed to another template (it came online
// first): that ScaledJob then needs one pod more and the other's pod
// leaves at its idle timeout; every Job is a job run or an idle exit.
func TestOnePodPerJob(t *testing.T) {
	ns := "e2e-route"
	pool := env.contoso.AddPool("route")
	templates := []struct{ name, caps string }{
		{"plain", "Agent.OS=Linux"}, {"docker", "Agent.OS=Linux,docker"}, {"gpu", "Agent.OS=Linux,docker,cuda=12.4"},
	}
	caps := map[string]map[string]string{}
	var names []string
	for _, tpl := range templates {
		vals := poolValues("contoso", "route", map[string]any{"capabilities": tpl.caps})
		vals["azp"].(map[string]any)["idleTimeoutSeconds"] = 8
		helmInstall(t, "azdo-agent-pool", ns, tpl.name, vals)
		names = append(names, tpl.name)
		caps[tpl.name] = map[string]string{}
		for _, c := range strings.Split(tpl.caps, ",") {
			k, v, _ := strings.Cut(c, "=")
			caps[tpl.name][k] = v
		}
	}
	waitReconciled(t, ns, names...)
	sim := &podSim{ns: ns, org: env.contoso, pool: pool, caps: caps, startDelay: time.Second, runFor: 3 * time.Second}
	startPodSim(t, sim)
	plain := fakeazdo.Job{Demands: []string{"Agent.OS -equals Linux"}}
	docker := fakeazdo.Job{Demands: []string{"Agent.OS -equals Linux", "docker"}}
	gpu := fakeazdo.Job{Demands: []string{"Agent.OS -equals Linux", "docker", "cuda -gtVersion 12.0"}}
	cheapest := map[string]string{} // demands -> the template routing picks
	cheapest[strings.Join(plain.Demands, ",")], cheapest[strings.Join(docker.Demands, ",")], cheapest[strings.Join(gpu.Demands, ",")] = "plain", "docker", "gpu"

	drain := func(what string) {
		t.Helper()
		waitFor(t, what+": every job finished and every pod gone", 2*time.Minute, func() bool {
			return len(env.contoso.UnfinishedJobs(pool)) == 0 && !sim.busy()
		})
		for _, n := range names {
			if r := running(t, ns, n); r != 0 {
				t.Fatalf("%s: %s has %d unfinished Jobs", what, n, r)
			}
		}
	}

	// Staged: each kind of job after the previous one is done.
	for _, stage := range []struct {
		job fakeazdo.Job
		n   int
	}{{plain, 3}, {docker, 2}, {gpu, 1}} {
		for range stage.n {
			env.contoso.QueueJob(pool, stage.job)
		}
		drain("staged")
	}
	created, idle, ranBy := sim.counts()
	if created != 6 || idle != 0 {
		t.Fatalf("staged: %d Jobs for 6 queued jobs (%d idle exits), want exactly 6", created, idle)
	}
	for req, sj := range ranBy {
		if want := cheapest[strings.Join(env.contoso.JobDemands(req), ",")]; sj != want {
			t.Errorf("staged: job %d ran on a %s pod, want %s", req, sj, want)
		}
	}
	holdJobs(t, ns, "gpu", len(jobs(t, ns, "gpu")), 3*pollingInterval)

	// All at once, interleaved: 4 plain, 3 docker, 2 GPU jobs.
	var batch []uint64
	for _, j := range []fakeazdo.Job{plain, docker, gpu, plain, docker, plain, gpu, docker, plain} {
		batch = append(batch, env.contoso.QueueJob(pool, j))
	}
	drain("at once")
	created2, idle2, ranBy2 := sim.counts()
	created2, idle2 = created2-created, idle2-idle
	steals := 0
	for _, req := range batch {
		sj, ok := ranBy2[req]
		if !ok {
			t.Fatalf("at once: job %d never ran", req)
		}
		if sj != cheapest[strings.Join(env.contoso.JobDemands(req), ",")] {
			steals++
		}
	}
	// The hold (--hold-behind-older) starts a more capable template's pods
	// only once the older jobs it could also take have agents: no steal, no
	// idle pod, one Job per job.
	if created2 != len(batch) || steals != 0 || idle2 != 0 {
		t.Errorf("at once: %d Jobs for %d jobs, %d taken by another template's pod, %d idle exits; want %d, 0, 0",
			created2, len(batch), steals, idle2, len(batch))
	}
	record("9 one pod per job: staged 6 queued jobs -> %d Jobs (%.2f per job, 0 idle exits), each run by the template routing chose; "+
		"at once 9 jobs -> %d Jobs (%.2f per job): %d jobs were taken by a pod of another template that came online first, %d pods left at their idle timeout (8s)",
		created, float64(created)/6, created2, float64(created2)/float64(len(batch)), steals, idle2)
}

// Scenario 10: scale from zero with no manual step. An empty pool and a
// ScaledJob with capabilities: the scaler registers the template's
// placeholder, so Azure DevOps (the fake, as Azure DevOps does) accepts a
// job that only such an agent could run, and KEDA makes a Job for it.
// With the keeper off, the same job is refused at once.
func TestScaleFromZeroWithPlaceholder(t *testing.T) {
	ns := "e2e-placeholder"
	pool := env.contoso.AddPool("ph")
	sj := installPool(t, ns, "linux", "contoso", "ph", linuxCaps)
	waitReconciled(t, ns, sj)
	var placeholder string
	d := waitFor(t, "the placeholder agent", 30*time.Second, func() bool {
		for _, n := range env.contoso.AgentNames(pool) {
			if strings.HasPrefix(n, "keda-placeholder-") {
				placeholder = n
				return true
			}
		}
		return false
	})
	a, _ := env.contoso.Agent(pool, placeholder)
	if *a.Status != "offline" || (*a.SystemCapabilities)["docker"] != "" || (*a.SystemCapabilities)["Agent.OS"] != "Linux" {
		t.Fatalf("placeholder %s: status %s, capabilities %v", placeholder, *a.Status, *a.SystemCapabilities)
	}
	if _, err := env.contoso.Submit(pool, linuxJob); err != nil {
		t.Fatalf("with the placeholder the job must queue: %v", err)
	}
	dj := waitJobs(t, ns, sj, 1, appear)

	// The keeper off (another scaler process): the same job is refused.
	off, err := StartScaler("scaler-nokeeper", env.cluster.LogDir, "--placeholders=false")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { off.Proc.Stop(10 * time.Second) })
	offPool := env.contoso.AddPool("ph-off")
	vals := poolValues("contoso", "ph-off", linuxCaps)
	vals["scaler"].(map[string]any)["address"] = off.Addr
	helmInstall(t, "azdo-agent-pool", ns, "linux-off", vals)
	waitReconciled(t, ns, "linux-off")
	_, err = env.contoso.Submit(offPool, linuxJob)
	var refused *fakeazdo.ErrNoAgentSatisfies
	if !errors.As(err, &refused) {
		t.Fatalf("without a placeholder the job must be refused, got %v", err)
	}
	holdJobs(t, ns, "linux-off", 0, 3*pollingInterval)
	record("10 scale from zero: placeholder %s registered %s after KEDA reconciled the ScaledJob; a Linux+Docker job queued -> 1 Job in %s; keeper off: %q, 0 Jobs",
		placeholder, d.Round(100*time.Millisecond), dj.Round(100*time.Millisecond), err.Error())
}

// Scenario 11: two replicas; KEDA talks only to the one that does not hold
// the Lease. The Lease holder still removes stale and finished agents, and
// never a placeholder (registered by the other) or a configured parent.
func TestSweeperOnTheReplicaKEDADoesNotCall(t *testing.T) {
	ctx := context.Background()
	ns := "e2e-replicas"
	if err := env.cluster.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	pool := env.contoso.AddPool("replicas")
	const parent = "gpu-b4c6d-f7g8h" // shaped like a pod's name: only its protection keeps it
	env.contoso.AddAgent(pool, fakeazdo.Agent{Name: parent, StatusChangedOn: time.Now().Add(-time.Hour),
		Capabilities: map[string]string{"Agent.OS": "Linux", "cuda": "12.4"}})
	args := []string{"--sweep-interval=2s", "--sweep-offline-for=10m", "--sweep-finished-for=5s", "--sweep-pools=replicas",
		"--sweep-protect=" + parent, "--leader-elect", "--kubeconfig=" + env.cluster.Kubeconfig,
		"--leader-elect-namespace=" + ns, "--leader-elect-lease=replicas"}
	replica := func(name string) *Scaler {
		s, err := StartScaler(name, env.cluster.LogDir, append(args, "--leader-elect-identity="+name)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Proc.Stop(10 * time.Second) })
		return s
	}
	leader := replica("replica-leader")
	holder := func() string {
		var lease coordinationv1.Lease
		if err := env.kube.Get(ctx, ctrlclient.ObjectKey{Namespace: ns, Name: "replicas"}, &lease); err != nil || lease.Spec.HolderIdentity == nil {
			return ""
		}
		return *lease.Spec.HolderIdentity
	}
	waitFor(t, "replica-leader to hold the Lease", 30*time.Second, func() bool { return holder() == "replica-leader" })
	called := replica("replica-called")

	// KEDA talks to replica-called only.
	vals := poolValues("contoso", "replicas", linuxCaps)
	vals["scaler"].(map[string]any)["address"] = called.Addr
	helmInstall(t, "azdo-agent-pool", ns, "linux", vals)
	waitReconciled(t, ns, "linux")
	var placeholder string
	waitFor(t, "the placeholder agent", 30*time.Second, func() bool {
		for _, n := range env.contoso.AgentNames(pool) {
			if strings.HasPrefix(n, "keda-placeholder-") {
				placeholder = n
				return true
			}
		}
		return false
	})
	// A killed pod's agent (offline for an hour) and a finished single-run
	// agent (its one job done, offline since).
	env.contoso.AddAgent(pool, fakeazdo.Agent{Name: "linux-x7k2p-b4c6d", StatusChangedOn: time.Now().Add(-time.Hour)})
	finished := env.contoso.AddAgent(pool, fakeazdo.Agent{Name: "linux-q2w3e-r4t5y", Online: true})
	job := env.contoso.QueueJob(pool, linuxJob)
	if err := env.contoso.AssignJob(job, finished); err != nil {
		t.Fatal(err)
	}
	if err := env.contoso.FinishJob(job, "succeeded"); err != nil {
		t.Fatal(err)
	}
	env.contoso.SetAgentStatus(pool, finished, false, time.Now())
	want := strings.Join([]string{parent, placeholder}, ",")
	if parent > placeholder {
		want = strings.Join([]string{placeholder, parent}, ",")
	}
	d := waitFor(t, "the stale and the finished agent to go", time.Minute, func() bool {
		return strings.Join(env.contoso.AgentNames(pool), ",") == want
	})
	holdAgents := func() {
		deadline := time.Now().Add(3 * 2 * time.Second) // three more sweeps
		for time.Now().Before(deadline) {
			if got := strings.Join(env.contoso.AgentNames(pool), ","); got != want {
				t.Fatalf("agents %s, want %s kept", got, want)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	holdAgents()
	if h := holder(); h != "replica-leader" {
		t.Fatalf("the Lease moved to %q", h)
	}
	if lineWith(called.Proc.Log, "deleted stale offline agent") != "" {
		t.Errorf("replica-called deleted agents without the Lease")
	}
	if lineWith(leader.Proc.Log, "registered placeholder agent") != "" {
		t.Errorf("replica-leader, which KEDA does not call, registered a placeholder")
	}
	record("11 replicas: KEDA calls replica-called, replica-leader holds the Lease; the stale and the finished agent removed in %s by replica-leader; placeholder %s and parent %s kept for three more sweeps",
		d.Round(100*time.Millisecond), placeholder, parent)
}

// Scenario 12: `helm upgrade` of a pool while one of its Jobs runs a
// pipeline job. With the chart's gradual rollout the running Job is left
// to finish, and new Jobs use the new template; with KEDA's immediate
// rollout (the control) the running Job is deleted.
func TestChartUpgradeKeepsRunningJobs(t *testing.T) {
	ns := "e2e-upgrade"
	upgradeOnce := func(release, pool, strategy string) (kept bool, newLabel string) {
		t.Helper()
		id := env.contoso.AddPool(pool)
		vals := poolValues("contoso", pool, linuxCaps)
		vals["scaledJob"].(map[string]any)["rollout"] = map[string]any{"strategy": strategy}
		helmInstall(t, "azdo-agent-pool", ns, release, vals)
		waitReconciled(t, ns, release)
		env.contoso.QueueJob(id, linuxJob)
		waitJobs(t, ns, release, 1, appear)
		running := jobs(t, ns, release)[0].Name

		vals["podLabels"] = map[string]any{"template": "v2"}
		helmUpgrade(t, "azdo-agent-pool", ns, release, vals)
		waitFor(t, "KEDA to reconcile the new generation", time.Minute, func() bool {
			sj := scaledJobStatus(t, ns, release)
			ready := sj.Status.Conditions.GetReadyCondition()
			return sj.Generation > 1 && ready.IsTrue()
		})
		time.Sleep(3 * pollingInterval)
		kept = slices.ContainsFunc(jobs(t, ns, release), func(j batchv1.Job) bool { return j.Name == running && !finished(j) })
		env.contoso.QueueJob(id, linuxJob)
		waitFor(t, "a Job for the new job", appear+5*time.Second, func() bool {
			for _, j := range jobs(t, ns, release) {
				if j.Name != running {
					newLabel = j.Spec.Template.Labels["template"]
					return true
				}
			}
			return false
		})
		return kept, newLabel
	}
	kept, label := upgradeOnce("gradual", "upgrade-gradual", "gradual")
	if !kept {
		t.Fatal("gradual: the upgrade deleted the Job of a running pipeline job")
	}
	if label != "v2" {
		t.Fatalf("gradual: the new Job's template has label %q, want the upgraded v2", label)
	}
	for _, j := range jobs(t, ns, "gradual") {
		completeJob(t, j) // the running pipeline job ends: its Job completes normally
	}
	keptImmediate, _ := upgradeOnce("immediate", "upgrade-immediate", "immediate")
	if keptImmediate {
		t.Fatal("control: KEDA's immediate rollout kept the running Job, so this test could not tell the strategies apart")
	}
	record("12 upgrade: with rollout gradual the running Job survived helm upgrade and a new job got a Job from the new template; the control with immediate lost its running Job")
}

// Scenario 13 (issue #22 a and d): a scaler with --read-cluster serves two
// namespaces that both install the pool chart as release linux-agents on
// one pool, so both ScaledJobs, and every agent pod, have the same names.
// team-a's pods run 3 long jobs; then team-b, with priority 1, gets 2 new
// jobs. Pod identity gives team-a its 3 running jobs and team-b the 2
// waiting ones: exactly one Job per queued job in both namespaces. (By name
// shape, team-b, first by priority, was credited with team-a's running jobs
// too and started 3 idle pods.) A call for a ScaledJob that does not exist
// is refused and registers no placeholder.
func TestReadClusterSameReleaseInTwoNamespaces(t *testing.T) {
	nsA, nsB := "e2e-cluster-a", "e2e-cluster-b"
	pool := env.contoso.AddPool("cluster")
	cs := startClusterScaler(t, "scaler-cluster")
	install := func(ns string, priority int) {
		vals := poolValues("contoso", "cluster", map[string]any{"capabilities": "Agent.OS=Linux,docker", "priority": priority})
		vals["scaler"].(map[string]any)["address"] = cs.Addr
		vals["azp"].(map[string]any)["idleTimeoutSeconds"] = 8 // a pod started for nothing leaves soon
		helmInstall(t, "azdo-agent-pool", ns, "linux-agents", vals)
		waitReconciled(t, ns, "linux-agents")
	}
	caps := map[string]map[string]string{"linux-agents": {"Agent.OS": "Linux", "docker": ""}}
	sim := &podSim{ns: nsA, more: []string{nsB}, pods: true, org: env.contoso, pool: pool, caps: caps,
		startDelay: time.Second, runFor: 25 * time.Second}
	startPodSim(t, sim)

	install(nsA, 0)
	for range 3 {
		env.contoso.QueueJob(pool, linuxJob)
	}
	waitFor(t, "team-a's 3 pods to take the 3 jobs", time.Minute, func() bool {
		_, _, ranBy := sim.counts()
		return len(ranBy) == 3
	})
	// The scaler answers from a snapshot up to --min-refresh-interval old: a
	// ScaledJob created in that window would still see the 3 jobs waiting.
	waitFor(t, "the scaler to see the 3 jobs running", time.Minute, func() bool {
		n, err := cs.Metric("azdo_keda_scaler_pool_jobs", `pool="cluster"`, `state="running"`)
		return err == nil && n == 3
	})
	install(nsB, 1)
	for range 2 {
		env.contoso.QueueJob(pool, linuxJob)
	}
	waitJobs(t, nsB, "linux-agents", 2, appear)
	holdJobs(t, nsB, "linux-agents", 2, 3*pollingInterval) // not 5: team-a's running jobs are not team-b's
	holdJobs(t, nsA, "linux-agents", 3, pollingInterval)
	waitFor(t, "every job to finish and every pod to leave", 3*time.Minute, func() bool {
		return len(env.contoso.UnfinishedJobs(pool)) == 0 && !sim.busy()
	})
	a, b := len(jobs(t, nsA, "linux-agents")), len(jobs(t, nsB, "linux-agents"))
	created, idle, _ := sim.counts()
	if a != 3 || b != 2 || idle != 0 {
		t.Fatalf("Jobs: team-a %d for 3 jobs, team-b %d for 2 jobs (%d idle exits); want exactly 3 and 2, none idle", a, b, idle)
	}

	// A ScaledJob nobody created asks, with a template of its own.
	// With KEDA's own certificate: mutual TLS admits it, the scaler's own
	// check must refuse it.
	conn := dialAs(t, cs.Addr, credentials.NewTLS(kedaTLS(t)))
	defer conn.Close()
	before := placeholderAgents(pool)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := pb.NewExternalScalerClient(conn).GetMetricSpec(ctx, &pb.ScaledObjectRef{Namespace: "e2e-cluster-x", Name: "ghost",
		ScalerMetadata: map[string]string{"scalerAddress": cs.Addr, "poolName": "cluster", "organization": "contoso", "capabilities": "Agent.OS=Linux,ghost"}})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("a call for a ScaledJob that does not exist: %v, want NotFound", err)
	}
	holdFor := 3 * pollingInterval
	time.Sleep(holdFor) // the keeper acts within a second of any change to the triggers
	if after := placeholderAgents(pool); after != before {
		t.Fatalf("placeholders %s before the refused call, %s after", before, after)
	}
	record("13 --read-cluster, release linux-agents in 2 namespaces on one pool: team-a 3 Jobs for its 3 jobs, team-b 2 for its 2 "+
		"(%d Jobs for 5 jobs, %.2f per job, 0 idle); a call for a ScaledJob that does not exist: NotFound, placeholders unchanged (%s) after %s",
		created, float64(created)/5, before, holdFor)
}

// placeholderAgents lists a pool's placeholder agents.
func placeholderAgents(pool int) string {
	var out []string
	for _, n := range env.contoso.AgentNames(pool) {
		if strings.Contains(n, "-placeholder-") {
			out = append(out, n)
		}
	}
	return fmt.Sprint(out)
}

// Scenario 14 (issue #22 f): with --read-cluster the sweeper removes the
// agent of a ScaledJob's pod once the pod is deleted, and never a static
// agent, even one named exactly like a KEDA pod, however long offline.
func TestReadClusterSweeperIsExact(t *testing.T) {
	ns := "e2e-cluster-sweep"
	pool := env.contoso.AddPool("cluster-sweep")
	cs := startClusterScaler(t, "scaler-cluster-sweep", "--sweep-interval=1s", "--placeholders=false")
	vals := poolValues("contoso", "cluster-sweep", linuxCaps)
	vals["scaler"].(map[string]any)["address"] = cs.Addr
	helmInstall(t, "azdo-agent-pool", ns, "linux-agents", vals)
	waitReconciled(t, ns, "linux-agents")

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "linux-agents-x7k2p-b4c6d",
			Labels: map[string]string{"scaledjob.keda.sh/name": "linux-agents", "batch.kubernetes.io/job-name": "linux-agents-x7k2p"}},
		Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "agent", Image: "localhost/agent:sim"}}},
	}
	if err := env.kube.Create(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	longAgo := time.Now().Add(-48 * time.Hour)
	env.contoso.AddAgent(pool, fakeazdo.Agent{Name: pod.Name, StatusChangedOn: longAgo}) // offline, its pod alive
	env.contoso.AddAgent(pool, fakeazdo.Agent{Name: "prod-agent-win10", StatusChangedOn: longAgo})
	env.contoso.AddAgent(pool, fakeazdo.Agent{Name: "linux-agents-q9w8e-r5t6y", StatusChangedOn: longAgo}) // pod-shaped, no such pod

	// The ScaledJob's pool is swept (every sweep); with its pod alive, nothing goes.
	waitFor(t, "a sweep of the pool", time.Minute, func() bool {
		kept, err1 := cs.Metric("azdo_keda_scaler_sweeper_agents_kept_total", `pool="cluster-sweep"`)
		deleted, err2 := cs.Metric("azdo_keda_scaler_sweeper_agents_deleted_total", `pool="cluster-sweep"`)
		return err1 == nil && err2 == nil && kept+deleted >= 3 // one decision per agent
	})
	if got := fmt.Sprint(env.contoso.AgentNames(pool)); got != "[linux-agents-q9w8e-r5t6y linux-agents-x7k2p-b4c6d prod-agent-win10]" {
		t.Fatalf("after a sweep with the pod alive: agents %s, want all three", got)
	}
	if err := env.kube.Delete(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	d := waitFor(t, "the agent of the deleted pod to be removed", time.Minute, func() bool {
		return !slices.Contains(env.contoso.AgentNames(pool), pod.Name)
	})
	kept, _ := cs.Metric("azdo_keda_scaler_sweeper_agents_kept_total", `pool="cluster-sweep"`, `reason="not-a-pod"`)
	time.Sleep(3 * time.Second) // three more sweeps
	if got := fmt.Sprint(env.contoso.AgentNames(pool)); got != "[linux-agents-q9w8e-r5t6y prod-agent-win10]" {
		t.Fatalf("agents left: %s, want the two static ones", got)
	}
	record("14 --read-cluster sweeper: the agent of a deleted pod removed %s after the pod was deleted (1s sweeps); "+
		"a static agent and a pod-shaped agent of no pod, offline 48h, kept through %v not-a-pod decisions and 3 more sweeps",
		d.Round(100*time.Millisecond), kept)
}

// Scenario 15 (issue #22 b): two scaler replicas, and KEDA's calls split
// between them: ScaledJob plain points at one replica's address, docker at
// the other's (per-team TLS material or a mesh balancing per request does
// the same). Both read every ScaledJob that points at either address, as
// every replica of the chart shares its Service's names, so each routes
// among both: one Job per job. (Learning from calls, the docker replica
// would count the plain jobs too.)
func TestReadClusterTwoReplicasSplitCalls(t *testing.T) {
	ns := "e2e-cluster-replicas"
	pool := env.contoso.AddPool("cluster-replicas")
	r1 := startClusterScaler(t, "scaler-replica-1")
	r2 := startClusterScaler(t, "scaler-replica-2", "--scaler-address="+r1.Addr)
	r1.Proc.Stop(10 * time.Second) // now that r2's address is known, r1 learns it too
	r1.args = append(r1.args, "--scaler-address="+r2.Addr)
	if err := r1.Start(); err != nil {
		t.Fatal(err)
	}
	caps := map[string]map[string]string{}
	for _, tpl := range []struct{ name, caps, addr string }{{"plain", "Agent.OS=Linux", r1.Addr}, {"docker", "Agent.OS=Linux,docker", r2.Addr}} {
		vals := poolValues("contoso", "cluster-replicas", map[string]any{"capabilities": tpl.caps})
		vals["scaler"].(map[string]any)["address"] = tpl.addr
		vals["azp"].(map[string]any)["idleTimeoutSeconds"] = 8
		helmInstall(t, "azdo-agent-pool", ns, tpl.name, vals)
		caps[tpl.name] = map[string]string{}
		for _, c := range strings.Split(tpl.caps, ",") {
			k, v, _ := strings.Cut(c, "=")
			caps[tpl.name][k] = v
		}
	}
	waitReconciled(t, ns, "plain", "docker")
	sim := &podSim{ns: ns, pods: true, org: env.contoso, pool: pool, caps: caps, startDelay: time.Second, runFor: 3 * time.Second}
	startPodSim(t, sim)
	plainJob := fakeazdo.Job{Demands: []string{"Agent.OS -equals Linux"}}
	for _, stage := range []struct {
		job fakeazdo.Job
		n   int
	}{{plainJob, 3}, {linuxJob, 2}} {
		for range stage.n {
			env.contoso.QueueJob(pool, stage.job)
		}
		waitFor(t, "every job finished and every pod gone", 2*time.Minute, func() bool {
			return len(env.contoso.UnfinishedJobs(pool)) == 0 && !sim.busy()
		})
	}
	created, idle, ranBy := sim.counts()
	plain, docker := len(jobs(t, ns, "plain")), len(jobs(t, ns, "docker"))
	if created != 5 || idle != 0 || plain != 3 || docker != 2 {
		t.Fatalf("%d Jobs for 5 jobs (plain %d for 3, docker %d for 2, %d idle exits); want exactly 3 and 2", created, plain, docker, idle)
	}
	for req, sj := range ranBy {
		want := "plain"
		if len(env.contoso.JobDemands(req)) == 2 {
			want = "docker"
		}
		if sj != want {
			t.Errorf("job %d ran on a %s pod, want %s", req, sj, want)
		}
	}
	// Every replica answers the same (issue #26): each reads every ScaledJob
	// and so polls every pool they use, whichever replica KEDA calls; a third
	// replica that KEDA never calls shows it too. A job no template accepts
	// stays put, so all three explain it alike.
	r3 := startClusterScaler(t, "scaler-replica-3", "--scaler-address="+r1.Addr, "--scaler-address="+r2.Addr)
	fpga := env.contoso.QueueJob(pool, fakeazdo.Job{Demands: []string{"Agent.OS -equals Linux", "fpga"}})
	explain := func(s *Scaler) map[uint64]string {
		page := s.jobsPage("cluster-replicas")
		if page == nil {
			return nil
		}
		out := map[uint64]string{}
		for _, p := range page.Pools {
			for _, j := range p.Jobs {
				out[j.ID] = j.Reason + ": " + j.Why
			}
		}
		return out
	}
	waitFor(t, "every replica to explain the job no template accepts", 30*time.Second, func() bool {
		return explain(r1)[fpga] != "" && explain(r2)[fpga] != "" && explain(r3)[fpga] != ""
	})
	one, two, three := explain(r1), explain(r2), explain(r3)
	if !maps.Equal(one, two) || !maps.Equal(one, three) || !strings.HasPrefix(one[fpga], "no-trigger-accepts: ") || !strings.Contains(one[fpga], "fpga") {
		t.Errorf("the replicas explain the pool differently:\n%s: %v\n%s: %v\n%s (not called by KEDA): %v", r1.Name, one, r2.Name, two, r3.Name, three)
	}
	if calls, err := r3.Metric("grpc_server_handled_total", `grpc_method="GetMetrics"`); err != nil || calls != 0 {
		t.Errorf("KEDA called the third replica (%v GetMetrics, %v): the check above proves nothing", calls, err)
	}
	if err := env.contoso.FinishJob(fpga, "canceled"); err != nil {
		t.Fatal(err)
	}
	record("15 --read-cluster, 2 replicas, plain's calls to one and docker's to the other: 3 plain jobs -> 3 plain Jobs, 2 docker jobs -> 2 docker Jobs (1.00 per job, 0 idle); all 3 replicas (one never called by KEDA) explain a job no template accepts alike: %s", one[fpga])
}

// Scenario 16 (issue #22 e): a ScaledJob deleted while its jobs wait: they
// are counted by the other template that can run them at once, and KEDA
// makes its Jobs within a poll and a refresh.
func TestReadClusterDeletedScaledJobsJobsMove(t *testing.T) {
	ns := "e2e-cluster-delete"
	pool := env.contoso.AddPool("cluster-delete")
	cs := startClusterScaler(t, "scaler-cluster-delete")
	for _, tpl := range []struct{ name, caps string }{{"small", "Agent.OS=Linux"}, {"big", "Agent.OS=Linux,docker"}} {
		vals := poolValues("contoso", "cluster-delete", map[string]any{"capabilities": tpl.caps})
		vals["scaler"].(map[string]any)["address"] = cs.Addr
		helmInstall(t, "azdo-agent-pool", ns, tpl.name, vals)
	}
	waitReconciled(t, ns, "small", "big")
	plainJob := fakeazdo.Job{Demands: []string{"Agent.OS -equals Linux"}}
	env.contoso.QueueJob(pool, plainJob)
	env.contoso.QueueJob(pool, plainJob)
	waitJobs(t, ns, "small", 2, appear) // no pods here: the jobs keep waiting
	holdJobs(t, ns, "big", 0, pollingInterval)
	sj := &kedav1alpha1.ScaledJob{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "small"}}
	if err := env.kube.Delete(context.Background(), sj); err != nil {
		t.Fatal(err)
	}
	d := waitJobs(t, ns, "big", 2, appear)
	record("16 --read-cluster, ScaledJob small deleted while its 2 jobs wait: big has 2 Jobs for them %s later (limit %s)",
		d.Round(100*time.Millisecond), appear)
}

// Scenario 17 (issue #22 c): a template whose Jobs cannot create pods (a
// ResourceQuota of 0 pods in its namespace): after --stall-grace its
// waiting job is counted by the other template that can run it, which
// runs it; the stall is a metric and a log line with the cause.
func TestReadClusterStalledTemplate(t *testing.T) {
	nsBroken, nsGood := "e2e-cluster-stall-a", "e2e-cluster-stall-b"
	pool := env.contoso.AddPool("cluster-stall")
	grace := 5 * time.Second
	cs := startClusterScaler(t, "scaler-cluster-stall", "--stall-grace="+grace.String())
	install := func(ns, name, caps string) {
		vals := poolValues("contoso", "cluster-stall", map[string]any{"capabilities": caps})
		vals["scaler"].(map[string]any)["address"] = cs.Addr
		helmInstall(t, "azdo-agent-pool", ns, name, vals)
	}
	install(nsBroken, "linux", "Agent.OS=Linux") // fewest capabilities: routing prefers it
	install(nsGood, "docker", "Agent.OS=Linux,docker")
	quota := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Namespace: nsBroken, Name: "no-pods"},
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("0")}}}
	if err := env.kube.Create(context.Background(), quota); err != nil {
		t.Fatal(err)
	}
	// The tier has no ResourceQuota controller: fill in the status it would,
	// so that admission enforces the quota, and check that it does.
	quota.Status = corev1.ResourceQuotaStatus{Hard: quota.Spec.Hard, Used: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("0")}}
	if err := env.kube.Status().Update(context.Background(), quota); err != nil {
		t.Fatal(err)
	}
	probe := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: nsBroken, Name: "quota-probe"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "localhost/agent:sim"}}}}
	if err := env.kube.Create(context.Background(), probe); err == nil {
		t.Fatal("the ResourceQuota of 0 pods admitted a pod")
	}
	waitReconciled(t, nsBroken, "linux")
	waitReconciled(t, nsGood, "docker")
	caps := map[string]map[string]string{"linux": {"Agent.OS": "Linux"}, "docker": {"Agent.OS": "Linux", "docker": ""}}
	sim := &podSim{ns: nsBroken, more: []string{nsGood}, pods: true, org: env.contoso, pool: pool, caps: caps,
		startDelay: time.Second, runFor: 2 * time.Second}
	startPodSim(t, sim)

	req := env.contoso.QueueJob(pool, fakeazdo.Job{Demands: []string{"Agent.OS -equals Linux"}})
	queued := time.Now()
	waitJobs(t, nsBroken, "linux", 1, appear)
	d := waitJobs(t, nsGood, "docker", 1, grace+2*appear)
	waitFor(t, "the job to finish on a docker pod", time.Minute, func() bool {
		_, _, ranBy := sim.counts()
		return ranBy[req] == "docker"
	})
	stalled, err := cs.Metric("azdo_keda_scaler_trigger_stalled", `scaledjob="linux"`, `scaledjob_namespace="`+nsBroken+`"`)
	if err != nil || stalled != 1 {
		t.Fatalf("azdo_keda_scaler_trigger_stalled for the broken template: %v (%v), want 1", stalled, err)
	}
	line := lineWith(cs.Proc.Log, "cannot start", nsBroken+"/linux", "has no pod")
	if line == "" {
		t.Fatal("no log line says why the broken template is stalled")
	}
	var event string
	waitFor(t, "an Event on the stalled ScaledJob", 30*time.Second, func() bool {
		var l corev1.EventList
		if err := env.kube.List(context.Background(), &l, ctrlclient.InNamespace(nsBroken)); err != nil {
			return false
		}
		for _, e := range l.Items {
			if e.InvolvedObject.Kind == "ScaledJob" && e.InvolvedObject.Name == "linux" && e.Reason == "AgentPodsCannotStart" &&
				e.Type == corev1.EventTypeWarning && strings.Contains(e.Message, "has no pod") {
				event = e.Reason + ": " + e.Message
				return true
			}
		}
		return false
	})
	sim.mu.Lock()
	refused := len(sim.refused)
	sim.mu.Unlock()
	if refused == 0 {
		t.Fatal("the quota refused no pod: the scenario did not make a broken template")
	}
	record("17 --read-cluster, stalled template (ResourceQuota pods: 0, %d pods refused): its job counted by the other template, "+
		"whose Job appeared %s after the broken template's (%s after queueing; --stall-grace %s), and ran there; trigger_stalled 1; Event %q",
		refused, d.Round(100*time.Millisecond), time.Since(queued).Round(100*time.Millisecond), grace, cut(event, 160))
}

// cut shortens a text for the summary.
func cut(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// startClusterScaler starts a scaler with --read-cluster (its own address
// as --scaler-address, the tier's kubeconfig) for the test's length.
func startClusterScaler(t *testing.T, name string, args ...string) *Scaler {
	t.Helper()
	s, err := StartScaler(name, env.cluster.LogDir, append([]string{"--read-cluster"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Proc.Stop(10 * time.Second) })
	return s
}
