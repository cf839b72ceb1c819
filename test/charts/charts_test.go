package charts

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/config"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/trigger"
	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
)

const scalerNS = "keda-scalers"

func scalerRelease() Release {
	return Release{Chart: "azdo-keda-scaler", Name: "azdo-keda-scaler", Namespace: scalerNS}
}

func poolRelease() Release {
	return Release{Chart: "azdo-agent-pool", Name: "linux-agents", Namespace: "team-a"}
}

func kinds(objs []Object) []string {
	var k []string
	for _, o := range objs {
		k = append(k, o.Kind)
	}
	return k
}

// scalerFlags parses the Deployment's arguments with the scaler's own flag
// parser: a chart that passes a flag the binary does not know fails here.
func scalerFlags(t *testing.T, c corev1.Container) *config.Flags {
	t.Helper()
	f, err := config.Parse("azdo-keda-scaler", c.Args, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatalf("the scaler rejects the chart's args %q: %v", c.Args, err)
	}
	return f
}

func TestScalerChart(t *testing.T) {
	cases := []struct {
		values    string
		wantKinds []string
		check     func(t *testing.T, d *appsv1.Deployment, f *config.Flags, objs []Object)
	}{
		{
			values:    "ci/minimal-values.yaml",
			wantKinds: []string{"ConfigMap", "Deployment", "Role", "RoleBinding", "Service", "ServiceAccount"},
			check: func(t *testing.T, d *appsv1.Deployment, f *config.Flags, objs []Object) {
				if !f.SweepDryRun || !f.LeaderElect || f.SweepInterval == 0 {
					t.Errorf("defaults: sweeper must run in dry run under leader election, got dryRun=%v leaderElect=%v interval=%v",
						f.SweepDryRun, f.LeaderElect, f.SweepInterval)
				}
				if d.Spec.Template.Spec.AutomountServiceAccountToken == nil || !*d.Spec.Template.Spec.AutomountServiceAccountToken {
					t.Error("leader election needs the service account token mounted")
				}
				role, _ := Find[*rbacv1.Role](objs)
				var leases bool
				for _, r := range role.Rules {
					if slices.Contains(r.Resources, "leases") && slices.Contains(r.Verbs, "update") && slices.Contains(r.ResourceNames, f.LeaderElectLease) {
						leases = true
					}
				}
				if !leases || f.LeaderElectLease != "azdo-keda-scaler" {
					t.Errorf("Role must let the scaler update its Lease %q (named after the release): %+v", f.LeaderElectLease, role.Rules)
				}
				if !f.Placeholders || f.PlaceholderDryRun || f.SweepFinishedFor != 30*time.Second || !slices.Equal([]string(f.SweepPools), []string{"*"}) ||
					f.SweepAgentPattern != "*-?????-?????" {
					t.Errorf("defaults: placeholders on, finished agents after 30s, every pool, KEDA pod names; got %+v", f)
				}
			},
		},
		{
			values:    "ci/multi-org-values.yaml",
			wantKinds: []string{"ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget", "Role", "RoleBinding", "Secret", "Service", "ServiceAccount", "ServiceMonitor"},
			check: func(t *testing.T, d *appsv1.Deployment, f *config.Flags, objs []Object) {
				if f.SweepDryRun || f.SweepAgentPattern != "*-agents-*" || !slices.Equal([]string(f.SweepProtect), []string{"template-*", "placeholder"}) {
					t.Errorf("sweeper flags not from values: %+v", f)
				}
				sec, _ := Find[*corev1.Secret](objs)
				if string(sec.Data["pat"]) != "not-a-real-pat" {
					t.Errorf("created PAT Secret holds %q", sec.Data["pat"])
				}
			},
		},
		{
			values:    "ci/tls-values.yaml",
			wantKinds: []string{"ConfigMap", "Deployment", "Service", "ServiceAccount"},
			check: func(t *testing.T, d *appsv1.Deployment, f *config.Flags, objs []Object) {
				if f.TLSCertFile == "" || f.TLSKeyFile == "" || f.TLSClientCAFile == "" {
					t.Errorf("TLS with client certificates: want cert, key and client CA flags, got %+v", f)
				}
				if f.SweepInterval != 0 {
					t.Errorf("sweeper disabled but --sweep-interval=%v", f.SweepInterval)
				}
				if a := d.Spec.Template.Spec.AutomountServiceAccountToken; a == nil || *a {
					t.Error("without leader election the pod needs no API token")
				}
				mountedUnder(t, d.Spec.Template.Spec.Containers[0], f.TLSCertFile, f.TLSKeyFile, f.TLSClientCAFile)
			},
		},
	}
	for _, tc := range cases {
		t.Run(filepath.Base(tc.values), func(t *testing.T) {
			_, objs, notes, err := Render(scalerRelease(), tc.values)
			if err != nil {
				t.Fatal(err)
			}
			if got := kinds(objs); !slices.Equal(got, tc.wantKinds) {
				t.Errorf("objects: got %v, want %v", got, tc.wantKinds)
			}
			d, ok := Find[*appsv1.Deployment](objs)
			if !ok {
				t.Fatal("no Deployment")
			}
			pod := d.Spec.Template.Spec
			c := pod.Containers[0]
			if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
				t.Error("pod must run as non-root")
			}
			if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
				t.Error("root filesystem must be read-only")
			}
			if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
				t.Error("probes must be /healthz (liveness) and /readyz (readiness)")
			}
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
				t.Error("resources must be set")
			}
			f := scalerFlags(t, c)
			cfg := renderedConfig(t, objs, f.ConfigFile, c)
			for _, o := range cfg.Organizations {
				mountedUnder(t, c, o.PATFile)
			}
			svc, _ := Find[*corev1.Service](objs)
			if svc.Spec.Ports[0].TargetPort.String() != "grpc" || !strings.HasSuffix(f.GRPCAddr, ":6000") {
				t.Errorf("Service must target the gRPC port the scaler listens on (%s): %+v", f.GRPCAddr, svc.Spec.Ports)
			}
			if !strings.Contains(notes, "scalerAddress") || !strings.Contains(notes, scalerNS) {
				t.Errorf("NOTES.txt must tell the user the scalerAddress to use:\n%s", notes)
			}
			tc.check(t, d, f, objs)
		})
	}
}

