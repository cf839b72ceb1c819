package charts

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/tlstest"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/mtls"
)

// secretsByName returns the rendered Secrets by namespace/name (the
// release's namespace when the template leaves it out, as Helm applies it).
func secretsByName(objs []Object, releaseNS string) map[string]*corev1.Secret {
	out := map[string]*corev1.Secret{}
	for _, o := range objs {
		if s, ok := o.Typed.(*corev1.Secret); ok {
			ns := s.Namespace
			if ns == "" {
				ns = releaseNS
			}
			out[ns+"/"+s.Name] = s
		}
	}
	return out
}

func checkTLSVolume(t *testing.T, d *appsv1.Deployment, secret string) {
	t.Helper()
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Name == "tls" && v.Secret != nil && v.Secret.SecretName == secret {
			return
		}
	}
	t.Errorf("the scaler must mount Secret %s as its TLS: %+v", secret, d.Spec.Template.Spec.Volumes)
}

// checkClusterTriggerAuthentication: KEDA gets caCert and its client
// certificate from secret, which it reads in its own namespace.
func checkClusterTriggerAuthentication(t *testing.T, objs []Object, name, secret string) {
	t.Helper()
	cta, ok := Find[*kedav1alpha1.ClusterTriggerAuthentication](objs)
	if !ok || cta.Name != name {
		t.Fatalf("want ClusterTriggerAuthentication %s, got %v", name, cta)
	}
	var params []string
	for _, r := range cta.Spec.SecretTargetRef {
		if r.Name != secret {
			t.Errorf("parameter %s from Secret %s, want %s", r.Parameter, r.Name, secret)
		}
		params = append(params, r.Parameter+"="+r.Key)
	}
	if want := []string{"caCert=ca.crt", "tlsClientCert=tls.crt", "tlsClientKey=tls.key"}; !slices.Equal(params, want) {
		t.Errorf("ClusterTriggerAuthentication parameters %v, want %v", params, want)
	}
}

