package service_test

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	pb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/config"
)

const pat = "s3cr3t-pat-value-do-not-log"

// mixedPool queues jobs of every kind on a new pool "mixed".
func mixedPool(org *fakeazdo.Org) int {
	pool := org.AddPool("mixed")
	linuxDocker := []string{"Agent.OS -equals Linux", "docker", "Agent.Version -gtVersion 3.220.0"}
	for i := 0; i < 3; i++ {
		org.QueueJob(pool, fakeazdo.Job{Demands: linuxDocker})
	}
	org.QueueJob(pool, fakeazdo.Job{Demands: []string{"Agent.OS -equals Linux"}})
	org.QueueJob(pool, fakeazdo.Job{Demands: []string{"Agent.OS -equals Windows_NT"}})
	org.QueueJob(pool, fakeazdo.Job{Demands: []string{"Agent.OS -equals Windows_NT", "msbuild"}})
	org.QueueJob(pool, fakeazdo.Job{Demands: []string{"Agent.OS -equals Linux", "docker", "cuda -gtVersion 12.0"}})
	org.QueueJob(pool, fakeazdo.Job{}) // no demands: any agent can run it
	return pool
}

// Each filter on its own (routing: shared, as KEDA's built-in counts):
// Azure Pipelines' demand rules for capabilities, KEDA's string rules for
// demands.
func TestFilterSemanticsShared(t *testing.T) {
	e, orgs := newEnv(t, envOptions{}, orgSpec{"contoso", pat})
	mixedPool(orgs["contoso"])
	cases := []struct {
		name string
		md   map[string]string
		want float64
	}{
		{"no filter counts the whole pool", map[string]string{"poolName": "mixed"}, 8},
		{"linux with docker", map[string]string{"poolName": "mixed", "capabilities": "Agent.OS=Linux,docker"}, 5},
		{"linux without docker", map[string]string{"poolName": "mixed", "capabilities": "Agent.OS=linux"}, 2},
		{"windows with msbuild", map[string]string{"poolName": "mixed", "capabilities": "Agent.OS=Windows_NT,msbuild=C:\\msbuild.exe"}, 3},
		{"gpu with cuda 12.4", map[string]string{"poolName": "mixed", "capabilities": "Agent.OS=Linux,docker,cuda=12.4"}, 6},
		{"gpu with old cuda", map[string]string{"poolName": "mixed", "capabilities": "Agent.OS=Linux,docker,cuda=11.8"}, 5},
		{"pinned old agent", map[string]string{"poolName": "mixed", "capabilities": "Agent.OS=Linux,docker,Agent.Version=2.200.0"}, 2},
		{"KEDA demands, subset semantics", map[string]string{"poolName": "mixed", "demands": "Agent.OS -equals Linux,docker"}, 5},
		{"KEDA demands, requireAll", map[string]string{"poolName": "mixed", "demands": "Agent.OS -equals Linux,docker", "requireAllDemands": "true"}, 3},
		{"KEDA demands, ignore others", map[string]string{"poolName": "mixed", "demands": "docker", "requireAllDemandsAndIgnoreOthers": "true"}, 4},
		{"KEDA demands, case", map[string]string{"poolName": "mixed", "demands": "agent.os -equals windows_nt", "caseInsensitiveDemandsProcessing": "true"}, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.t = t
			c.md["routing"] = "shared"
			e.waitMetric(c.md, c.want)
		})
	}
}

// The same pool served by four ScaledJobs (exclusive routing, the
// default): every job counts once, for the least capable template that can
// run it, and the counts add up to the jobs some template can run.
func TestOverlappingScaledJobsRouted(t *testing.T) {
	e, orgs := newEnv(t, envOptions{}, orgSpec{"contoso", pat})
	mixedPool(orgs["contoso"])
	scaledJobs := []struct {
		name string
		md   map[string]string
		want float64
	}{
		{"linux", map[string]string{"poolName": "mixed", "capabilities": "Agent.OS=Linux"}, 2},                // plain + no demands
		{"linux-docker", map[string]string{"poolName": "mixed", "capabilities": "Agent.OS=Linux,docker"}, 3},  // docker jobs
		{"gpu", map[string]string{"poolName": "mixed", "capabilities": "Agent.OS=Linux,docker,cuda=12.4"}, 1}, // the cuda job
		{"windows", map[string]string{"poolName": "mixed", "capabilities": "Agent.OS=Windows_NT,msbuild"}, 2}, // both Windows jobs
	}
	// KEDA polls each ScaledJob once before the counts settle (the order
	// does not matter once every trigger has asked).
	for i := len(scaledJobs) - 1; i >= 0; i-- {
		if _, err := e.metricOf(scaledJobs[i].name, scaledJobs[i].md); err != nil {
			t.Fatal(err)
		}
	}
	sum := 0.0
	for _, sj := range scaledJobs {
		e.waitMetricOf(sj.name, sj.md, sj.want)
		sum += sj.want
	}
	if sum != 8 {
		t.Fatalf("counts add up to %v for 8 jobs", sum)
	}
}

