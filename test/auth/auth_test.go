// Package auth runs the whole scaler signed in with a Microsoft Entra ID
// service principal instead of a PAT, the way the Helm chart runs it in a
// corporate network: Azure DevOps and Entra ID reached over TLS, by name,
// through an HTTPS proxy (HTTPS_PROXY), trusting a corporate CA added with
// SSL_CERT_DIR. Nothing in the scaler is told about the proxy or the CA:
// TestMain sets the same variables the chart sets, before any connection.
package auth

import (
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
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	pb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeentra"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/syncbuf"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/app"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/test/scalertest"
)

const (
	azdoHost   = "dev.azure.example"
	entraHost  = "login.example"
	tenant     = "11111111-2222-3333-4444-555555555555"
	clientID   = "66666666-7777-8888-9999-000000000000"
	secret     = "sp-client-secret-do-not-log"
	corpCAName = "Contoso TLS inspection CA"
)

var (
	serverCert tls.Certificate // for azdoHost and entraHost, signed by the corporate CA
	proxy      *connectProxy
)

// TestMain makes the corporate CA and the proxy, and points the process
// at them as the chart does (SSL_CERT_DIR, HTTPS_PROXY), before anything
// reads those variables (Go reads each once).
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "corp-ca")
	if err != nil {
		panic(err)
	}
	caPEM, cert, err := corporateCA(azdoHost, entraHost)
	if err != nil {
		panic(err)
	}
	serverCert = cert
	if err := os.WriteFile(filepath.Join(dir, "corp-ca.pem"), caPEM, 0o644); err != nil {
		panic(err)
	}
	proxy, err = startProxy()
	if err != nil {
		panic(err)
	}
	os.Setenv("SSL_CERT_DIR", "/etc/ssl/certs:"+dir)
	os.Setenv("HTTPS_PROXY", "http://"+proxy.addr)
	os.Unsetenv("NO_PROXY")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// serveTLS serves h over TLS with the corporate CA's certificate on a
// loopback port, and returns the port.
func serveTLS(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	return port
}