// The default: the chart makes a CA, the scaler's certificate and KEDA's,
// KEDA's key is only in KEDA's namespace, and the scaler's own code, with
// the flags the chart passes, admits KEDA's certificate and nothing else.
func TestDefaultMutualTLS(t *testing.T) {
	_, objs, notes, err := Render(scalerRelease(), "ci/cluster-namespaces-values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d, _ := Find[*appsv1.Deployment](objs)
	f := scalerFlags(t, d.Spec.Template.Spec.Containers[0])
	if !slices.Equal([]string(f.TLSClientNames), []string{"azdo-keda-scaler-keda"}) {
		t.Errorf("client names %v, want the generated client's only", f.TLSClientNames)
	}
	checkTLSVolume(t, d, "azdo-keda-scaler-tls")
	checkClusterTriggerAuthentication(t, objs, "azdo-keda-scaler", "azdo-keda-scaler-keda-client")
	secrets := secretsByName(objs, scalerNS)
	ca, server, client := secrets[scalerNS+"/azdo-keda-scaler-tls-ca"], secrets[scalerNS+"/azdo-keda-scaler-tls"], secrets["keda/azdo-keda-scaler-keda-client"]
	if ca == nil || server == nil || client == nil {
		t.Fatalf("want the CA's, the server's and KEDA's Secrets, got %v", slices.Collect(maps.Keys(secrets)))
	}
	if _, ok := server.Data["ca.key"]; ok || string(server.Data["ca.crt"]) != string(ca.Data["tls.crt"]) || string(client.Data["ca.crt"]) != string(ca.Data["tls.crt"]) {
		t.Error("the server's and KEDA's Secrets must carry the CA's certificate, never its key")
	}
	// KEDA's key is in no Secret outside KEDA's namespace.
	for name, s := range secrets {
		if !strings.HasPrefix(name, "keda/") && slices.ContainsFunc(slices.Collect(maps.Values(s.Data)), func(v []byte) bool { return string(v) == string(client.Data["tls.key"]) }) {
			t.Errorf("KEDA's client key is in %s", name)
		}
	}
	for _, key := range [][]byte{ca.Data["tls.key"], server.Data["tls.key"], client.Data["tls.key"]} {
		if !strings.HasPrefix(string(key), "-----BEGIN EC PRIVATE KEY-----") {
			t.Errorf("want ECDSA keys, got %.40s", key)
		}
	}
	if !strings.Contains(notes, "ClusterTriggerAuthentication, name: azdo-keda-scaler") {
		t.Errorf("NOTES must name the ClusterTriggerAuthentication:\n%s", notes)
	}

	// The scaler, with the chart's files and flags.
	dir := t.TempDir()
	files := mtls.Files{Cert: filepath.Join(dir, "tls.crt"), Key: filepath.Join(dir, "tls.key"), ClientCA: filepath.Join(dir, "ca.crt"), ClientNames: f.TLSClientNames}
	for path, key := range map[string]string{files.Cert: "tls.crt", files.Key: "tls.key", files.ClientCA: "ca.crt"} {
		if err := os.WriteFile(path, server.Data[key], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := mtls.ServerConfig(files)
	if err != nil {
		t.Fatal(err)
	}
	// KEDA dials every address the scaler answers to, with the Secret the
	// ClusterTriggerAuthentication names.
	for _, addr := range append([]string(f.ScalerAddresses), "azdo-keda-scaler.keda-scalers.svc.cluster.local:6000") {
		host := addr[:strings.LastIndex(addr, ":")]
		if err := tlstest.Handshake(cfg, tlstest.KEDA(t, host, client.Data["ca.crt"], client.Data["tls.crt"], client.Data["tls.key"])); err != nil {
			t.Errorf("KEDA dialling %s: %v", host, err)
		}
	}
	// The server's own certificate chains to the same CA (Helm's certificates
	// allow client authentication): only the client name keeps it out.
	if err := tlstest.Handshake(cfg, tlstest.KEDA(t, "azdo-keda-scaler.keda-scalers.svc", server.Data["ca.crt"], server.Data["tls.crt"], server.Data["tls.key"])); err == nil {
		t.Error("the server's certificate is admitted as a client")
	}
	if err := tlstest.Handshake(cfg, tlstest.KEDA(t, "azdo-keda-scaler.keda-scalers.svc", server.Data["ca.crt"], nil, nil)); err == nil {
		t.Error("a client without a certificate is admitted")
	}
}

// The agent pool chart's default is the scaler chart's default: a team
// that installs both with the documented names gets mutual TLS without a
// setting.
func TestPoolChartUsesTheScalersClusterTriggerAuthentication(t *testing.T) {
	_, scalerObjs, _, err := Render(scalerRelease(), "ci/minimal-values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cta, _ := Find[*kedav1alpha1.ClusterTriggerAuthentication](scalerObjs)
	_, poolObjs, notes, err := Render(poolRelease(), "ci/linux-dind-values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sj, _ := Find[*kedav1alpha1.ScaledJob](poolObjs)
	tr := sj.Spec.Triggers[0]
	if tr.Metadata["enableTLS"] != "true" || tr.AuthenticationRef == nil || tr.AuthenticationRef.Kind != "ClusterTriggerAuthentication" || tr.AuthenticationRef.Name != cta.Name {
		t.Errorf("the pool's trigger must enable TLS through ClusterTriggerAuthentication %s: %+v", cta.Name, tr)
	}
	if k := kinds(poolObjs); slices.Contains(k, "TriggerAuthentication") {
		t.Errorf("the pool chart must put no TLS material in the team's namespace: %v", k)
	}
	for name, s := range secretsByName(poolObjs, poolRelease().Namespace) {
		for _, key := range []string{"tls.key", "ca.crt", "tls.crt"} {
			if _, ok := s.Data[key]; ok {
				t.Errorf("the pool chart's Secret %s holds %s: no TLS material belongs in the team's namespace", name, key)
			}
		}
	}
	if !strings.Contains(notes, "over TLS with ClusterTriggerAuthentication azdo-keda-scaler") {
		t.Errorf("NOTES must say how KEDA reaches the scaler:\n%s", notes)
	}
	_, plainObjs, _, err := Render(poolRelease(), writeValues(t, "azp: {url: https://dev.azure.com/c, pool: p, existingSecret: s}\nscaler: {address: 'a:6000', tls: {enabled: false}}"))
	if err != nil {
		t.Fatal(err)
	}
	sj, _ = Find[*kedav1alpha1.ScaledJob](plainObjs)
	if tr := sj.Spec.Triggers[0]; tr.Metadata["enableTLS"] != "" || tr.AuthenticationRef != nil {
		t.Errorf("scaler.tls.enabled=false: %+v", tr)
	}
}

// deploy/'s plain manifests cannot carry generated keys: they mount the
// Secrets `azdo-keda-scaler tls-secrets` prints, under the names it gives.
func TestPlainManifestsUseTheTLSSecretsCommand(t *testing.T) {
	_, objs, _, err := Render(scalerRelease(), "ci/plain-manifests-values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	names := mtls.Names{Name: "azdo-keda-scaler", Namespace: scalerNS, KEDANamespace: "keda"}
	if len(secretsByName(objs, scalerNS)) != 0 {
		t.Error("the plain manifests must not carry Secrets")
	}
	d, _ := Find[*appsv1.Deployment](objs)
	f := scalerFlags(t, d.Spec.Template.Spec.Containers[0])
	checkTLSVolume(t, d, names.ServerSecret())
	checkClusterTriggerAuthentication(t, objs, "azdo-keda-scaler", names.ClientSecret())
	if !slices.Equal([]string(f.TLSClientNames), []string{names.ClientName()}) {
		t.Errorf("client names %v, want %s", f.TLSClientNames, names.ClientName())
	}
}