func TestQueuedRunningFinished(t *testing.T) {
	e, orgs := newEnv(t, envOptions{}, orgSpec{"contoso", pat})
	org := orgs["contoso"]
	pool := org.AddPool("p")
	queued := org.QueueJob(pool, fakeazdo.Job{})
	running := org.QueueJob(pool, fakeazdo.Job{})
	finished := org.QueueJob(pool, fakeazdo.Job{})
	onStatic := org.QueueJob(pool, fakeazdo.Job{})
	// "running" runs on a pod of ScaledJob team-a/agents (named after the
	// pod, as KEDA names it), "onStatic" on a static agent.
	own := org.AddAgent(pool, fakeazdo.Agent{Name: "agents-x7k2p-b4c6d", Online: true})
	static := org.AddAgent(pool, fakeazdo.Agent{Name: "build-vm-1", Online: true})
	for job, agent := range map[uint64]int{running: own, finished: own, onStatic: static} {
		if err := org.AssignJob(job, agent); err != nil {
			t.Fatal(err)
		}
		_ = org.ReceiveJob(job)
	}
	_ = org.FinishJob(finished, "failed")
	waitingOnly := map[string]string{"poolName": "p", "scaleOnInFlight": "false", "routing": "shared"}

	e.waitMetric(map[string]string{"poolName": "p"}, 2) // queued + its own running job
	e.waitMetric(waitingOnly, 1)
	_ = org.FinishJob(queued, "canceled")
	e.waitMetric(map[string]string{"poolName": "p"}, 1)
	e.waitMetric(waitingOnly, 0)
	_ = org.FinishJob(running, "succeeded")
	e.waitMetric(map[string]string{"poolName": "p"}, 0)
	_ = org.FinishJob(onStatic, "succeeded")

	// Activation: IsActive is true only above activationTargetPipelinesQueueLength.
	for i := 0; i < 2; i++ {
		org.QueueJob(pool, fakeazdo.Job{})
	}
	e.waitMetric(map[string]string{"poolName": "p"}, 2)
	for _, c := range []struct {
		activation string
		want       bool
	}{{"0", true}, {"1", true}, {"2", false}} {
		a, err := e.client.IsActive(context.Background(), ref(map[string]string{"poolName": "p", "activationTargetPipelinesQueueLength": c.activation}))
		if err != nil || a.Result != c.want {
			t.Errorf("IsActive(activation %s) = %v, %v; want %v", c.activation, a, err, c.want)
		}
	}
}

func TestParentUsesMatchedAgents(t *testing.T) {
	e, orgs := newEnv(t, envOptions{}, orgSpec{"contoso", pat})
	org := orgs["contoso"]
	pool := org.AddPool("p")
	org.AddAgent(pool, fakeazdo.Agent{Name: "linux-template", Capabilities: map[string]string{"Agent.OS": "Linux", "docker": ""}})
	org.AddAgent(pool, fakeazdo.Agent{Name: "windows-template", Capabilities: map[string]string{"Agent.OS": "Windows_NT"}})
	org.QueueJob(pool, fakeazdo.Job{Demands: []string{"Agent.OS -equals Linux", "docker"}})
	org.QueueJob(pool, fakeazdo.Job{Demands: []string{"Agent.OS -equals Linux"}})
	org.QueueJob(pool, fakeazdo.Job{Demands: []string{"Agent.OS -equals Windows_NT"}})
	org.QueueJob(pool, fakeazdo.Job{Demands: []string{"gpu"}}) // matches no agent

	e.waitMetric(map[string]string{"poolName": "p", "parent": "linux-template"}, 2)
	e.waitMetric(map[string]string{"poolName": "p", "parent": "windows-template"}, 1)
	e.waitMetric(map[string]string{"poolName": "p", "parent": "Linux-Template"}, 0) // exact, as KEDA
}

