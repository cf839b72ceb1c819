package app

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo/fakeazdotest"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/syncbuf"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/demo"
)

const testPAT = "app-test-pat-0123456789abcdef"

// startScaler runs the whole scaler on loopback with the given flags.
func startScaler(t *testing.T, args ...string) (*Instance, *syncbuf.Buffer) {
	t.Helper()
	args = append([]string{"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-level", "debug", "--sweep-interval", "0"}, args...)
	logs := &syncbuf.Buffer{}
	inst, err := StartArgs(context.Background(), args, func(string) string { return "" }, logs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(inst.Stop)
	return inst, logs
}

// startAgainst starts the scaler on the fake's organization contoso, its
// PAT in a file, with the test's flags.
func startAgainst(t *testing.T, fake *fakeazdo.Server, pat string, args ...string) (*Instance, *syncbuf.Buffer) {
	t.Helper()
	patFile := filepath.Join(t.TempDir(), "pat")
	if err := os.WriteFile(patFile, []byte(pat), 0o600); err != nil {
		t.Fatal(err)
	}
	return startScaler(t, append([]string{"--org-url", fake.OrgURL("contoso"), "--pat-file", patFile}, args...)...)
}

// dial connects to the scaler's gRPC service for the test's life.
func dial(t *testing.T, inst *Instance) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(inst.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// startFake serves a fake Azure DevOps with organization contoso (its PAT
// pat) and a pool "linux", for the test's life.
func startFake(t *testing.T, pat string) (*fakeazdo.Server, *fakeazdo.Org, int) {
	t.Helper()
	fake := fakeazdotest.Start(t)
	org := fake.AddOrg("contoso", pat)
	return fake, org, org.AddPool("linux")
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestScalerEndToEndOverLoopback(t *testing.T) {
	fake, org, pool := startFake(t, testPAT)
	org.QueueJob(pool, fakeazdo.Job{Demands: []string{"Agent.OS -equals Linux"}})
	inst, logs := startAgainst(t, fake, testPAT, "--refresh-interval", "1s", "--stale-after", "5s", "--azdo-timeout", "2s",
		"--routing-warmup", "0s")

	conn := dial(t, inst)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	health, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "externalscaler.ExternalScaler"})
	if err != nil || health.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("gRPC health = %v, %v", health, err)
	}
	client := pb.NewExternalScalerClient(conn)
	ref := &pb.ScaledObjectRef{Name: "sj", Namespace: "ns", ScalerMetadata: map[string]string{"scalerAddress": inst.GRPCAddr, "poolName": "linux", "capabilities": "Agent.OS=Linux"}}
	m, err := client.GetMetrics(ctx, &pb.GetMetricsRequest{ScaledObjectRef: ref, MetricName: "s0-x"})
	if err != nil || m.MetricValues[0].MetricValueFloat != 1 {
		t.Fatalf("GetMetrics = %v, %v", m, err)
	}
	_, _ = client.IsActive(ctx, &pb.ScaledObjectRef{ScalerMetadata: map[string]string{"poolID": "zero"}}) // an InvalidArgument, counted

	base := "http://" + inst.HTTPAddr
	if code, body := get(t, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, body := get(t, base+"/readyz"); code != 200 || !strings.HasPrefix(body, "ok") {
		t.Errorf("/readyz = %d %q", code, body)
	}
	_, metrics := get(t, base+"/metrics")
	for _, want := range []string{
		`azdo_keda_scaler_azdo_requests_total{api="jobrequests",code="200",organization="contoso"}`,
		`azdo_keda_scaler_azdo_requests_total{api="options",code="200",organization="contoso"}`,
		`azdo_keda_scaler_azdo_request_duration_seconds_bucket{api="jobrequests",organization="contoso"`,
		`azdo_keda_scaler_pool_jobs{organization="contoso",pool="linux",pool_id="1",state="waiting"} 1`,
		`azdo_keda_scaler_pool_jobs{organization="contoso",pool="linux",pool_id="1",state="running"} 0`,
		`azdo_keda_scaler_pool_oldest_waiting_job_age_seconds{organization="contoso",pool="linux",pool_id="1"}`,
		`azdo_keda_scaler_pool_unroutable_jobs{organization="contoso",pool="linux",pool_id="1"} 0`,
		`azdo_keda_scaler_trigger_jobs{organization="contoso",pool="linux",pool_id="1",scaledjob="sj",scaledjob_namespace="ns"} 1`,
		`azdo_keda_scaler_snapshot_age_seconds{organization="contoso",pool="linux",pool_id="1"}`,
		`azdo_keda_scaler_build_info{goversion="`,
		`grpc_server_handled_total{grpc_code="OK",grpc_method="GetMetrics",grpc_service="externalscaler.ExternalScaler",grpc_type="unary"} 1`,
		`grpc_server_handled_total{grpc_code="InvalidArgument",grpc_method="IsActive",grpc_service="externalscaler.ExternalScaler",grpc_type="unary"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	inst.Stop()
	if strings.Contains(metrics, testPAT) || strings.Contains(logs.String(), testPAT) {
		t.Fatal("the PAT appears in metrics or logs")
	}
	if !strings.Contains(logs.String(), "azdo-keda-scaler started") {
		t.Fatalf("no start-up log line:\n%s", logs.String())
	}
}

// The demo's report: every sample answers, and per pool the counts add up
// to the unfinished jobs. With one refresh an hour every answer comes from
// the same snapshot, so the sums must be exact.
func TestDemo(t *testing.T) {
	inst, _ := startScaler(t, "--demo", "--refresh-interval", "1h", "--stale-after", "2h", "--routing-warmup", "0s")
	conn := dial(t, inst)
	client := pb.NewExternalScalerClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	time.Sleep(3 * time.Second) // a few simulated jobs arrive and start
	var out bytes.Buffer
	for range 2 { // the first round teaches the scaler every trigger
		out.Reset()
		demo.Report(ctx, client, inst.demoUnfinished, &out)
	}
	report := out.String()
	for _, s := range demo.Samples() {
		if !strings.Contains(report, s.Name) {
			t.Errorf("the report lacks %s:\n%s", s.Name, report)
		}
	}
	if strings.Contains(report, "error") || strings.Contains(report, "?") {
		t.Fatalf("the demo report has errors:\n%s", report)
	}
	_, pools, ok := strings.Cut(report, "SUM OF COUNTS\n")
	if !ok {
		t.Fatalf("no pool table:\n%s", report)
	}
	for _, line := range strings.Split(strings.TrimSpace(pools), "\n") {
		var pool string
		var unfinished, sum float64
		if _, err := fmt.Sscan(line, &pool, &unfinished, &sum); err != nil || unfinished != sum {
			t.Errorf("pool line %q: the counts must add up to the unfinished jobs (%v)\n%s", line, err, report)
		}
	}
}

// tlsFiles writes a CA, a server certificate for 127.0.0.1 and a client
// certificate, as cert-manager would for the chart.
func tlsFiles(t *testing.T) (dir string) {
	t.Helper()
	dir = t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	ca, _ := x509.ParseCertificate(caDER)
	write := func(name, typ string, der []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("ca.crt", "CERTIFICATE", caDER)
	for i, name := range []string{"server", "client"} {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(2 + i)), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour),
			NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
		der, _ := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		keyDER, _ := x509.MarshalECPrivateKey(key)
		write(name+".crt", "CERTIFICATE", der)
		write(name+".key", "EC PRIVATE KEY", keyDER)
	}
	return dir
}

func TestMutualTLS(t *testing.T) {
	dir := tlsFiles(t)
	inst, _ := startScaler(t, "--demo", "--grpc-tls-cert", filepath.Join(dir, "server.crt"), "--grpc-tls-key", filepath.Join(dir, "server.key"),
		"--grpc-tls-client-ca", filepath.Join(dir, "ca.crt"))
	caPEM, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	check := func(cfg *tls.Config) error {
		conn, err := grpc.NewClient(inst.GRPCAddr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			return err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	// KEDA with caCert + tlsClientCert/tlsClientKey.
	clientCert, err := tls.LoadX509KeyPair(filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := check(&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{clientCert}}); err != nil {
		t.Fatalf("with a client certificate: %v", err)
	}
	if err := check(&tls.Config{RootCAs: roots}); err == nil {
		t.Fatal("a client without a certificate must be refused")
	}
	conn, _ := grpc.NewClient(inst.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err == nil {
		t.Fatal("a plaintext client must be refused")
	}
}

// `azdo-keda-scaler tls-secrets` prints the Secrets instead of starting the
// scaler.
func TestRunTLSSecrets(t *testing.T) {
	var stdout bytes.Buffer
	if err := Run(context.Background(), []string{"tls-secrets", "--name", "shared-scaler"}, func(string) string { return "" }, &stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(stdout.String(), "kind: Secret"); n != 2 || !strings.Contains(stdout.String(), "name: shared-scaler-keda-client") {
		t.Fatalf("want the two Secrets of shared-scaler, got %d:\n%s", n, stdout.String())
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	var stderr bytes.Buffer
	err := Run(context.Background(), []string{"--org-url", "https://dev.azure.com/x"}, func(string) string { return "" }, io.Discard, &stderr)
	if err == nil || !strings.Contains(err.Error(), "AZDO_PAT") {
		t.Fatalf("Run = %v", err)
	}
}

// The whole scaler sweeps the pools its triggers use, and keeps the agent a
// trigger names as parent, in dry run and for real.
func TestSweeperInTheScaler(t *testing.T) {
	fake, org, pool := startFake(t, testPAT)
	old := time.Now().Add(-time.Hour)
	org.AddAgent(pool, fakeazdo.Agent{Name: "linux-agents-abc12", StatusChangedOn: old})
	org.AddAgent(pool, fakeazdo.Agent{Name: "linux-agents-template", StatusChangedOn: old})
	org.AddAgent(pool, fakeazdo.Agent{Name: "linux-agents-live", Online: true, StatusChangedOn: old})
	org.AddAgent(pool, fakeazdo.Agent{Name: "someones-vm", StatusChangedOn: old})

	for _, dryRun := range []bool{true, false} {
		args := []string{"--org-url", fake.OrgURL("contoso"), "--refresh-interval", "1s", "--stale-after", "5s", "--azdo-timeout", "2s",
			"--sweep-interval", "300ms", "--sweep-agent-pattern", "linux-agents-*"}
		if dryRun {
			args = append(args, "--sweep-dry-run")
		}
		t.Setenv("AZDO_PAT", testPAT)
		inst, err := StartArgs(context.Background(), append([]string{"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-level", "debug"}, args...),
			os.Getenv, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		conn, _ := grpc.NewClient(inst.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = pb.NewExternalScalerClient(conn).IsActive(ctx, &pb.ScaledObjectRef{Namespace: "ns",
			ScalerMetadata: map[string]string{"poolName": "linux", "parent": "linux-agents-template"}})
		cancel()
		conn.Close()
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		var metrics string
		for time.Now().Before(deadline) {
			_, metrics = get(t, "http://"+inst.HTTPAddr+"/metrics")
			if strings.Contains(metrics, "azdo_keda_scaler_sweeper_agents_deleted_total") {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		inst.Stop()
		want := `azdo_keda_scaler_sweeper_agents_deleted_total{dry_run="` + fmt.Sprint(dryRun) + `",organization="contoso",pool="linux",pool_id="1"}`
		if !strings.Contains(metrics, want) {
			t.Fatalf("dry run %v: no %s in\n%s", dryRun, want, metrics)
		}
		for _, reason := range []string{"parent", "online", "outside-pattern"} {
			if !strings.Contains(metrics, `reason="`+reason+`"`) {
				t.Errorf("dry run %v: no agent kept for %s", dryRun, reason)
			}
		}
		names := org.AgentNames(pool)
		wantNames := "[linux-agents-abc12 linux-agents-live linux-agents-template someones-vm]"
		if !dryRun {
			wantNames = "[linux-agents-live linux-agents-template someones-vm]"
		}
		if fmt.Sprint(names) != wantNames {
			t.Fatalf("dry run %v: agents left %v, want %s", dryRun, names, wantNames)
		}
	}
}
