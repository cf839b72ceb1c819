package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	pb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/routing"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/status"
)

// The explain API and command, against the fake Azure DevOps, give each
// job's reason in words, with its pipeline, run and link: counted by a
// ScaledJob; held behind an older job; no template offers a demand (named);
// waiting for a parallel job. The filters narrow to a namespace and a run.
func TestExplainAPIAndCommand(t *testing.T) {
	fake, org, pool := startFake(t, testPAT)
	web := org.QueueJob(pool, fakeazdo.Job{Pipeline: "web-ci", Name: "build", Demands: []string{"Agent.OS -equals Linux"}})
	fpga := org.QueueJob(pool, fakeazdo.Job{Pipeline: "fpga-synth", Name: "synth", Demands: []string{"Agent.OS -equals Linux", "fpga"}})
	img := org.QueueJob(pool, fakeazdo.Job{Pipeline: "images", Name: "docker", Demands: []string{"Agent.OS -equals Linux", "docker"}})
	inst, _ := startAgainst(t, fake, testPAT, "--refresh-interval", "1s", "--min-refresh-interval", "100ms", "--routing-warmup", "0s")
	client := pb.NewExternalScalerClient(dial(t, inst))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ask := func(ns, name, caps string) {
		ref := &pb.ScaledObjectRef{Name: name, Namespace: ns, ScalerMetadata: map[string]string{"scalerAddress": inst.GRPCAddr, "poolName": "linux", "capabilities": caps}}
		if _, err := client.GetMetrics(ctx, &pb.GetMetricsRequest{ScaledObjectRef: ref, MetricName: "s0-x"}); err != nil {
			t.Fatal(err)
		}
	}
	ask("team-a", "plain", "Agent.OS=Linux")
	ask("team-b", "docker", "Agent.OS=Linux,docker")

	jobs := func(query string) map[uint64]status.JobView {
		t.Helper()
		_, body := get(t, "http://"+inst.HTTPAddr+"/api/v1/jobs"+query)
		var p status.Page
		if err := json.Unmarshal([]byte(body), &p); err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		out := map[uint64]status.JobView{}
		for _, pv := range p.Pools {
			for _, j := range pv.Jobs {
				out[j.ID] = j
			}
		}
		return out
	}
	want := func(got map[uint64]status.JobView, id uint64, reason string, words ...string) {
		t.Helper()
		j := got[id]
		if j.Reason != reason {
			t.Fatalf("job %d: reason %q (%s), want %q", id, j.Reason, j.Why, reason)
		}
		for _, w := range words {
			if !strings.Contains(j.Why, w) {
				t.Fatalf("job %d: %q does not say %q", id, j.Why, w)
			}
		}
	}
	got := jobs("")
	want(got, web, routing.RoutedWaiting, "counted by team-a/plain")
	want(got, fpga, routing.Unroutable, `no trigger accepts ["fpga"] even alone`)
	want(got, img, routing.HeldBehindOlder, "team-b/docker", fmt.Sprintf("held until job %d", web))
	if j := got[web]; j.Pipeline != "web-ci" || j.Job != "build" || !strings.HasSuffix(j.URL, fmt.Sprintf("buildId=%d", web)) || j.Run == "" {
		t.Fatalf("job %d does not carry what a person knows it by: %+v", web, j)
	}

	// One parallel job: the oldest job takes it, the Docker job waits for
	// the next (the budget is read at the next refresh).
	org.SetParallelJobs(1)
	deadline := time.Now().Add(10 * time.Second)
	for got = jobs(""); got[img].Reason != routing.WaitingForParallelJob && time.Now().Before(deadline); got = jobs("") {
		ask("team-a", "plain", "Agent.OS=Linux")
		time.Sleep(50 * time.Millisecond)
	}
	want(got, img, routing.WaitingForParallelJob, "1 parallel jobs", "no pod is started")
	want(got, web, routing.RoutedWaiting)
	want(got, fpga, routing.Unroutable, `no trigger accepts ["fpga"]`) // the reason to act on comes first

	// Filters: a run, and a namespace whose ScaledJobs use no pool.
	if got := jobs("?run=images"); len(got) != 1 || got[img].ID != img {
		t.Fatalf("?run=images: %v", got)
	}
	if got := jobs("?namespace=team-z"); len(got) != 0 {
		t.Fatalf("?namespace=team-z: %v", got)
	}

	// The command prints the same.
	var out, errOut bytes.Buffer
	if err := Run(ctx, []string{"explain", "--url", "http://" + inst.HTTPAddr, "--namespace", "team-b"}, func(string) string { return "" }, &out, &errOut); err != nil {
		t.Fatalf("explain: %v (%s)", err, errOut.String())
	}
	for _, w := range []string{"contoso / linux", "ScaledJob team-b/docker", "images ", "waiting for a parallel job", `no trigger accepts ["fpga"]`, fmt.Sprintf("buildId=%d", img)} {
		if !strings.Contains(out.String(), w) {
			t.Fatalf("explain output lacks %q:\n%s", w, out.String())
		}
	}
}