func TestTwoOrganizations(t *testing.T) {
	e, orgs := newEnv(t, envOptions{}, orgSpec{"contoso", pat}, orgSpec{"fabrikam", "other-" + pat})
	a := orgs["contoso"].AddPool("shared-name")
	b := orgs["fabrikam"].AddPool("shared-name")
	orgs["contoso"].QueueJob(a, fakeazdo.Job{})
	for i := 0; i < 3; i++ {
		orgs["fabrikam"].QueueJob(b, fakeazdo.Job{})
	}
	e.waitMetric(map[string]string{"poolName": "shared-name", "organization": "contoso"}, 1)
	e.waitMetric(map[string]string{"poolName": "shared-name", "organization": "fabrikam"}, 3)
	e.waitMetric(map[string]string{"poolName": "shared-name", "organizationURL": strings.ToUpper(e.fake.OrgURL("fabrikam")) + "/"}, 3)

	_, err := e.metric(map[string]string{"poolName": "shared-name"})
	expectCode(t, err, codes.InvalidArgument, `"organization"`, "2 organizations")
	_, err = e.metric(map[string]string{"poolName": "shared-name", "organizationURL": "https://dev.azure.com/evil"})
	expectCode(t, err, codes.InvalidArgument, `"organizationURL"`, "not the URL of a configured organization")

	// The metric names differ by organization and by filter.
	names := map[string]bool{}
	for _, md := range []map[string]string{
		{"poolName": "shared-name", "organization": "contoso"},
		{"poolName": "shared-name", "organization": "fabrikam"},
		{"poolName": "shared-name", "organization": "fabrikam", "capabilities": "a"},
		{"poolName": "shared-name", "organization": "fabrikam", "scaleOnInFlight": "false"},
	} {
		spec, err := e.client.GetMetricSpec(context.Background(), ref(md))
		if err != nil {
			t.Fatal(err)
		}
		names[spec.MetricSpecs[0].MetricName] = true
	}
	if len(names) != 4 {
		t.Fatalf("metric names are not unique: %v", names)
	}
}

func expectCode(t *testing.T, err error, code codes.Code, contains ...string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("error = %v, want code %v", err, code)
	}
	for _, c := range contains {
		if !strings.Contains(status.Convert(err).Message(), c) {
			t.Errorf("error message %q does not contain %q", status.Convert(err).Message(), c)
		}
	}
}

