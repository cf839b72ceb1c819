//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/tlstest"
	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"helm.sh/helm/v3/pkg/action"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
)

const (
	scalerNS      = "keda-scalers"
	scalerRelease = "azdo-keda-scaler" // the release name the README uses, so the pool chart's default reference fits
	tlsMount      = "/etc/azdo-keda-scaler/tls/"
)

// scalerChartValues install the scaler chart with its defaults (mutual TLS
// through a ClusterTriggerAuthentication); the scalers of this tier run as
// processes, so only its Secrets, its ClusterTriggerAuthentication and its
// Deployment's arguments are used. 127.0.0.1 is where KEDA reaches them.
func scalerChartValues() map[string]any {
	return map[string]any{
		"organizations": []any{map[string]any{"url": env.fake.OrgURL("contoso"), "existingSecret": "azdo-pat"}},
		"cluster":       map[string]any{"extraScalerAddresses": []any{"127.0.0.1:6000"}},
		"replicaCount":  1,
		// The scalers run as processes; on the node tier's node the
		// Deployment's pod must not start (it has no image there).
		"nodeSelector": map[string]any{"e2e.azdo-keda-scaler/scaler-runs-as-a-process": "true"},
	}
}

// installScalerChart is `helm install azdo-keda-scaler -n keda-scalers`
// with the chart's TLS defaults. It returns the Deployment's --grpc-tls-*
// arguments with the Secret's files written locally where they point.
func installScalerChart(ctx context.Context) ([]string, error) {
	if err := env.cluster.CreateNamespace(ctx, scalerNS); err != nil {
		return nil, err
	}
	cfg, ch, err := helmAction("azdo-keda-scaler", scalerNS)
	if err != nil {
		return nil, err
	}
	install := action.NewInstall(cfg)
	install.ReleaseName, install.Namespace, install.Timeout = scalerRelease, scalerNS, time.Minute
	if _, err := install.Run(ch, scalerChartValues()); err != nil {
		return nil, fmt.Errorf("helm install %s: %w", scalerRelease, err)
	}
	return scalerTLSArgs(ctx)
}

// scalerTLSArgs writes the mounted Secret's files as the kubelet would and
// returns the Deployment's TLS arguments pointing at them.
func scalerTLSArgs(ctx context.Context) ([]string, error) {
	var d appsv1.Deployment
	if err := env.kube.Get(ctx, ctrlclient.ObjectKey{Namespace: scalerNS, Name: scalerRelease}, &d); err != nil {
		return nil, err
	}
	var secretName string
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Name == "tls" && v.Secret != nil {
			secretName = v.Secret.SecretName
		}
	}
	var secret corev1.Secret
	if err := env.kube.Get(ctx, ctrlclient.ObjectKey{Namespace: scalerNS, Name: secretName}, &secret); err != nil {
		return nil, fmt.Errorf("the scaler's TLS Secret %q: %w", secretName, err)
	}
	dir := filepath.Join(env.work, "tls")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	for key, data := range secret.Data {
		if err := os.WriteFile(filepath.Join(dir, key), data, 0o600); err != nil {
			return nil, err
		}
	}
	var args []string
	for _, a := range d.Spec.Template.Spec.Containers[0].Args {
		if strings.HasPrefix(a, "--grpc-tls-") {
			args = append(args, strings.ReplaceAll(a, tlsMount, dir+"/"))
		}
	}
	if len(args) != 4 {
		return nil, fmt.Errorf("want cert, key, client CA and client name arguments, got %q", args)
	}
	return args, nil
}

// kedaTLS is what KEDA builds for a trigger whose authenticationRef is the
// scaler chart's ClusterTriggerAuthentication: caCert, tlsClientCert and
// tlsClientKey read from KEDA's own namespace.
func kedaTLS(t *testing.T) *tls.Config {
	t.Helper()
	ctx := context.Background()
	var cta kedav1alpha1.ClusterTriggerAuthentication
	if err := env.kube.Get(ctx, ctrlclient.ObjectKey{Name: scalerRelease}, &cta); err != nil {
		t.Fatal(err)
	}
	params := map[string][]byte{}
	for _, ref := range cta.Spec.SecretTargetRef {
		var s corev1.Secret
		if err := env.kube.Get(ctx, ctrlclient.ObjectKey{Namespace: "keda", Name: ref.Name}, &s); err != nil {
			t.Fatal(err)
		}
		params[ref.Parameter] = s.Data[ref.Key]
	}
	// gRPC names the server after scalerAddress's host, as KEDA's client does.
	return tlstest.KEDA(t, "", params["caCert"], params["tlsClientCert"], params["tlsClientKey"])
}

