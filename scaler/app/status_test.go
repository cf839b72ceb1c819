package app

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	pb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo"
)

// The status page at / shows, from the scaler's memory, each pool's jobs
// with their demands, which trigger counts each and why, the jobs nobody
// can run, and the sweeper's last decisions; values from Azure DevOps are
// escaped, and the page runs no script.
func TestStatusPage(t *testing.T) {
	fake, org, pool := startFake(t, testPAT)
	old := time.Now().Add(-time.Hour)
	busy := org.AddAgent(pool, fakeazdo.Agent{Name: "linux-abcde-fghij", Online: true, Capabilities: map[string]string{"Agent.OS": "Linux"}})
	org.AddAgent(pool, fakeazdo.Agent{Name: "linux-zzzzz-yyyyy", StatusChangedOn: old})
	org.QueueJob(pool, fakeazdo.Job{Demands: []string{"Agent.OS -equals Linux"}})
	if err := org.AssignJob(org.QueueJob(pool, fakeazdo.Job{Demands: []string{"Agent.OS -equals Linux"}}), busy); err != nil {
		t.Fatal(err)
	}
	org.QueueJob(pool, fakeazdo.Job{Demands: []string{"<script>alert(1)</script>"}})
	inst, _ := startAgainst(t, fake, testPAT, "--refresh-interval", "1s", "--stale-after", "5s", "--azdo-timeout", "2s",
		"--routing-warmup", "0s", "--sweep-interval", "200ms", "--sweep-dry-run")

	conn := dial(t, inst)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ref := &pb.ScaledObjectRef{Name: "linux", Namespace: "ci", ScalerMetadata: map[string]string{"poolName": "linux", "capabilities": "Agent.OS=Linux"}}
	if _, err := pb.NewExternalScalerClient(conn).GetMetrics(ctx, &pb.GetMetricsRequest{ScaledObjectRef: ref, MetricName: "m"}); err != nil {
		t.Fatal(err)
	}

	var page string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + inst.HTTPAddr + "/")
		if err != nil {
			t.Fatal(err)
		}
		if ct, csp := resp.Header.Get("Content-Type"), resp.Header.Get("Content-Security-Policy"); ct != "text/html; charset=utf-8" || !strings.Contains(csp, "default-src 'none'") {
			t.Fatalf("Content-Type %q, Content-Security-Policy %q", ct, csp)
		}
		_, page = get(t, "http://"+inst.HTTPAddr+"/")
		resp.Body.Close()
		if strings.Contains(page, "linux-zzzzz-yyyyy") {
			break
		}
	}
	for _, want := range []string{
		"contoso / linux",
		"<b>2</b> waiting", "<b>1</b> running",
		"ci/linux",                          // the trigger
		"<code>capabilities=Agent.OS=Linux", // its filter
		"running on linux-abcde-fghij",
		"counted by ci/linux, the first trigger that accepts it",
		"1 job(s) nobody can run",
		"&lt;script&gt;alert(1)&lt;/script&gt;", // escaped, never run
		"This replica sweeps every 200ms in dry run",
		"linux-zzzzz-yyyyy</td><td>would delete (dry run)",
		"agent(s) kept",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the status page lacks %q", want)
		}
	}
	if strings.Contains(page, "<script>") || strings.Contains(page, testPAT) {
		t.Fatalf("the status page holds a script or the PAT:\n%s", page)
	}
	if code, _ := get(t, "http://"+inst.HTTPAddr+"/nothing-here"); code != http.StatusNotFound {
		t.Errorf("GET /nothing-here = %d, want 404 (only / is the page)", code)
	}
	if t.Failed() {
		t.Log(page)
	}
}