// Two releases in one namespace never share a Lease.
func TestLeaseNamedAfterTheRelease(t *testing.T) {
	leases := map[string]bool{}
	for _, name := range []string{"azdo-keda-scaler", "team-b"} {
		_, objs, _, err := Render(Release{Chart: "azdo-keda-scaler", Name: name, Namespace: scalerNS}, "ci/minimal-values.yaml")
		if err != nil {
			t.Fatal(err)
		}
		d, _ := Find[*appsv1.Deployment](objs)
		leases[scalerFlags(t, d.Spec.Template.Spec.Containers[0]).LeaderElectLease] = true
	}
	if len(leases) != 2 {
		t.Fatalf("two releases, Leases %v", leases)
	}
}

// renderedConfig loads the ConfigMap's config file with the scaler's own
// loader, as the scaler will at start.
func renderedConfig(t *testing.T, objs []Object, path string, c corev1.Container) *config.File {
	t.Helper()
	cm, _ := Find[*corev1.ConfigMap](objs)
	mountedUnder(t, c, path)
	f := filepath.Join(t.TempDir(), filepath.Base(path))
	if err := os.WriteFile(f, []byte(cm.Data[filepath.Base(path)]), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadFile(f)
	if err != nil {
		t.Fatalf("the scaler rejects the chart's config: %v\n%s", err, cm.Data[filepath.Base(path)])
	}
	return cfg
}

// mountedUnder fails unless every path lies under one of the container's mounts.
func mountedUnder(t *testing.T, c corev1.Container, paths ...string) {
	t.Helper()
	for _, p := range paths {
		ok := false
		for _, m := range c.VolumeMounts {
			if strings.HasPrefix(p, strings.TrimSuffix(m.MountPath, "/")+"/") {
				ok = true
			}
		}
		if !ok {
			t.Errorf("%s is not under any volume mount of %s", p, c.Name)
		}
	}
}

func TestAgentPoolChart(t *testing.T) {
	orgs := config.WithPAT("contoso", "https://dev.azure.com/contoso", nil)
	cases := []struct {
		values    string
		wantKinds []string
		check     func(t *testing.T, pod corev1.PodSpec, objs []Object)
	}{
		{
			values:    "ci/linux-dind-values.yaml",
			wantKinds: []string{"ScaledJob"},
			check: func(t *testing.T, pod corev1.PodSpec, objs []Object) {
				dind := sidecar(t, pod)
				if dind.SecurityContext == nil || dind.SecurityContext.Privileged == nil || !*dind.SecurityContext.Privileged {
					t.Error("rootful DinD is privileged, and the chart must say so explicitly")
				}
				if !strings.HasSuffix(dind.Image, "-dind") {
					t.Errorf("DinD image %s", dind.Image)
				}
				if !hasMount(agent(t, pod), "/azp/cache") {
					t.Error("cache volume not mounted")
				}
			},
		},
		{
			values:    "ci/windows-no-dind-values.yaml",
			wantKinds: []string{"ScaledJob", "Secret"},
			check: func(t *testing.T, pod corev1.PodSpec, objs []Object) {
				if len(pod.InitContainers) != 0 {
					t.Errorf("DinD off: want no init containers, got %d", len(pod.InitContainers))
				}
				if _, ok := env(agent(t, pod), "DOCKER_HOST"); ok {
					t.Error("DinD off: DOCKER_HOST must not be set")
				}
				for _, v := range pod.Volumes {
					if v.Name == "docker-socket" || v.Name == "docker-storage" {
						t.Errorf("DinD off: volume %s", v.Name)
					}
				}
			},
		},
		{
			values:    "ci/rootless-values.yaml",
			wantKinds: []string{"ScaledJob", "TriggerAuthentication"},
			check: func(t *testing.T, pod corev1.PodSpec, objs []Object) {
				dind := sidecar(t, pod)
				if dind.SecurityContext.Privileged == nil || *dind.SecurityContext.Privileged {
					t.Error("rootless DinD must not be privileged")
				}
				if !strings.HasSuffix(dind.Image, "-dind-rootless") {
					t.Errorf("rootless DinD image %s", dind.Image)
				}
				var eph bool
				for _, v := range pod.Volumes {
					if v.Name == "docker-storage" && v.Ephemeral != nil && *v.Ephemeral.VolumeClaimTemplate.Spec.StorageClassName == "fast" {
						eph = true
					}
				}
				if !eph {
					t.Error("docker storage must be an ephemeral volume of class fast")
				}
				sj, _ := Find[*kedav1alpha1.ScaledJob](objs)
				ta, _ := Find[*kedav1alpha1.TriggerAuthentication](objs)
				tr := sj.Spec.Triggers[0]
				if tr.Metadata["enableTLS"] != "true" || tr.AuthenticationRef == nil || tr.AuthenticationRef.Name != ta.Name {
					t.Errorf("TLS trigger must enable TLS and reference the TriggerAuthentication: %+v", tr)
				}
				var params []string
				for _, s := range ta.Spec.SecretTargetRef {
					params = append(params, s.Parameter)
				}
				if !slices.Equal(params, []string{"caCert", "tlsClientCert", "tlsClientKey"}) {
					t.Errorf("TriggerAuthentication parameters %v", params)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(filepath.Base(tc.values), func(t *testing.T) {
			_, objs, notes, err := Render(poolRelease(), tc.values)
			if err != nil {
				t.Fatal(err)
			}
			if got := kinds(objs); !slices.Equal(got, tc.wantKinds) {
				t.Errorf("objects: got %v, want %v", got, tc.wantKinds)
			}
			sj, ok := Find[*kedav1alpha1.ScaledJob](objs)
			if !ok {
				t.Fatal("no ScaledJob")
			}
			if len(sj.Spec.Triggers) != 1 || sj.Spec.Triggers[0].Type != "external" {
				t.Fatalf("want one external trigger, got %+v", sj.Spec.Triggers)
			}
			// The scaler itself must accept the metadata the chart writes.
			md := sj.Spec.Triggers[0].Metadata
			if _, err := trigger.Parse(md, orgs); err != nil {
				t.Errorf("the scaler rejects the chart's trigger metadata %v: %v", md, err)
			}
			if md["scalerAddress"] != "azdo-keda-scaler.keda-scalers.svc:6000" {
				t.Errorf("scalerAddress %q", md["scalerAddress"])
			}
			job := sj.Spec.JobTargetRef
			if job.Parallelism == nil || *job.Parallelism != 1 || job.Completions == nil || *job.Completions != 1 || job.BackoffLimit == nil || *job.BackoffLimit != 0 {
				t.Error("each Job must run exactly one agent once, never retried")
			}
			pod := job.Template.Spec
			if pod.RestartPolicy != corev1.RestartPolicyNever {
				t.Errorf("restartPolicy %s", pod.RestartPolicy)
			}
			a := agent(t, pod)
			for _, k := range []string{"AZP_URL", "AZP_POOL", "AZP_TOKEN_FILE", "AZP_WORK", "AZP_IDLE_TIMEOUT"} {
				if _, ok := env(a, k); !ok {
					t.Errorf("agent env lacks %s", k)
				}
			}
			if v, _ := env(a, "AZP_POOL"); v.Value != md["poolName"] {
				t.Errorf("AZP_POOL %q differs from the trigger's poolName %q", v.Value, md["poolName"])
			}
			if v, _ := env(a, "AZP_AGENT_NAME"); v.ValueFrom == nil || v.ValueFrom.FieldRef.FieldPath != "metadata.name" {
				t.Error("AZP_AGENT_NAME must come from the pod name (downward API)")
			}
			for _, e := range a.Env {
				if strings.Contains(strings.ToLower(e.Name), "token") && e.Name != "AZP_TOKEN_FILE" || e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					t.Errorf("the PAT must reach the agent as a file, not env %s", e.Name)
				}
			}
			tokenFile, _ := env(a, "AZP_TOKEN_FILE")
			mountedUnder(t, a, tokenFile.Value)
			if a.SecurityContext == nil || a.SecurityContext.RunAsNonRoot == nil || !*a.SecurityContext.RunAsNonRoot {
				t.Error("the agent must run as non-root")
			}
			if notes == "" {
				t.Error("no NOTES.txt")
			}
			tc.check(t, pod, objs)
		})
	}
}

// The routing values reach the trigger, and the scaler accepts them; the
// defaults write nothing (exclusive routing, priority 0).
func TestPoolRoutingValues(t *testing.T) {
	orgs := config.WithPAT("contoso", "https://dev.azure.com/contoso", nil)
	base := "azp: {url: https://dev.azure.com/c, pool: p, existingSecret: s, idleTimeoutSeconds: 120}\nscaler: {address: 'a:6000'}\n"
	for values, want := range map[string]map[string]string{
		"": {"priority": "", "routing": ""},
		"trigger: {priority: -3, routing: shared}": {"priority": "-3", "routing": "shared"},
	} {
		f := filepath.Join(t.TempDir(), "values.yaml")
		if err := os.WriteFile(f, []byte(base+values), 0o600); err != nil {
			t.Fatal(err)
		}
		_, objs, _, err := Render(poolRelease(), f)
		if err != nil {
			t.Fatal(err)
		}
		sj, _ := Find[*kedav1alpha1.ScaledJob](objs)
		md := sj.Spec.Triggers[0].Metadata
		for k, v := range want {
			if md[k] != v {
				t.Errorf("%q: metadata %s = %q, want %q", values, k, md[k], v)
			}
		}
		spec, err := trigger.Parse(md, orgs)
		if err != nil {
			t.Fatalf("the scaler rejects %v: %v", md, err)
		}
		if want["routing"] == "shared" != spec.Shared {
			t.Errorf("%q: shared = %v", values, spec.Shared)
		}
		if v, _ := env(agent(t, sj.Spec.JobTargetRef.Template.Spec), "AZP_IDLE_TIMEOUT"); v.Value != "120" {
			t.Errorf("AZP_IDLE_TIMEOUT = %q, want 120", v.Value)
		}
	}
}

// sidecar checks the DinD native-sidecar contract and returns the container.
func sidecar(t *testing.T, pod corev1.PodSpec) corev1.Container {
	t.Helper()
	if len(pod.InitContainers) != 1 {
		t.Fatalf("want the DinD sidecar as the one init container, got %d", len(pod.InitContainers))
	}
	d := pod.InitContainers[0]
	if d.RestartPolicy == nil || *d.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Error("DinD must be a native sidecar (restartPolicy: Always) so the Job completes when the agent exits")
	}
	if d.StartupProbe == nil || d.StartupProbe.Exec == nil || !slices.Contains(d.StartupProbe.Exec.Command, "info") {
		t.Error("DinD needs a `docker info` startup probe so the agent starts after the daemon")
	}
	if len(d.Ports) != 0 {
		t.Errorf("DinD must expose no port: %+v", d.Ports)
	}
	for _, a := range append(d.Args, d.Command...) {
		if strings.Contains(a, "tcp://") {
			t.Errorf("DinD listens on TCP: %s", a)
		}
	}
	host, ok := env(agent(t, pod), "DOCKER_HOST")
	if !ok || !strings.HasPrefix(host.Value, "unix://") {
		t.Fatalf("agent DOCKER_HOST %q", host.Value)
	}
	sock := strings.TrimPrefix(host.Value, "unix://")
	if !slices.ContainsFunc(d.Args, func(a string) bool { return strings.Contains(a, sock) }) {
		t.Errorf("DinD does not listen on the agent's socket %s: %v", sock, d.Args)
	}
	mountedUnder(t, d, sock)
	mountedUnder(t, agent(t, pod), sock)
	return d
}

func agent(t *testing.T, pod corev1.PodSpec) corev1.Container {
	t.Helper()
	for _, c := range pod.Containers {
		if c.Name == "agent" {
			return c
		}
	}
	t.Fatal("no agent container")
	return corev1.Container{}
}

func env(c corev1.Container, name string) (corev1.EnvVar, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e, true
		}
	}
	return corev1.EnvVar{}, false
}

