package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A wrong PAT shows at once: /readyz fails and names the organization and
// the cause, the metric says which organization, and the PAT appears
// nowhere. After the Secret is fixed (the PAT file rewritten), the next
// check accepts it and the scaler is ready.
func TestReadinessFailsWhileACredentialIsRefused(t *testing.T) {
	defer func(d time.Duration) { credentialRecheck = d }(credentialRecheck)
	credentialRecheck = 100 * time.Millisecond
	fake, _, _ := startFake(t, testPAT)
	patFile := filepath.Join(t.TempDir(), "pat")
	const wrong = "wrong-pat-0123456789abcdef"
	if err := os.WriteFile(patFile, []byte(wrong), 0o600); err != nil {
		t.Fatal(err)
	}
	inst, logs := startScaler(t, "--org-url", fake.OrgURL("contoso"), "--pat-file", patFile, "--azdo-timeout", "2s")
	base := "http://" + inst.HTTPAddr
	var code int
	var body string
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if code, body = get(t, base+"/readyz"); code == 503 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code != 503 || !strings.Contains(body, "organization contoso") || !strings.Contains(body, "HTTP 401") {
		t.Fatalf("/readyz = %d %q; want 503 naming contoso and the refusal", code, body)
	}
	if _, m := get(t, base+"/metrics"); !strings.Contains(m, `azdo_keda_scaler_credential_accepted{organization="contoso"} 0`) {
		t.Fatal("the metric does not say contoso's credential is refused")
	}
	// The Secret is fixed: the next check accepts the new PAT.
	if err := os.WriteFile(patFile, []byte(testPAT), 0o600); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if code, body = get(t, base+"/readyz"); code == 200 {
			break
		}
	}
	if code != 200 {
		t.Fatalf("after the PAT was fixed: /readyz = %d %q", code, body)
	}
	if _, m := get(t, base+"/metrics"); !strings.Contains(m, `azdo_keda_scaler_credential_accepted{organization="contoso"} 1`) {
		t.Fatal("the metric does not say contoso's credential is accepted now")
	}
	for _, text := range []string{body, logs.String()} {
		if strings.Contains(text, wrong) || strings.Contains(text, testPAT) {
			t.Fatal("a PAT appears in /readyz or the logs")
		}
	}
}
