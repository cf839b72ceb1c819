package entra

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeentra"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/azdo"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/secrets"
)

const (
	tenant   = "11111111-2222-3333-4444-555555555555"
	clientID = "66666666-7777-8888-9999-000000000000"
	secret   = "sp-client-secret-value"
)

// startEntra serves a fake Entra ID over TLS on loopback.
func startEntra(t *testing.T, fe *fakeentra.Server) *httptest.Server {
	t.Helper()
	srv := httptest.NewTLSServer(fe)
	t.Cleanup(srv.Close)
	fe.URL = srv.URL
	return srv
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// A service principal's secret gets a token for Azure DevOps' scope, which
// is cached; a token due for refresh (refresh_in) is replaced, and when
// Entra ID fails then, the cached token, still valid, is kept: no call
// fails.
func TestServicePrincipalTokenCachedAndRefreshed(t *testing.T) {
	fe := &fakeentra.Server{ClientID: clientID, ClientSecret: secret, ExpiresIn: 3600, RefreshIn: 1}
	srv := startEntra(t, fe)
	s, err := New(Options{Auth: ServicePrincipal, TenantID: tenant, ClientID: clientID, ClientSecretFile: writeFile(t, secret+"\n"),
		AuthorityHost: srv.URL, Transport: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	first, err := s.Token(ctx)
	if err != nil || first != "entra-access-token-1" {
		t.Fatalf("Token = %q, %v", first, err)
	}
	for range 10 {
		if tok, err := s.Token(ctx); tok != first || err != nil {
			t.Fatalf("cached token expected, got %q, %v", tok, err)
		}
	}
	if fe.Issued() != 1 || fe.Scopes()[0] != Scope+" openid offline_access profile" && fe.Scopes()[0] != Scope {
		t.Errorf("issued %d tokens, scopes %q", fe.Issued(), fe.Scopes())
	}

	time.Sleep(1100 * time.Millisecond) // past refresh_in (MSAL reads the wall clock)
	fe.SetFailing(true)
	if tok, err := s.Token(ctx); tok != first || err != nil {
		t.Fatalf("a failed refresh of a valid token must keep it: %q, %v", tok, err)
	}
	fe.SetFailing(false)
	second, err := s.Token(ctx)
	if err != nil || second == first {
		t.Fatalf("due for refresh, the token must be replaced: %q, %v", second, err)
	}
}

// A workload identity sends the pod's federated token as its client
// assertion.
func TestWorkloadIdentity(t *testing.T) {
	const federated = "federated-service-account-token"
	fe := &fakeentra.Server{ClientID: clientID, ExpiresIn: 3600, Assertion: func(a string) bool { return a == federated }}
	srv := startEntra(t, fe)
	s, err := New(Options{Auth: WorkloadIdentity, TenantID: tenant, ClientID: clientID, TokenFile: writeFile(t, federated),
		AuthorityHost: srv.URL, Transport: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if tok, err := s.Token(context.Background()); err != nil || tok != "entra-access-token-1" {
		t.Fatalf("Token = %q, %v", tok, err)
	}
}

// A refused secret is an error naming Entra ID's code, without the secret;
// a rotated secret file is used without a restart.
func TestRefusedThenRotatedSecret(t *testing.T) {
	fe := &fakeentra.Server{ClientID: clientID, ClientSecret: "the-new-secret", ExpiresIn: 3600}
	srv := startEntra(t, fe)
	file := writeFile(t, secret)
	set := secrets.NewSet()
	s, err := New(Options{Auth: ServicePrincipal, TenantID: tenant, ClientID: clientID, ClientSecretFile: file,
		AuthorityHost: srv.URL, Transport: srv.Client(), Secrets: set, CheckEvery: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Token(context.Background())
	if err == nil || !strings.Contains(err.Error(), "AADSTS7000215") || strings.Contains(err.Error(), secret) {
		t.Fatalf("want Entra ID's cause without the secret, got %v", err)
	}
	if !errors.Is(err, azdo.ErrRefused) {
		t.Fatalf("Entra ID refused the secret: the error must say the credential is refused (readiness), got %v", err)
	}
	t.Logf("a user reads: %v", err)
	if err := os.WriteFile(file, []byte("the-new-secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if tok, err := s.Token(context.Background()); err != nil || tok == "" {
		t.Fatalf("after rotation: %q, %v", tok, err)
	}
	if got := set.Redact("x the-new-secret " + secret); strings.Contains(got, "secret-value") || strings.Contains(got, "the-new-secret") {
		t.Errorf("both secrets must be redacted: %q", got)
	}
}

func TestOptionsRefused(t *testing.T) {
	for _, o := range []Options{
		{Auth: "managed-identity"},
		{Auth: ServicePrincipal, ClientID: clientID, ClientSecretFile: "x"},
		{Auth: ServicePrincipal, TenantID: tenant, ClientID: clientID},
		{Auth: ServicePrincipal, TenantID: tenant, ClientID: clientID, ClientSecretFile: "a", ClientCertificateFile: "b"},
		{Auth: WorkloadIdentity, ClientSecretFile: "a"},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("%+v accepted", o)
		} else {
			t.Logf("%+v: %v", o, err)
		}
	}
}

// A service principal's certificate signs the client assertion (a JWT).
// Entra ID takes RSA certificates only.
func TestServicePrincipalCertificate(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "azdo-keda-scaler"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pemFile := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})) +
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	var assertion string
	fe := &fakeentra.Server{ClientID: clientID, ExpiresIn: 3600, Assertion: func(a string) bool {
		assertion = a
		return strings.Count(a, ".") == 2 // header.claims.signature
	}}
	srv := startEntra(t, fe)
	s, err := New(Options{Auth: ServicePrincipal, TenantID: tenant, ClientID: clientID, ClientCertificateFile: writeFile(t, pemFile),
		AuthorityHost: srv.URL, Transport: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if tok, err := s.Token(context.Background()); err != nil || tok != "entra-access-token-1" {
		t.Fatalf("Token = %q, %v (assertion %q)", tok, err, assertion)
	}
}

// onlyHost carries requests to one host and records any other it is asked
// to reach (and refuses it): nothing may leave for the public cloud.
type onlyHost struct {
	host    string
	next    policy.Transporter
	mu      sync.Mutex
	foreign []string
}

func (o *onlyHost) Do(r *http.Request) (*http.Response, error) {
	if r.URL.Host != o.host {
		o.mu.Lock()
		o.foreign = append(o.foreign, r.URL.String())
		o.mu.Unlock()
		return nil, errors.New("refused: not the configured authority")
	}
	return o.next.Do(r)
}

// AZURE_AUTHORITY_HOST without authorityHost is that host, as the README
// says: the token comes from it, and no request (instance discovery
// included) goes anywhere else.
func TestAuthorityHostFromTheEnvironment(t *testing.T) {
	fe := &fakeentra.Server{ClientID: clientID, ClientSecret: secret, ExpiresIn: 3600}
	srv := startEntra(t, fe)
	t.Setenv("AZURE_AUTHORITY_HOST", srv.URL)
	u, _ := url.Parse(srv.URL)
	tr := &onlyHost{host: u.Host, next: srv.Client()}
	s, err := New(Options{Auth: ServicePrincipal, TenantID: tenant, ClientID: clientID, ClientSecretFile: writeFile(t, secret), Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Token(context.Background())
	if err != nil || tok == "" || len(tr.foreign) != 0 {
		t.Fatalf("Token = %q, %v; requests elsewhere than AZURE_AUTHORITY_HOST: %v", tok, err, tr.foreign)
	}
}

// Entra ID not answering (no verdict on the credential) is an outage, not
// a refusal: the scaler stays ready.
func TestEntraOutageIsNotARefusal(t *testing.T) {
	fe := &fakeentra.Server{ClientID: clientID, ClientSecret: secret, ExpiresIn: 3600}
	srv := startEntra(t, fe)
	srv.Close() // no answer at all
	s, err := New(Options{Auth: ServicePrincipal, TenantID: tenant, ClientID: clientID, ClientSecretFile: writeFile(t, secret),
		AuthorityHost: srv.URL, Transport: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Token(context.Background()); err == nil || errors.Is(err, azdo.ErrRefused) {
		t.Fatalf("Entra ID not answering: got %v; want an error that is not a refusal", err)
	}
}