func TestServicePrincipalThroughProxyWithCorporateCA(t *testing.T) {
	fake := fakeazdo.New()
	org := fake.AddOrg("contoso") // no PAT at all
	pool := org.AddPool("linux")
	org.QueueJob(pool, fakeazdo.Job{Demands: []string{"Agent.OS -equals Linux"}})
	org.QueueJob(pool, fakeazdo.Job{Demands: []string{"Agent.OS -equals Linux"}})
	azdoURL := "https://" + azdoHost + ":" + serveTLS(t, fake) + "/contoso"

	// MSAL treats a token as expired 5 minutes before its expiry: 302 s
	// makes each token good for about 2 s, so the test sees refreshes.
	entra := &fakeentra.Server{ClientID: clientID, ClientSecret: secret, ExpiresIn: 302, OnIssue: org.AcceptBearerToken}
	entra.URL = "https://" + entraHost + ":" + serveTLS(t, entra)

	dir := t.TempDir()
	secretFile := filepath.Join(dir, "client-secret")
	cfgFile := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(secretFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("organizations:\n- url: %s\n  auth: service-principal\n  tenantId: %s\n  clientId: %s\n  clientSecretFile: %s\n  authorityHost: %s\n",
		azdoURL, tenant, clientID, secretFile, entra.URL)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	inst := startScaler(t, logs, "--config", cfgFile, "--refresh-interval", "1s", "--min-refresh-interval", "1s",
		"--stale-after", "3s", "--azdo-timeout", "2s")

	conn, err := grpc.NewClient(inst.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := pb.NewExternalScalerClient(conn)
	ref := &pb.ScaledObjectRef{Name: "linux", Namespace: "ci", ScalerMetadata: map[string]string{"poolName": "linux", "capabilities": "Agent.OS=Linux"}}
	getMetrics := func() (int64, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		m, err := client.GetMetrics(ctx, &pb.GetMetricsRequest{ScaledObjectRef: ref, MetricName: "m"})
		if err != nil {
			return 0, err
		}
		return m.MetricValues[0].MetricValue, nil
	}

	// The bearer token reaches Azure DevOps, through the proxy, trusted
	// through the corporate CA; tokens that expire are replaced before
	// any call fails.
	for entra.Issued() < 3 {
		n, err := getMetrics()
		if err != nil || n != 2 {
			t.Fatalf("GetMetrics with a service principal = %d, %v\nlog:\n%s", n, err, logs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	seen := org.BearerTokensSeen()
	if len(seen) == 0 || !strings.HasPrefix(seen[0], "entra-access-token-") {
		t.Fatalf("Azure DevOps saw bearer tokens %v", seen)
	}
	if hosts := proxy.hosts(); !slices.Contains(hosts, azdoHost) || !slices.Contains(hosts, entraHost) {
		t.Errorf("the proxy carried %v: both Azure DevOps and Entra ID must go through it", hosts)
	}
	if _, m := get(t, "http://"+inst.HTTPAddr+"/metrics"); strings.Contains(m, `code="401"`) || strings.Contains(m, `code="203"`) {
		t.Errorf("a call was refused while tokens were refreshed:\n%s", grep(m, "azdo_requests_total"))
	}
	if fe := entra.Scopes(); !strings.HasPrefix(fe[0], "499b84ac-1321-427f-aa17-267ca6975798/.default") {
		t.Errorf("token scope %q: want Azure DevOps' resource", fe[0])
	}

	// Entra ID refuses: once the token has expired the data goes stale, and
	// KEDA gets Unavailable with Entra ID's cause, never zero jobs.
	entra.SetFailing(true)
	var lastErr error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		n, err := getMetrics()
		if err == nil && n != 2 {
			t.Fatalf("while Entra ID fails, GetMetrics = %d (want the last good 2, then Unavailable)", n)
		}
		if err != nil {
			lastErr = err
			break
		}
	}
	if status.Code(lastErr) != codes.Unavailable || !strings.Contains(lastErr.Error(), "AADSTS7000215") {
		t.Fatalf("want Unavailable naming Entra ID's cause, got %v", lastErr)
	}
	t.Logf("KEDA reads: %v", lastErr)

	for _, leak := range append([]string{secret}, entra.Tokens()...) {
		if strings.Contains(logs.String(), leak) || strings.Contains(lastErr.Error(), leak) {
			t.Errorf("%q appears in the log or the gRPC error", leak)
		}
	}
}

func startScaler(t *testing.T, logs io.Writer, args ...string) *app.Instance {
	t.Helper()
	return scalertest.Start(t, logs, append([]string{"--log-level", "debug", "--sweep-interval", "0", "--placeholders=false", "--routing-warmup", "0s"}, args...)...)
}

// corporateCA makes a CA and a server certificate it signs for the names.
func corporateCA(names ...string) ([]byte, tls.Certificate, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: corpCAName},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: key}, nil
}

// connectProxy is an HTTPS proxy (HTTP CONNECT) that sends every host to
// the same port on loopback: the names need no DNS. Written here because
// a CONNECT tunnel is a few lines and no proxy library is a dependency.
type connectProxy struct {
	addr string
	mu   sync.Mutex
	seen []string
}

func startProxy() (*connectProxy, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &connectProxy{addr: l.Addr().String()}
	go func() { _ = http.Serve(l, p) }()
	return p, nil
}

func (p *connectProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
		return
	}
	host, port, err := net.SplitHostPort(r.Host)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	if !slices.Contains(p.seen, host) {
		p.seen = append(p.seen, host)
	}
	p.mu.Unlock()
	upstream, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", port))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	client, buf, err := w.(http.Hijacker).Hijack()
	if err != nil {
		upstream.Close()
		return
	}
	_, _ = client.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n"))
	go func() {
		_, _ = io.Copy(upstream, buf)
		upstream.Close()
	}()
	_, _ = io.Copy(client, upstream)
	client.Close()
}

func (p *connectProxy) hosts() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.seen...)
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

func grep(text, substr string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