func TestMetadataErrors(t *testing.T) {
	e, orgs := newEnv(t, envOptions{cfg: func(c *config.File) {
		c.Organizations[0].Pools = []config.Pool{{Name: "restricted", AllowedNamespaces: []string{"team-b", "platform-*"}}}
	}}, orgSpec{"contoso", pat})
	orgs["contoso"].AddPool("p")
	orgs["contoso"].AddPool("restricted")
	cases := []struct {
		md       map[string]string
		code     codes.Code
		contains []string
	}{
		{map[string]string{}, codes.InvalidArgument, []string{`"poolName"`, "required"}},
		{map[string]string{"poolName": "p", "poolID": "1"}, codes.InvalidArgument, []string{`"poolID"`, "not both"}},
		{map[string]string{"poolName": " "}, codes.InvalidArgument, []string{`"poolName"`, "empty"}},
		{map[string]string{"poolID": "abc"}, codes.InvalidArgument, []string{`"poolID"`, "positive integer", `"abc"`}},
		{map[string]string{"poolID": "-3"}, codes.InvalidArgument, []string{`"poolID"`}},
		{map[string]string{"poolName": "p", "targetPipelinesQueueLength": "0"}, codes.InvalidArgument, []string{`"targetPipelinesQueueLength"`, ">= 1"}},
		{map[string]string{"poolName": "p", "targetPipelinesQueueLength": "x"}, codes.InvalidArgument, []string{`"targetPipelinesQueueLength"`}},
		{map[string]string{"poolName": "p", "activationTargetPipelinesQueueLength": "-1"}, codes.InvalidArgument, []string{`"activationTargetPipelinesQueueLength"`, ">= 0"}},
		{map[string]string{"poolName": "p", "scaleOnInFlight": "maybe"}, codes.InvalidArgument, []string{`"scaleOnInFlight"`, "true or false"}},
		{map[string]string{"poolName": "p", "jobsToFetch": "0"}, codes.InvalidArgument, []string{`"jobsToFetch"`}},
		{map[string]string{"poolName": "p", "fetchUnfinishedJobsOnly": "yes"}, codes.InvalidArgument, []string{`"fetchUnfinishedJobsOnly"`}},
		{map[string]string{"poolName": "p", "capabilities": "a", "demands": "b"}, codes.InvalidArgument, []string{"at most one of capabilities, demands and parent"}},
		{map[string]string{"poolName": "p", "parent": "x", "demands": "b"}, codes.InvalidArgument, []string{"at most one"}},
		{map[string]string{"poolName": "p", "capabilities": "a,,b"}, codes.InvalidArgument, []string{`"capabilities"`, "empty entry"}},
		{map[string]string{"poolName": "p", "capabilities": ""}, codes.InvalidArgument, []string{`"capabilities"`}},
		{map[string]string{"poolName": "p", "demands": ""}, codes.InvalidArgument, []string{`"demands"`, "empty"}},
		{map[string]string{"poolName": "p", "parent": ""}, codes.InvalidArgument, []string{`"parent"`, "empty"}},
		{map[string]string{"poolName": "p", "requireAllDemands": "true"}, codes.InvalidArgument, []string{`"requireAllDemands"`, "only applies together with demands"}},
		{map[string]string{"poolName": "p", "requireAllDemands": "perhaps", "demands": "a"}, codes.InvalidArgument, []string{`"requireAllDemands"`}},
		{map[string]string{"poolName": "p", "poolname": "p"}, codes.InvalidArgument, []string{`"poolname"`, `did you mean "poolName"`}},
		{map[string]string{"poolName": "p", "colour": "blue"}, codes.InvalidArgument, []string{`"colour"`, "unknown key"}},
		{map[string]string{"poolName": "p", "organization": "nope"}, codes.InvalidArgument, []string{`"organization"`, "not a configured organization"}},
		{map[string]string{"poolName": "p", "organizationURL": "http://elsewhere/contoso"}, codes.InvalidArgument, []string{`"organizationURL"`}},
		{map[string]string{"poolName": "p", "organizationURLFromEnv": "http://elsewhere/contoso"}, codes.InvalidArgument, []string{`"organizationURLFromEnv"`}},
		{map[string]string{"poolName": "nope"}, codes.NotFound, []string{"nope", "not found"}},
		{map[string]string{"poolID": "999"}, codes.NotFound, []string{"999"}},
		{map[string]string{"poolName": "restricted"}, codes.PermissionDenied, []string{`"team-a"`, "restricted"}},
	}
	for _, c := range cases {
		_, err := e.metric(c.md)
		if status.Code(err) != c.code {
			t.Errorf("%v: error = %v, want %v", c.md, err, c.code)
			continue
		}
		for _, s := range c.contains {
			if !strings.Contains(status.Convert(err).Message(), s) {
				t.Errorf("%v: message %q does not contain %q", c.md, status.Convert(err).Message(), s)
			}
		}
	}
	// A PAT that KEDA resolved from personalAccessTokenFromEnv is refused
	// without echoing it.
	_, err := e.metric(map[string]string{"poolName": "p", "personalAccessTokenFromEnv": pat})
	expectCode(t, err, codes.InvalidArgument, `"personalAccessTokenFromEnv"`)
	if strings.Contains(err.Error(), pat) {
		t.Fatal("the error echoes the PAT")
	}
	// IsActive validates the same way.
	_, err = e.client.IsActive(context.Background(), ref(map[string]string{"poolID": "x"}))
	expectCode(t, err, codes.InvalidArgument, `"poolID"`)
	// The allowed namespace passes.
	r := ref(map[string]string{"poolName": "restricted"})
	r.Namespace = "platform-ci"
	if _, err := e.client.IsActive(context.Background(), r); err != nil {
		t.Fatalf("allowed namespace: %v", err)
	}
}

