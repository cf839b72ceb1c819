package mtls

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/tlstest"
)

var names = Names{Name: "azdo-keda-scaler", Namespace: "keda-scalers", KEDANamespace: "keda"}

func generate(t *testing.T, clientName string) Bundle {
	t.Helper()
	b, err := Generate(Request{ServerName: names.Name, DNSNames: names.ServiceDNSNames(), IPs: []net.IP{net.ParseIP("127.0.0.1")},
		ClientName: clientName, NotBefore: time.Now().Add(-time.Hour), Validity: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// writeServer writes the server's files of b into dir, as the kubelet
// mounts the Secret.
func writeServer(t *testing.T, dir string, b Bundle) Files {
	t.Helper()
	f := Files{Cert: filepath.Join(dir, "tls.crt"), Key: filepath.Join(dir, "tls.key"), ClientCA: filepath.Join(dir, "ca.crt")}
	for path, data := range map[string][]byte{f.Cert: b.ServerCert, f.Key: b.ServerKey, f.ClientCA: b.CACert} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func TestKEDAWithTheGeneratedClientCertificateIsAdmitted(t *testing.T) {
	b := generate(t, names.ClientName())
	files := writeServer(t, t.TempDir(), b)
	files.ClientNames = []string{names.ClientName()}
	server, err := ServerConfig(files)
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range append(names.ServiceDNSNames(), "127.0.0.1") {
		if err := tlstest.Handshake(server, tlstest.KEDA(t, host, b.CACert, b.ClientCert, b.ClientKey)); err != nil {
			t.Errorf("KEDA dialling %s: %v", host, err)
		}
	}
}

func TestCallersWithoutKEDAsCertificateAreRefused(t *testing.T) {
	b := generate(t, names.ClientName())
	other := generate(t, names.ClientName()) // another CA, same names
	files := writeServer(t, t.TempDir(), b)
	files.ClientNames = []string{names.ClientName()}
	server, err := ServerConfig(files)
	if err != nil {
		t.Fatal(err)
	}
	host := names.ServiceDNSNames()[0]
	cases := map[string]*tls.Config{
		"no client certificate":                     tlstest.KEDA(t, host, b.CACert, nil, nil),
		"a certificate of another CA":               tlstest.KEDA(t, host, b.CACert, other.ClientCert, other.ClientKey),
		"the server's certificate (no client auth)": tlstest.KEDA(t, host, b.CACert, b.ServerCert, b.ServerKey),
	}
	for name, client := range cases {
		if err := tlstest.Handshake(server, client); err == nil {
			t.Errorf("%s: admitted", name)
		}
	}
	// Same CA, but a client name the scaler does not allow.
	files.ClientNames = []string{"someone-else"}
	strict, err := ServerConfig(files)
	if err != nil {
		t.Fatal(err)
	}
	err = tlstest.Handshake(strict, tlstest.KEDA(t, host, b.CACert, b.ClientCert, b.ClientKey))
	if err == nil || !strings.Contains(err.Error(), "not among the allowed client names") {
		t.Errorf("a client certificate of another name: %v", err)
	}
}

// A renewed Secret applies at the next handshake, without a restart.
func TestRenewedFilesApplyAtTheNextHandshake(t *testing.T) {
	dir := t.TempDir()
	old := generate(t, names.ClientName())
	files := writeServer(t, dir, old)
	server, err := ServerConfig(files)
	if err != nil {
		t.Fatal(err)
	}
	host := names.ServiceDNSNames()[0]
	if err := tlstest.Handshake(server, tlstest.KEDA(t, host, old.CACert, old.ClientCert, old.ClientKey)); err != nil {
		t.Fatal(err)
	}
	renewed := generate(t, names.ClientName())
	writeServer(t, dir, renewed)
	if err := tlstest.Handshake(server, tlstest.KEDA(t, host, renewed.CACert, renewed.ClientCert, renewed.ClientKey)); err != nil {
		t.Errorf("after renewal, the new client: %v", err)
	}
	if err := tlstest.Handshake(server, tlstest.KEDA(t, host, old.CACert, old.ClientCert, old.ClientKey)); err == nil {
		t.Error("after renewal, the old CA's client is still admitted")
	}
}

func TestServerConfigErrors(t *testing.T) {
	dir := t.TempDir()
	files := writeServer(t, dir, generate(t, "c"))
	if _, err := ServerConfig(Files{Cert: files.Cert, Key: files.Key, ClientNames: []string{"c"}}); err == nil {
		t.Error("client names without a client CA: no error")
	}
	if _, err := ServerConfig(Files{Cert: files.Cert, Key: filepath.Join(dir, "missing")}); err == nil {
		t.Error("a missing key: no error at start-up")
	}
	if err := os.WriteFile(filepath.Join(dir, "empty.crt"), []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ServerConfig(Files{Cert: files.Cert, Key: files.Key, ClientCA: filepath.Join(dir, "empty.crt")}); err == nil ||
		!strings.Contains(err.Error(), "no certificate") {
		t.Errorf("a client CA without certificates: %v", err)
	}
}

func TestGenerate(t *testing.T) {
	before := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b, err := Generate(Request{ServerName: "s", DNSNames: []string{"s.ns.svc"}, ClientName: "c", NotBefore: before, Validity: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ca, server, client := parse(t, b.CACert), parse(t, b.ServerCert), parse(t, b.ClientCert)
	if !ca.IsCA || !ca.MaxPathLenZero {
		t.Errorf("CA: IsCA %v, MaxPathLenZero %v", ca.IsCA, ca.MaxPathLenZero)
	}
	if !slices.Equal(server.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) || !slices.Equal(server.DNSNames, []string{"s.ns.svc"}) {
		t.Errorf("server: usage %v, names %v", server.ExtKeyUsage, server.DNSNames)
	}
	if !slices.Equal(client.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) || client.Subject.CommonName != "c" {
		t.Errorf("client: usage %v, name %q", client.ExtKeyUsage, client.Subject.CommonName)
	}
	for _, c := range []*x509.Certificate{ca, server, client} {
		if !c.NotBefore.Equal(before) || !c.NotAfter.Equal(before.Add(48*time.Hour)) {
			t.Errorf("%s valid %v to %v", c.Subject.CommonName, c.NotBefore, c.NotAfter)
		}
	}
	if server.SerialNumber.Cmp(client.SerialNumber) == 0 {
		t.Error("two certificates with one serial number")
	}
	for name, r := range map[string]Request{
		"no client name": {ServerName: "s", DNSNames: []string{"s"}, Validity: time.Hour},
		"no names":       {ServerName: "s", ClientName: "c", Validity: time.Hour},
		"no validity":    {ServerName: "s", DNSNames: []string{"s"}, ClientName: "c"},
	} {
		if _, err := Generate(r); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func parse(t *testing.T, p []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(p)
	if block == nil {
		t.Fatal("no PEM")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The command prints the two Secrets the plain manifests mount and
// reference, and they work together.
func TestCommandPrintsWorkingSecrets(t *testing.T) {
	var out, errs bytes.Buffer
	if err := Command([]string{"--namespace", "keda-scalers", "--dns-name", "scaler.example", "--ip", "10.0.0.7"}, time.Now(), &out, &errs); err != nil {
		t.Fatal(err, errs.String())
	}
	docs := strings.Split(out.String(), "---\n")
	if len(docs) != 2 {
		t.Fatalf("want 2 documents, got %d:\n%s", len(docs), out.String())
	}
	var server, client corev1.Secret
	for i, s := range []*corev1.Secret{&server, &client} {
		if err := yaml.UnmarshalStrict([]byte(docs[i]), s); err != nil {
			t.Fatal(err)
		}
	}
	if server.Namespace != "keda-scalers" || server.Name != names.ServerSecret() || client.Namespace != "keda" || client.Name != names.ClientSecret() ||
		server.Type != corev1.SecretTypeTLS || client.Type != corev1.SecretTypeTLS {
		t.Fatalf("Secrets: %s/%s %s, %s/%s %s", server.Namespace, server.Name, server.Type, client.Namespace, client.Name, client.Type)
	}
	if strings.Contains(out.String(), "creationTimestamp") {
		t.Errorf("the Secrets carry a creationTimestamp:\n%s", out.String())
	}
	cert := parse(t, server.Data["tls.crt"])
	if want := append(names.ServiceDNSNames(), "scaler.example"); !slices.Equal(cert.DNSNames, want) || len(cert.IPAddresses) != 1 ||
		!cert.IPAddresses[0].Equal(net.ParseIP("10.0.0.7")) {
		t.Errorf("server certificate names %v %v, want %v and 10.0.0.7", cert.DNSNames, cert.IPAddresses, want)
	}
	if d := time.Until(cert.NotAfter); d < 3649*24*time.Hour || d > 3650*24*time.Hour {
		t.Errorf("valid for %v, want 3650 days", d)
	}
	b := Bundle{CACert: server.Data["ca.crt"], ServerCert: server.Data["tls.crt"], ServerKey: server.Data["tls.key"]}
	files := writeServer(t, t.TempDir(), b)
	files.ClientNames = []string{names.ClientName()}
	cfg, err := ServerConfig(files)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlstest.Handshake(cfg, tlstest.KEDA(t, "scaler.example", client.Data["ca.crt"], client.Data["tls.crt"], client.Data["tls.key"])); err != nil {
		t.Errorf("KEDA with the client Secret: %v", err)
	}
}

func TestCommandErrors(t *testing.T) {
	for _, args := range [][]string{{"--ip", "not-an-ip"}, {"extra"}, {"--namespace", ""}, {"--days", "0"}, {"--dns-name", ""}} {
		var out, errs bytes.Buffer
		if err := Command(args, time.Now(), &out, &errs); err == nil {
			t.Errorf("%v: no error", args)
		}
		if out.Len() > 0 {
			t.Errorf("%v: printed Secrets despite the error", args)
		}
	}
}