func hasMount(c corev1.Container, path string) bool {
	return slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == path })
}

func TestChartsLint(t *testing.T) {
	for _, tc := range []struct{ chart, values string }{
		{"azdo-keda-scaler", "ci/minimal-values.yaml"},
		{"azdo-keda-scaler", "ci/multi-org-values.yaml"},
		{"azdo-agent-pool", "ci/linux-dind-values.yaml"},
		{"azdo-agent-pool", "ci/rootless-values.yaml"},
	} {
		t.Run(tc.chart+"/"+filepath.Base(tc.values), func(t *testing.T) {
			vals := readValues(t, filepath.Join(ChartDir(tc.chart), tc.values))
			res := lint.All(ChartDir(tc.chart), vals, "default", false)
			for _, m := range res.Messages {
				// INFO is advice (e.g. "icon is recommended"); anything above fails.
				if m.Severity > support.InfoSev {
					t.Errorf("helm lint: %s", m)
				}
			}
		})
	}
}

// TestSchemaRejects shows the message a user reads when values are wrong.
func TestSchemaRejects(t *testing.T) {
	cases := []struct {
		name, chart, values string
		want                []string
	}{
		{"defaults alone", "azdo-keda-scaler", ``,
			[]string{"organizations/0", "url"}},
		{"no PAT", "azdo-keda-scaler", "organizations: [{url: https://dev.azure.com/contoso}]",
			[]string{"organizations/0", "existingSecret", "pat"}},
		{"not a URL", "azdo-keda-scaler", "organizations: [{url: dev.azure.com/contoso, existingSecret: s}]",
			[]string{"organizations/0/url", "does not match pattern"}},
		{"bad duration", "azdo-keda-scaler", "organizations: [{url: https://dev.azure.com/c, existingSecret: s}]\nscaler: {refreshInterval: 10}",
			[]string{"scaler/refreshInterval", "string"}},
		{"unknown sweeper key", "azdo-keda-scaler", "organizations: [{url: https://dev.azure.com/c, existingSecret: s}]\nsweeper: {dryrun: false}",
			[]string{"sweeper", "dryrun"}},
		{"TLS without Secret", "azdo-keda-scaler", "organizations: [{url: https://dev.azure.com/c, existingSecret: s}]\ntls: {enabled: true}",
			[]string{"tls", "existingSecret"}},
		{"pool: no scaler address", "azdo-agent-pool", "azp: {url: https://dev.azure.com/c, pool: p, existingSecret: s}",
			[]string{"scaler/address"}},
		{"pool: two filters", "azdo-agent-pool", "azp: {url: https://dev.azure.com/c, pool: p, existingSecret: s}\nscaler: {address: 'a:6000'}\ntrigger: {capabilities: docker, parent: tmpl}",
			[]string{"/trigger/parent", "maxLength: got 4, want 0"}},
		{"pool: bad strategy", "azdo-agent-pool", "azp: {url: https://dev.azure.com/c, pool: p, existingSecret: s}\nscaler: {address: 'a:6000'}\nscaledJob: {scalingStrategy: fastest}",
			[]string{"scaledJob/scalingStrategy"}},
		{"pool: bad routing", "azdo-agent-pool", "azp: {url: https://dev.azure.com/c, pool: p, existingSecret: s}\nscaler: {address: 'a:6000'}\ntrigger: {routing: roundrobin}",
			[]string{"trigger/routing"}},
		{"pool: bad storage", "azdo-agent-pool", "azp: {url: https://dev.azure.com/c, pool: p, existingSecret: s}\nscaler: {address: 'a:6000'}\ndind: {storage: {type: hostPath}}",
			[]string{"dind/storage/type"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "values.yaml")
			if err := os.WriteFile(f, []byte(tc.values), 0o600); err != nil {
				t.Fatal(err)
			}
			_, _, _, err := Render(Release{Chart: tc.chart, Name: "r", Namespace: "default"}, f)
			if err == nil {
				t.Fatal("values accepted")
			}
			t.Logf("a user reads:\n%v", err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if !strings.Contains(err.Error(), "values don't meet the specifications of the schema") {
				t.Errorf("want the schema to reject it, got: %v", err)
			}
		})
	}
}

func readValues(t *testing.T, path string) map[string]any {
	t.Helper()
	v, err := chartutil.ReadValuesFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return v.AsMap()
}
