package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/queue"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadFile(t *testing.T) {
	patFile := writeFile(t, "pat", "token\n")
	file := writeFile(t, "config.yaml", `
organizations:
  - url: https://dev.azure.com/Contoso/
    patFile: `+patFile+`
    allowedNamespaces: ["team-*"]
    pools:
      - name: GPU
        allowedNamespaces: [ml]
      - id: 7
  - name: fab
    url: https://fabrikam.visualstudio.com
    patFile: `+patFile+`
`)
	cfg, err := LoadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Names(); len(got) != 2 || got[0] != "Contoso" || got[1] != "fab" {
		t.Fatalf("names = %v", got)
	}
	if u, _ := cfg.URL("Contoso"); u != "https://dev.azure.com/contoso" {
		t.Errorf("URL = %q", u)
	}
	if cfg.Organizations[0].Auth != AuthPAT {
		t.Errorf("auth defaults to pat, got %q", cfg.Organizations[0].Auth)
	}
	if p, err := cfg.Organizations[0].PAT().PAT(); err != nil || p != "token" {
		t.Errorf("PAT = %q, %v", p, err)
	}
	for _, c := range []struct {
		org, pool, ns string
		id            int
		want          bool
	}{
		{"Contoso", "gpu", "ml", 3, true},
		{"Contoso", "GPU", "team-a", 3, false}, // the pool's own list wins
		{"Contoso", "linux", "team-a", 4, true},
		{"Contoso", "linux", "other", 4, false},
		{"Contoso", "by-id", "team-x", 7, true}, // listed without its own list: the organization's
		{"fab", "any", "anyone", 1, true},
		{"nope", "any", "anyone", 1, false},
	} {
		if got := cfg.Allowed(queue.Pool{Key: queue.Key{Org: c.org, ID: c.id}, Name: c.pool}, c.ns); got != c.want {
			t.Errorf("Allowed(%s, %s, %s) = %v", c.org, c.pool, c.ns, got)
		}
	}
	for _, bad := range []struct{ yaml, want string }{
		{"organizations: []", "no organizations"},
		{"organizations:\n  - url: https://dev.azure.com/a\n", "patFile is required"},
		{"organizations:\n  - url: ftp://x\n    patFile: p\n", "not an http(s) URL"},
		{"organizations:\n  - url: https://dev.azure.com/a\n    patFile: p\n    colour: blue\n", "colour"},
		{"organizations:\n  - url: https://dev.azure.com/a\n    patFile: p\n  - url: https://dev.azure.com/A/\n    patFile: p\n", "twice"},
		{"organizations:\n  - url: https://dev.azure.com/a\n    patFile: p\n    pools: [{name: x, id: 3}]\n", "exactly one of name and id"},
		{"organizations:\n  - url: https://dev.azure.com/a\n    auth: managed\n", `organizations[0] (https://dev.azure.com/a): auth "managed"`},
		{"organizations:\n  - url: https://dev.azure.com/a\n    patFile: p\n    clientId: c\n", "clientId is for auth: workload-identity or service-principal"},
		{"organizations:\n  - url: https://dev.azure.com/a\n    auth: service-principal\n    clientId: c\n    clientSecretFile: s\n", "needs tenantId and clientId"},
		{"organizations:\n  - url: https://dev.azure.com/a\n    auth: service-principal\n    tenantId: t\n    clientId: c\n", "exactly one of clientSecretFile and clientCertificateFile"},
		{"organizations:\n  - url: https://dev.azure.com/a\n    auth: workload-identity\n    patFile: p\n", "patFile is for auth: pat"},
		{"organizations:\n  - url: https://dev.azure.com/a\n    auth: workload-identity\n    clientSecretFile: s\n", "are for auth: service-principal"},
		{"organizations:\n  - url: https://dev.azure.com/a\n    auth: workload-identity\n    authorityHost: http://login\n", "not an https URL"},
	} {
		_, err := LoadFile(writeFile(t, "c.yaml", bad.yaml))
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: error %v, want %q", bad.yaml, err, bad.want)
		}
	}
}
