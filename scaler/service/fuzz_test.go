package service_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	pb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/azdo"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/config"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/pools"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/queue"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/routing"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/secrets"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/service"
)

// memorySource is an organization in memory: pool "linux" (id 1) with
// three jobs, every other pool unknown. No network, so fuzzing is fast.
type memorySource struct{}

var memoryPool = queue.Pool{Key: queue.Key{Org: "contoso", ID: 1}, Name: "linux"}

func (memorySource) Name() string                  { return "contoso" }
func (memorySource) PausedUntil() time.Time        { return time.Time{} }
func (memorySource) SetPollers(int, time.Duration) {}
func (memorySource) PoolByName(_ context.Context, name string) (queue.Pool, error) {
	if strings.EqualFold(name, "linux") {
		return memoryPool, nil
	}
	return queue.Pool{}, fmt.Errorf("agent pool %q: %w", name, azdo.ErrNotFound)
}
func (memorySource) PoolByID(_ context.Context, id int) (queue.Pool, error) {
	if id == 1 {
		return memoryPool, nil
	}
	return queue.Pool{}, fmt.Errorf("agent pool %d: %w", id, azdo.ErrNotFound)
}
func (memorySource) UnfinishedJobRequests(context.Context, int) ([]taskagent.TaskAgentJobRequest, error) {
	var out []taskagent.TaskAgentJobRequest
	for i, ds := range [][]any{{"Agent.OS -equals Linux"}, {"Agent.OS -equals Linux", "docker"}, {"x -weird"}} {
		id := uint64(i + 1)
		out = append(out, taskagent.TaskAgentJobRequest{RequestId: &id, Demands: &ds})
	}
	return out, nil
}

// FuzzGetMetrics sends any metadata, name and namespace through KEDA's gRPC
// client to the service behind the scaler's interceptors: no panic, a code
// a user can act on, a bounded message, and a count no larger than the
// pool's jobs.
func FuzzGetMetrics(f *testing.F) {
	f.Add("poolName", "linux", "capabilities", "Agent.OS=Linux,docker", "priority", "3", "sj", "team-a")
	f.Add("poolID", "1", "demands", "docker", "requireAllDemands", "true", "sj", "ns")
	f.Add("poolName", "nope", "parent", "tpl", "routing", "shared", "", "")
	f.Add("poolName", "linux", "agentNamePattern", "[", "organization", "contoso", "a", "b")
	f.Add("poolName", strings.Repeat("x", 300), "personalAccessTokenFromEnv", "Authorization: Basic OmFiY2RlZmdo", "k", "v", "n", "s")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := logrus.New()
	log.SetOutput(io.Discard)
	reg := pools.NewRegistry(ctx, []pools.Source{memorySource{}}, pools.Options{RefreshInterval: time.Hour, Logger: log})
	cfg := config.WithPAT("contoso", "https://dev.azure.com/contoso", nil)
	svc := service.New(reg, cfg, cfg, service.Options{Logger: log, Router: routing.NewRouter(routing.Options{Logger: log})})
	unary, stream := service.SanitizeErrors(secrets.NewSet())
	server := grpc.NewServer(grpc.ChainUnaryInterceptor(unary), grpc.ChainStreamInterceptor(stream))
	pb.RegisterExternalScalerServer(server, svc)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	go func() { _ = server.Serve(l) }()
	defer server.Stop()
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		f.Fatal(err)
	}
	defer conn.Close()
	client := pb.NewExternalScalerClient(conn)

	f.Fuzz(func(t *testing.T, k1, v1, k2, v2, k3, v3, name, namespace string) {
		for _, s := range []string{k1, v1, k2, v2, k3, v3, name, namespace} {
			if !utf8.ValidString(s) {
				return // proto3 strings are UTF-8: KEDA's client cannot send this
			}
		}
		ref := &pb.ScaledObjectRef{Name: name, Namespace: namespace, ScalerMetadata: map[string]string{k1: v1, k2: v2, k3: v3}}
		callCtx, done := context.WithTimeout(context.Background(), 10*time.Second)
		defer done()
		resp, err := client.GetMetrics(callCtx, &pb.GetMetricsRequest{ScaledObjectRef: ref})
		st := status.Convert(err)
		switch st.Code() {
		case codes.OK:
			if len(resp.MetricValues) != 1 || resp.MetricValues[0].MetricValue < 0 || resp.MetricValues[0].MetricValue > 3 {
				t.Fatalf("answer %v for a pool of 3 jobs", resp.MetricValues)
			}
		case codes.InvalidArgument:
			if !strings.HasPrefix(st.Message(), "trigger metadata") && st.Message() != "scaledObjectRef is required" {
				t.Fatalf("InvalidArgument that names no key: %q", st.Message())
			}
		case codes.NotFound, codes.PermissionDenied, codes.Unavailable:
		default:
			t.Fatalf("code %v: %v", st.Code(), err)
		}
		if len(st.Message()) > service.MaxMessage+32 {
			t.Fatalf("a %d-byte message", len(st.Message()))
		}
		if strings.Contains(st.Message(), "OmFiY2RlZmdo") {
			t.Fatalf("a credential echoed: %q", st.Message())
		}
	})
}