func TestMetricSpec(t *testing.T) {
	e, orgs := newEnv(t, envOptions{}, orgSpec{"Contoso Org", pat})
	id := orgs["Contoso Org"].AddPool("p")
	spec, err := e.client.GetMetricSpec(context.Background(), ref(map[string]string{"poolName": "p", "targetPipelinesQueueLength": "3"}))
	if err != nil {
		t.Fatal(err)
	}
	s := spec.MetricSpecs[0]
	if len(spec.MetricSpecs) != 1 || s.TargetSizeFloat != 3 || s.TargetSize != 3 {
		t.Fatalf("spec = %v", spec)
	}
	if !regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`).MatchString(s.MetricName) || len(s.MetricName) > 63 {
		t.Fatalf("metric name %q breaks Kubernetes' name rules", s.MetricName)
	}
	if !strings.Contains(s.MetricName, fmt.Sprintf("pool%d", id)) {
		t.Errorf("metric name %q does not name the pool", s.MetricName)
	}
	// Same pool by id, same filter in another order: same metric.
	again, err := e.client.GetMetricSpec(context.Background(), ref(map[string]string{"poolID": fmt.Sprint(id), "targetPipelinesQueueLength": "3"}))
	if err != nil || again.MetricSpecs[0].MetricName != s.MetricName {
		t.Fatalf("by id: %v, %v; want %s", again, err, s.MetricName)
	}
	a, _ := e.client.GetMetricSpec(context.Background(), ref(map[string]string{"poolName": "p", "capabilities": "docker,Agent.OS=Linux"}))
	b, _ := e.client.GetMetricSpec(context.Background(), ref(map[string]string{"poolName": "p", "capabilities": "agent.os=Linux, docker"}))
	if a.MetricSpecs[0].MetricName != b.MetricSpecs[0].MetricName {
		t.Error("the same capabilities in another order must give the same metric")
	}
	// StreamMetricSpec sends the current spec at once.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	stream, err := e.client.StreamMetricSpec(ctx, ref(map[string]string{"poolName": "p", "targetPipelinesQueueLength": "3"}))
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil || first.MetricSpecs[0].MetricName != s.MetricName || first.MetricSpecs[0].TargetSizeFloat != 3 {
		t.Fatalf("StreamMetricSpec first message = %v, %v", first, err)
	}
}

func TestStreamIsActive(t *testing.T) {
	e, orgs := newEnv(t, envOptions{}, orgSpec{"contoso", pat})
	org := orgs["contoso"]
	pool := org.AddPool("p")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := e.client.StreamIsActive(ctx, ref(map[string]string{"poolName": "p"}))
	if err != nil {
		t.Fatal(err)
	}
	recv := func() bool {
		t.Helper()
		m, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return m.Result
	}
	if recv() {
		t.Fatal("an empty pool must be inactive at once")
	}
	job := org.QueueJob(pool, fakeazdo.Job{})
	if !recv() {
		t.Fatal("a queued job must make the stream say active")
	}
	_ = org.FinishJob(job, "succeeded")
	if recv() {
		t.Fatal("the finished job must make the stream say inactive")
	}
}

func TestStaleDataThenUnavailableThenRecovery(t *testing.T) {
	e, orgs := newEnv(t, envOptions{refresh: 50 * time.Millisecond, stale: 600 * time.Millisecond}, orgSpec{"contoso", pat})
	org := orgs["contoso"]
	pool := org.AddPool("p")
	for i := 0; i < 4; i++ {
		org.QueueJob(pool, fakeazdo.Job{})
	}
	md := map[string]string{"poolName": "p"}
	e.waitMetric(md, 4)

	for name, fault := range map[string]fakeazdo.Fault{
		"5xx burst":      {Endpoint: fakeazdo.JobRequests, Status: 503, Body: `{"message":"Service Unavailable"}`},
		"timeouts":       {Endpoint: fakeazdo.JobRequests, Delay: time.Second},
		"malformed JSON": {Endpoint: fakeazdo.JobRequests, Body: `{"count":4,"value":[{"requestId":`},
		"429":            {Endpoint: fakeazdo.JobRequests, Status: 429, RetryAfter: 1 * time.Second, Body: `{"message":"blocked"}`},
	} {
		t.Run(name, func(t *testing.T) {
			e.t = t
			e.fake.InjectFault(fault)
			// Right after the failure starts, the last good numbers are served.
			if got, err := e.metric(md); err != nil || got != 4 {
				t.Fatalf("during a short outage: %v, %v; want the last good 4", got, err)
			}
			// After stale-after: Unavailable with the cause, never a zero.
			err := e.waitCode(md, codes.Unavailable)
			if !strings.Contains(err.Error(), "no fresh data from Azure DevOps") {
				t.Errorf("Unavailable message lacks the cause: %v", err)
			}
			if _, err := e.client.IsActive(context.Background(), ref(md)); status.Code(err) != codes.Unavailable {
				t.Errorf("IsActive during the outage: %v", err)
			}
			e.fake.ClearFaults()
			org.QueueJob(pool, fakeazdo.Job{})
			e.waitMetric(md, 5)
			e.waitMetric(md, 5)
			_ = org.FinishJob(org.UnfinishedJobs(pool)[4], "succeeded")
			e.waitMetric(md, 4)
		})
	}
}

func TestOneAzureDevOpsCallPerPoolNotPerTrigger(t *testing.T) {
	refresh := 200 * time.Millisecond
	e, orgs := newEnv(t, envOptions{refresh: refresh}, orgSpec{"contoso", pat})
	org := orgs["contoso"]
	var ids []int
	for p := 0; p < 5; p++ {
		id := org.AddPool(fmt.Sprintf("pool-%d", p))
		ids = append(ids, id)
		org.QueueJob(id, fakeazdo.Job{Demands: []string{"Agent.OS -equals Linux"}})
	}
	// 50 triggers (10 ScaledJobs per pool, with different filters), polled
	// as KEDA would, many times per refresh interval. Each pool's one job
	// counts for exactly one of its ScaledJobs.
	type sj struct {
		name, pool string
		md         map[string]string
	}
	var triggers []sj
	for i := 0; i < 50; i++ {
		pool := fmt.Sprintf("pool-%d", i%5)
		md := map[string]string{"poolName": pool, "targetPipelinesQueueLength": fmt.Sprint(1 + i/5)}
		if i%2 == 0 {
			md["capabilities"] = "Agent.OS=Linux"
		}
		triggers = append(triggers, sj{fmt.Sprintf("sj-%02d", i), pool, md})
	}
	sums := func() map[string]float64 {
		out := map[string]float64{}
		for _, tr := range triggers {
			got, err := e.metricOf(tr.name, tr.md)
			if err != nil {
				t.Fatalf("metric: %v", err)
			}
			out[tr.pool] += got
		}
		return out
	}
	deadline := time.Now().Add(5 * time.Second)
	for s := sums(); len(s) != 5 || s["pool-0"] != 1 || s["pool-4"] != 1; s = sums() {
		if time.Now().After(deadline) {
			t.Fatalf("per-pool sums %v, want 1 each", s)
		}
	}
	e.fake.ResetCalls()
	start := time.Now()
	rounds := 0
	for time.Since(start) < 10*refresh {
		for p, n := range sums() {
			if n != 1 {
				t.Fatalf("%s: counts add up to %v for its one job", p, n)
			}
		}
		rounds++
	}
	elapsed := time.Since(start)
	maxPerPool := int(elapsed/refresh) + 2
	total := 0
	for _, id := range ids {
		n := e.fake.PoolCalls("contoso", fakeazdo.JobRequests, id)
		total += n
		if n < 1 || n > maxPerPool {
			t.Errorf("pool %d: %d job-request calls in %v (refresh %v), want 1..%d", id, n, elapsed, refresh, maxPerPool)
		}
	}
	if calls := e.fake.Calls("contoso", fakeazdo.Pools) + e.fake.Calls("contoso", fakeazdo.Pool); calls != 0 {
		t.Errorf("%d pool lookups while answering from memory, want 0", calls)
	}
	t.Logf("%d GetMetrics calls for 50 triggers answered with %d Azure DevOps calls on 5 pools", rounds*len(triggers)*2, total)
}

func TestIdlePollerStops(t *testing.T) {
	e, orgs := newEnv(t, envOptions{refresh: 20 * time.Millisecond, idle: 200 * time.Millisecond}, orgSpec{"contoso", pat})
	pool := orgs["contoso"].AddPool("p")
	e.waitMetric(map[string]string{"poolName": "p"}, 0)
	if len(e.reg.InUse()) != 1 {
		t.Fatalf("pollers = %v", e.reg.InUse())
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(e.reg.InUse()) != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if len(e.reg.InUse()) != 0 {
		t.Fatal("a poller nobody asked for did not stop")
	}
	before := e.fake.PoolCalls("contoso", fakeazdo.JobRequests, pool)
	time.Sleep(100 * time.Millisecond)
	if after := e.fake.PoolCalls("contoso", fakeazdo.JobRequests, pool); after != before {
		t.Fatalf("a stopped poller still calls Azure DevOps: %d -> %d", before, after)
	}
	// Asking again starts it again.
	orgs["contoso"].QueueJob(pool, fakeazdo.Job{})
	e.waitMetric(map[string]string{"poolName": "p"}, 1)
}

func TestPATNeverLogged(t *testing.T) {
	e, orgs := newEnv(t, envOptions{refresh: 20 * time.Millisecond, stale: 100 * time.Millisecond}, orgSpec{"contoso", pat})
	org := orgs["contoso"]
	pool := org.AddPool("p")
	org.QueueJob(pool, fakeazdo.Job{})
	md := map[string]string{"poolName": "p"}
	e.waitMetric(md, 1)
	e.fake.InjectFault(fakeazdo.Fault{Endpoint: fakeazdo.JobRequests, Status: 500, Body: `{"message":"failed for ` + pat + `"}`})
	e.waitCode(md, codes.Unavailable)
	org.SetPATs("another")
	e.fake.ClearFaults()
	e.waitCode(md, codes.Unavailable)
	logs := e.logs.String()
	if !strings.Contains(logs, "refreshing the pool's job requests failed") {
		t.Fatalf("the failures were not logged at all:\n%s", logs)
	}
	if strings.Contains(logs, pat) {
		t.Fatalf("the PAT appears in the logs")
	}
	if !strings.Contains(logs, "[REDACTED]") {
		t.Fatal("the server's message quoting the PAT was not redacted")
	}
}

func TestStreamEndsUnavailableWhenStale(t *testing.T) {
	e, orgs := newEnv(t, envOptions{refresh: 20 * time.Millisecond, stale: 200 * time.Millisecond}, orgSpec{"contoso", pat})
	pool := orgs["contoso"].AddPool("p")
	orgs["contoso"].QueueJob(pool, fakeazdo.Job{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := e.client.StreamIsActive(ctx, ref(map[string]string{"poolName": "p"}))
	if err != nil {
		t.Fatal(err)
	}
	if m, err := stream.Recv(); err != nil || !m.Result {
		t.Fatalf("first message %v, %v", m, err)
	}
	e.fake.InjectFault(fakeazdo.Fault{Endpoint: fakeazdo.JobRequests, Status: 502})
	var m *pb.IsActiveResponse
	for err == nil {
		m, err = stream.Recv()
		if err == nil && !m.Result {
			t.Fatal("the stream reported inactive from failing data")
		}
	}
	if status.Code(err) != codes.Unavailable || err == io.EOF {
		t.Fatalf("stream ended with %v, want Unavailable", err)
	}
}

// Azure DevOps stops answering: the first Unavailable KEDA gets already
// names the timeout, whether the pool had good data before or never had.
func TestHangingAzureDevOpsNamesTheTimeout(t *testing.T) {
	e, orgs := newEnv(t, envOptions{refresh: 100 * time.Millisecond, stale: 1500 * time.Millisecond}, orgSpec{"contoso", pat})
	org := orgs["contoso"]
	pool := org.AddPool("p")
	org.QueueJob(pool, fakeazdo.Job{})
	md := map[string]string{"poolName": "p"}
	e.waitMetric(md, 1)
	e.fake.InjectFault(fakeazdo.Fault{Endpoint: fakeazdo.JobRequests, Delay: time.Minute})
	err := e.waitCode(md, codes.Unavailable)
	if !strings.Contains(err.Error(), "timed out") {
		t.Errorf("the first Unavailable after good data: %v", err)
	}

	org.AddPool("never")
	_, err = e.metric(map[string]string{"poolName": "never"})
	expectCode(t, err, codes.Unavailable, "pool never", "timed out")
}

// Oversized metadata is InvalidArgument naming the key and the limit,
// echoes at most a short prefix, and reaches Azure DevOps not at all.
func TestMetadataBounds(t *testing.T) {
	e, orgs := newEnv(t, envOptions{}, orgSpec{"contoso", pat})
	orgs["contoso"].AddPool("p")
	huge := strings.Repeat("x", 1<<20)
	var manyCaps []string
	for i := range 101 {
		manyCaps = append(manyCaps, fmt.Sprintf("cap%d", i))
	}
	many := map[string]string{"poolName": "p"}
	for i := range 70 {
		many[fmt.Sprintf("k%d", i)] = "v"
	}
	cases := []struct {
		md       map[string]string
		contains []string
	}{
		{map[string]string{"poolName": huge}, []string{`"poolName"`, "at most 256"}},
		{map[string]string{"poolName": "p", "capabilities": huge}, []string{`"capabilities"`, "at most 8192"}},
		{map[string]string{"poolName": "p", "capabilities": strings.Join(manyCaps, ",")}, []string{`"capabilities"`, "101 entries; at most 100"}},
		{map[string]string{"poolName": "p", "demands": huge}, []string{`"demands"`, "at most 8192"}},
		{map[string]string{"poolName": "p", "parent": huge}, []string{`"parent"`, "at most 256"}},
		{map[string]string{"poolName": "p", "organization": huge}, []string{`"organization"`, "at most 256"}},
		{map[string]string{"poolName": "p", huge: "v"}, []string{"longer than 128 bytes"}},
		{many, []string{"at most 64"}},
	}
	e.fake.ResetCalls()
	for _, c := range cases {
		_, err := e.metric(c.md)
		expectCode(t, err, codes.InvalidArgument, c.contains...)
		if len(err.Error()) > 400 {
			t.Errorf("a %d-byte error for %v...", len(err.Error()), c.contains)
		}
	}
	if n := e.fake.Calls("contoso", fakeazdo.Any); n != 0 {
		t.Fatalf("%d calls reached Azure DevOps for invalid metadata", n)
	}
	// Values quoted in errors are cut.
	_, err := e.metric(map[string]string{"poolName": "p", "organization": strings.Repeat("o", 200)})
	expectCode(t, err, codes.InvalidArgument, `"organization"`, "…(200 bytes)")
	if strings.Contains(err.Error(), strings.Repeat("o", 65)) {
		t.Errorf("more than 64 bytes of the value echoed: %v", err)
	}
}

// 200 concurrent GetMetrics for one stale pool (200 ScaledJobs polled at
// once) make exactly one job-requests call, and all of them see its
// answer: the job queued after the last refresh.
func TestConcurrentCallsShareOneDemandRefresh(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Now())
	e, orgs := newEnv(t, envOptions{refresh: time.Hour, stale: 2 * time.Hour, minRefresh: 2 * time.Second, now: clk.Now}, orgSpec{"contoso", pat})
	org := orgs["contoso"]
	pool := org.AddPool("p")
	md := map[string]string{"poolName": "p", "routing": "shared"}
	e.waitMetricOf("sj-0", md, 0)
	org.QueueJob(pool, fakeazdo.Job{})
	clk.Step(3 * time.Second) // older than --min-refresh-interval
	e.fake.ResetCalls()
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[float64]int{}
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := e.metricOf(fmt.Sprintf("sj-%d", i), md)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			seen[v]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if n := e.fake.PoolCalls("contoso", fakeazdo.JobRequests, pool); n != 1 {
		t.Fatalf("200 concurrent calls made %d job-requests calls, want 1", n)
	}
	if seen[1] != 200 {
		t.Fatalf("answers %v: every call must see the job the refresh found", seen)
	}
}

// A 429 with Retry-After: no demand refresh reaches that organization
// until it expires, however stale the snapshot and however many calls.
func TestRetryAfterKeepsDemandRefreshesOff(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Now())
	// --stale-after 4s: a refresh retries within 2s, shorter than the
	// 3s pause, so it gives up at once and no refresh is in flight.
	e, orgs := newEnv(t, envOptions{refresh: time.Hour, stale: 4 * time.Second, minRefresh: 2 * time.Second, now: clk.Now}, orgSpec{"contoso", pat})
	pool := orgs["contoso"].AddPool("p")
	md := map[string]string{"poolName": "p"}
	e.waitMetric(md, 0)
	e.fake.InjectFault(fakeazdo.Fault{Endpoint: fakeazdo.JobRequests, Status: 429, RetryAfter: 3 * time.Second, Times: 1,
		Body: `{"message":"Request was blocked"}`})
	clk.Step(3 * time.Second)
	e.fake.ResetCalls()
	_, _ = e.metric(md) // the demand refresh meets the 429
	pausedAt := time.Now()
	if n := e.fake.PoolCalls("contoso", fakeazdo.JobRequests, pool); n != 1 {
		t.Fatalf("%d job-requests calls, want the one answered 429", n)
	}
	for time.Since(pausedAt) < 2500*time.Millisecond {
		clk.Step(2500 * time.Millisecond) // stale again on every call
		_, _ = e.metric(md)
		if n := e.fake.PoolCalls("contoso", fakeazdo.JobRequests, pool); n != 1 {
			t.Fatalf("%d job-requests calls during the Retry-After pause, want only the one answered 429\n%s", n, e.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(time.Until(pausedAt.Add(3200 * time.Millisecond)))
	clk.Step(2500 * time.Millisecond)
	if got, err := e.metric(md); err != nil || got != 0 {
		t.Fatalf("after the pause: %v, %v", got, err)
	}
	if n := e.fake.PoolCalls("contoso", fakeazdo.JobRequests, pool); n != 2 {
		t.Fatalf("%d job-requests calls: after the pause a call must refresh again", n)
	}
}
