package service_test

import (
	"context"
	"fmt"
	"testing"

	pb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo"
)

// benchTriggers sets up 20 pools of 50 mixed jobs each, and 1,000 triggers
// (50 per pool, with 10 different filters), and waits until every trigger
// has an answer.
func benchTriggers(b *testing.B) (*env, []*pb.GetMetricsRequest) {
	t := &testing.T{}
	// No refresh during the run: background polling would be measured too
	// (allocations are counted process-wide).
	e, orgs := newEnv(t, envOptions{refresh: -1}, orgSpec{"contoso", pat})
	e.t = t
	org := orgs["contoso"]
	kinds := [][]string{{"Agent.OS -equals Linux", "docker"}, {"Agent.OS -equals Linux"}, {"Agent.OS -equals Windows_NT"},
		{"Agent.OS -equals Linux", "docker", "cuda -gtVersion 12.0"}, {"Agent.OS -equals Linux", "Agent.Version -gtVersion 3.220.0"}}
	filters := []map[string]string{{}, {"capabilities": "Agent.OS=Linux,docker"}, {"capabilities": "Agent.OS=Linux"},
		{"capabilities": "Agent.OS=Windows_NT"}, {"capabilities": "Agent.OS=Linux,docker,cuda=12.4"}, {"demands": "Agent.OS -equals Linux,docker"},
		{"scaleOnInFlight": "false"}, {"capabilities": "Agent.OS=Linux,Agent.Version=4.0.0"}, {"parent": "agent-1"}, {"demands": "docker", "requireAllDemandsAndIgnoreOthers": "true"}}
	var reqs []*pb.GetMetricsRequest
	for p := 0; p < 20; p++ {
		name := fmt.Sprintf("pool-%02d", p)
		id := org.AddPool(name)
		org.AddAgent(id, fakeazdo.Agent{Name: "agent-1", Capabilities: map[string]string{"Agent.OS": "Linux", "docker": ""}})
		for j := 0; j < 50; j++ {
			org.QueueJob(id, fakeazdo.Job{Demands: kinds[j%len(kinds)]})
		}
		for tr := 0; tr < 50; tr++ {
			md := map[string]string{"poolName": name, "targetPipelinesQueueLength": fmt.Sprint(1 + tr/10)}
			for k, v := range filters[tr%len(filters)] {
				md[k] = v
			}
			r := ref(md)
			r.Name = fmt.Sprintf("sj-%d-%d", p, tr)
			reqs = append(reqs, &pb.GetMetricsRequest{ScaledObjectRef: r})
		}
	}
	for _, r := range reqs {
		if _, err := e.client.GetMetrics(context.Background(), r); err != nil {
			b.Fatal(err)
		}
	}
	return e, reqs
}

// BenchmarkGetMetrics1000Triggers20PoolsGRPC: one op is one GetMetrics call
// over loopback gRPC with KEDA's client, cycling over the 1,000 triggers.
func BenchmarkGetMetrics1000Triggers20PoolsGRPC(b *testing.B) {
	e, reqs := benchTriggers(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := e.client.GetMetrics(ctx, reqs[i%len(reqs)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetMetrics1000Triggers20PoolsHandler: the service's own work per
// call (parsing cache, pool lookup, poller, count), without gRPC.
func BenchmarkGetMetrics1000Triggers20PoolsHandler(b *testing.B) {
	e, reqs := benchTriggers(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := e.svc.GetMetrics(ctx, reqs[i%len(reqs)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetMetrics1000Triggers20PoolsParallel: the same under
// concurrency, as when KEDA polls many ScaledJobs at once.
func BenchmarkGetMetrics1000Triggers20PoolsParallel(b *testing.B) {
	e, reqs := benchTriggers(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := e.client.GetMetrics(ctx, reqs[i%len(reqs)]); err != nil {
				b.Error(err)
				return
			}
			i += 7
		}
	})
}
