package config

import (
	"io"
	"strings"
	"testing"
	"time"
)

func TestFlagsAndEnvironment(t *testing.T) {
	f, err := Parse("x", []string{"--org-url", "https://dev.azure.com/contoso", "--refresh-interval", "15s"},
		env(map[string]string{"AZDO_PAT": "p", "AZDO_REFRESH_INTERVAL": "30s", "AZDO_STALE_AFTER": "5m", "AZDO_SWEEP_DRY_RUN": "true"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if f.RefreshInterval != 15*time.Second {
		t.Errorf("a flag on the command line must win over its env: %v", f.RefreshInterval)
	}
	if f.StaleAfter != 5*time.Minute || !f.SweepDryRun || f.PAT != "p" || f.GRPCAddr != ":6000" || f.HTTPAddr != ":8080" {
		t.Errorf("flags = %+v", f)
	}
	for _, bad := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{nil, nil, "set --org-url"},
		{[]string{"--org-url", "https://x/y"}, nil, "needs --pat-file or AZDO_PAT"},
		{[]string{"--config", "c.yaml", "--org-url", "https://x/y"}, nil, "not both"},
		{[]string{"--demo", "--log-format", "xml"}, nil, "--log-format"},
		{[]string{"--demo", "--refresh-interval", "100ms"}, nil, "--refresh-interval"},
		{[]string{"--demo", "--stale-after", "5s"}, nil, "--stale-after"},
		{[]string{"--demo", "--grpc-tls-cert", "c"}, nil, "go together"},
		{[]string{"--demo", "--grpc-tls-client-ca", "c"}, nil, "needs --grpc-tls-cert"},
		{[]string{"--demo", "--grpc-tls-cert", "c", "--grpc-tls-key", "k", "--grpc-tls-client-name", "keda"}, nil, "--grpc-tls-client-name needs --grpc-tls-client-ca"},
		{[]string{"--demo", "--sweep-agent-pattern", "[x"}, nil, "not a glob"},
		{[]string{"--demo"}, map[string]string{"AZDO_STALE_AFTER": "soon"}, "AZDO_STALE_AFTER"},
		{[]string{"--demo", "extra"}, nil, "unexpected argument"},
	} {
		_, err := Parse("x", bad.args, env(bad.env), io.Discard)
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%v %v: error %v, want %q", bad.args, bad.env, err, bad.want)
		}
	}
}

func TestReadClusterFlags(t *testing.T) {
	base := []string{"--org-url", "https://dev.azure.com/contoso"}
	getenv := env(map[string]string{"AZDO_PAT": "p", "AZDO_SCALER_ADDRESS": "azdo-keda-scaler.keda.svc:6000,azdo-keda-scaler.keda:6000"})
	f, err := Parse("x", append(base, "--read-cluster", "--watch-namespaces", "team-a,team-b"), getenv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !f.ReadCluster || len(f.ScalerAddresses) != 2 || len(f.WatchNS) != 2 {
		t.Fatalf("flags = %+v", f)
	}
	for args, want := range map[string]string{
		"--read-cluster":                    "--read-cluster needs --scaler-address",
		"--scaler-address=x:6000":           "apply only with --read-cluster",
		"--watch-namespaces=team-a":         "apply only with --read-cluster",
		"--read-cluster --scaler-address=x": "",
	} {
		_, err := Parse("x", append(append([]string{}, base...), strings.Fields(args)...), env(map[string]string{"AZDO_PAT": "p"}), io.Discard)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("%s: error %v, want %q", args, err, want)
		}
	}
}