// dialAs connects to addr with creds; the caller closes it.
func dialAs(t *testing.T, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// healthy asks gRPC health over a new connection.
func healthy(t *testing.T, addr string, creds credentials.TransportCredentials) error {
	t.Helper()
	conn := dialAs(t, addr, creds)
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

func secretData(t *testing.T, namespace, name string) map[string][]byte {
	t.Helper()
	var s corev1.Secret
	if err := env.kube.Get(context.Background(), ctrlclient.ObjectKey{Namespace: namespace, Name: name}, &s); err != nil {
		t.Fatal(err)
	}
	return s.Data
}

// Scenario 18: every scaler of this tier serves the scaler chart's default,
// mutual TLS, and every ScaledJob reaches it through the chart's
// ClusterTriggerAuthentication, so every other scenario's KEDA calls pass
// through it. Here: nobody without KEDA's certificate gets an answer, no
// team namespace holds key material, and `helm upgrade` keeps the CA and
// KEDA's certificate while a new server certificate applies without a
// restart.
func TestMutualTLSThroughClusterTriggerAuthentication(t *testing.T) {
	ns := "e2e-mtls"
	pool := env.contoso.AddPool("mtls")
	sj := installPool(t, ns, "linux", "contoso", "mtls", linuxCaps)
	waitReconciled(t, ns, sj)
	var scaledJob kedav1alpha1.ScaledJob
	if err := env.kube.Get(context.Background(), ctrlclient.ObjectKey{Namespace: ns, Name: sj}, &scaledJob); err != nil {
		t.Fatal(err)
	}
	if ref := scaledJob.Spec.Triggers[0].AuthenticationRef; ref == nil || ref.Kind != "ClusterTriggerAuthentication" || ref.Name != scalerRelease {
		t.Fatalf("the pool chart's default trigger must use the scaler chart's ClusterTriggerAuthentication: %+v", ref)
	}
	env.contoso.QueueJob(pool, linuxJob)
	first := waitJobs(t, ns, sj, 1, appear)

	// Callers without KEDA's certificate.
	addr := env.scaler.Addr
	kedaCfg := kedaTLS(t)
	if err := healthy(t, addr, credentials.NewTLS(kedaCfg)); err != nil {
		t.Fatalf("KEDA's certificate: %v", err)
	}
	server := secretData(t, scalerNS, scalerRelease+"-tls")
	serverPair, err := tls.X509KeyPair(server["tls.crt"], server["tls.key"])
	if err != nil {
		t.Fatal(err)
	}
	refused := map[string]credentials.TransportCredentials{
		"plaintext":                 insecure.NewCredentials(),
		"TLS without a certificate": credentials.NewTLS(&tls.Config{RootCAs: kedaCfg.RootCAs}),
		"the server's own certificate (same CA, another name)": credentials.NewTLS(&tls.Config{RootCAs: kedaCfg.RootCAs,
			Certificates: []tls.Certificate{serverPair}}),
	}
	for name, creds := range refused {
		if err := healthy(t, addr, creds); err == nil {
			t.Errorf("%s: answered", name)
		}
	}

	// KEDA's key is in KEDA's namespace and nowhere else.
	clientKey := secretData(t, "keda", scalerRelease+"-keda-client")["tls.key"]
	var all corev1.SecretList
	if err := env.kube.List(context.Background(), &all); err != nil {
		t.Fatal(err)
	}
	for _, s := range all.Items {
		for key, v := range s.Data {
			if s.Namespace != "keda" && bytes.Equal(v, clientKey) {
				t.Errorf("KEDA's client key is in %s/%s (%s)", s.Namespace, s.Name, key)
			}
			if s.Namespace == ns && (key == "tls.key" || key == "caCert") {
				t.Errorf("the team's namespace holds TLS material: %s %s", s.Name, key)
			}
		}
	}

	// helm upgrade: same CA and client certificate, a server certificate
	// signed again; the kubelet would update the mounted files, here the
	// test does, and the running scaler uses them at the next handshake.
	ca, client := secretData(t, scalerNS, scalerRelease+"-tls-ca"), secretData(t, "keda", scalerRelease+"-keda-client")
	helmUpgrade(t, "azdo-keda-scaler", scalerNS, scalerRelease, scalerChartValues())
	ca2, client2, server2 := secretData(t, scalerNS, scalerRelease+"-tls-ca"), secretData(t, "keda", scalerRelease+"-keda-client"),
		secretData(t, scalerNS, scalerRelease+"-tls")
	if !bytes.Equal(ca["tls.key"], ca2["tls.key"]) || !bytes.Equal(client["tls.key"], client2["tls.key"]) || !bytes.Equal(client["tls.crt"], client2["tls.crt"]) {
		t.Fatal("helm upgrade replaced the CA or KEDA's certificate: KEDA's calls would fail until it reloads")
	}
	if bytes.Equal(server["tls.crt"], server2["tls.crt"]) {
		t.Fatal("helm upgrade kept the server certificate: new names would never reach it")
	}
	if _, err := scalerTLSArgs(context.Background()); err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(server2["tls.crt"])
	renewed, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	tlsState := func() (serial string, err error) {
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: kedaCfg.RootCAs, Certificates: kedaCfg.Certificates, ServerName: "127.0.0.1"})
		if err != nil {
			return "", err
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
	}
	serial, err := tlsState()
	if err != nil || serial != renewed.SerialNumber.String() {
		t.Fatalf("after the upgrade the scaler presents serial %s (%v), want the new certificate's %s", serial, err, renewed.SerialNumber)
	}
	env.contoso.QueueJob(pool, linuxJob)
	second := waitJobs(t, ns, sj, 2, appear)
	record("18 mutual TLS (the charts' default): KEDA through ClusterTriggerAuthentication %s -> 1 Job in %s; plaintext, no certificate and the server's "+
		"own certificate refused; KEDA's key only in namespace keda; helm upgrade kept CA and client certificate, the new server certificate served "+
		"without a restart, next job -> Job in %s",
		scalerRelease, first.Round(100*time.Millisecond), second.Round(100*time.Millisecond))
}
