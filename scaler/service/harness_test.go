package service_test

import (
	"context"
	"net"
	"testing"
	"time"

	pb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo/fakeazdotest"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/syncbuf"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/azdo"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/config"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/logging"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/pools"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/routing"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/service"
)

// env is a scaler served over loopback gRPC, against a fake Azure DevOps.
type env struct {
	t      *testing.T
	fake   *fakeazdo.Server
	cfg    *config.File
	client pb.ExternalScalerClient
	conn   *grpc.ClientConn
	logs   *syncbuf.Buffer
	reg    *pools.Registry
	svc    *service.Service
	router *routing.Router
}

type orgSpec struct {
	name, pat string
}

type envOptions struct {
	refresh, stale, idle time.Duration
	minRefresh           time.Duration    // default: the registry's (2s, cut to refresh)
	now                  func() time.Time // the registry's clock; default time.Now
	cfg                  func(*config.File)
	routing              routing.Options
	verify               bool                    // triggers from SyncTriggers (--read-cluster), callers verified
	demand               *service.Demand         // standby auto's recorder (also the router's observer)
	standbyNow           func() time.Time        // the clock of standby decisions
	standbyObserver      service.StandbyObserver // standby metrics
}

// newEnv starts a fake with the given organizations, and a scaler
// configured for them with the same PATs.
func newEnv(t *testing.T, o envOptions, orgs ...orgSpec) (*env, map[string]*fakeazdo.Org) {
	t.Helper()
	if o.refresh < 0 { // "never", for benchmarks: only the first fetch
		o.refresh = time.Hour
	}
	if o.refresh == 0 {
		o.refresh = 100 * time.Millisecond
	}
	if o.stale == 0 {
		o.stale = time.Minute
	}
	fake := fakeazdotest.Start(t)
	fakes := map[string]*fakeazdo.Org{}
	cfg := &config.File{}
	for _, spec := range orgs {
		fakes[spec.name] = fake.AddOrg(spec.name, spec.pat)
		one := config.WithPAT(spec.name, fake.OrgURL(spec.name), azdo.StaticPAT(spec.pat))
		cfg.Organizations = append(cfg.Organizations, one.Organizations...)
	}
	if o.cfg != nil {
		o.cfg(cfg)
	}
	logs := &syncbuf.Buffer{}
	log, secretSet, err := logging.New(logs, "json", "debug")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var sources []pools.Source
	for i := range cfg.Organizations {
		org := &cfg.Organizations[i]
		c, err := azdo.New(azdo.Options{Name: org.Name, URL: org.URL, PAT: org.PAT(), Timeout: 300 * time.Millisecond,
			BaseBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, QPS: 10000, Burst: 10000, Logger: log, Secrets: secretSet})
		if err != nil {
			t.Fatal(err)
		}
		sources = append(sources, c)
	}
	reg := pools.NewRegistry(ctx, sources, pools.Options{RefreshInterval: o.refresh, StaleAfter: o.stale, IdleAfter: o.idle,
		MinRefresh: o.minRefresh, Now: o.now, Logger: log})
	o.routing.Logger = log
	o.routing.Given = o.verify
	if o.demand != nil {
		o.routing.Observer = o.demand
	}
	router := routing.NewRouter(o.routing)
	svc := service.New(reg, cfg, cfg, service.Options{Logger: log, FirstAnswerWait: 3 * time.Second, Router: router, Verify: o.verify,
		Demand: o.demand, Now: o.standbyNow, Standby: o.standbyObserver})
	server := grpc.NewServer()
	pb.RegisterExternalScalerServer(server, svc)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = server.Serve(l) }()
	t.Cleanup(server.Stop)
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &env{t: t, fake: fake, cfg: cfg, client: pb.NewExternalScalerClient(conn), conn: conn, logs: logs, reg: reg, svc: svc, router: router}, fakes
}

var _ = logrus.InfoLevel

// ref is the ScaledObjectRef KEDA sends for a trigger of ScaledJob
// team-a/agents.
func ref(md map[string]string) *pb.ScaledObjectRef { return refOf("agents", md) }

// refOf is the ScaledObjectRef of a trigger of ScaledJob team-a/<name>.
func refOf(scaledJob string, md map[string]string) *pb.ScaledObjectRef {
	// KEDA always adds scalerAddress to the metadata it sends.
	withAddress := map[string]string{"scalerAddress": "azdo-keda-scaler.keda:6000"}
	for k, v := range md {
		withAddress[k] = v
	}
	return &pb.ScaledObjectRef{Name: scaledJob, Namespace: "team-a", ScalerMetadata: withAddress}
}

// metric calls GetMetrics as KEDA does for ScaledJob team-a/agents and
// returns the value or the error.
func (e *env) metric(md map[string]string) (float64, error) {
	return e.metricOf("agents", md)
}

// metricOf calls GetMetricSpec and GetMetrics for a trigger of a ScaledJob.
func (e *env) metricOf(scaledJob string, md map[string]string) (float64, error) {
	e.t.Helper()
	return e.metricFor(refOf(scaledJob, md))
}

// metricFor calls GetMetricSpec and GetMetrics as KEDA does for a ref.
func (e *env) metricFor(r *pb.ScaledObjectRef) (float64, error) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	spec, err := e.client.GetMetricSpec(ctx, r)
	if err != nil {
		return 0, err
	}
	m, err := e.client.GetMetrics(ctx, &pb.GetMetricsRequest{ScaledObjectRef: r, MetricName: spec.MetricSpecs[0].MetricName})
	if err != nil {
		return 0, err
	}
	if len(m.MetricValues) != 1 || m.MetricValues[0].MetricName != spec.MetricSpecs[0].MetricName {
		e.t.Fatalf("GetMetrics answered %v", m.MetricValues)
	}
	v := m.MetricValues[0]
	if float64(v.MetricValue) != v.MetricValueFloat {
		e.t.Fatalf("metricValue %d and metricValueFloat %v disagree", v.MetricValue, v.MetricValueFloat)
	}
	return v.MetricValueFloat, nil
}

// waitMetric waits until the trigger's metric is want (the poller refreshes
// asynchronously), and fails with the last answer if it never is.
func (e *env) waitMetric(md map[string]string, want float64) { e.waitMetricOf("agents", md, want) }

// waitMetricOf is waitMetric for a trigger of another ScaledJob.
func (e *env) waitMetricOf(scaledJob string, md map[string]string, want float64) {
	e.t.Helper()
	var got float64
	var err error
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		got, err = e.metricOf(scaledJob, md)
		if err == nil && got == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.t.Fatalf("metric for %s %v = %v (err %v), want %v", scaledJob, md, got, err, want)
}

func (e *env) waitCode(md map[string]string, want codes.Code) error {
	e.t.Helper()
	var err error
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		_, err = e.metric(md)
		if status.Code(err) == want {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.t.Fatalf("metric for %v: err = %v, want code %v", md, err, want)
	return nil
}
