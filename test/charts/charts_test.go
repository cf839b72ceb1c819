package charts

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/config"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/trigger"
	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
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
			values: "ci/minimal-values.yaml",
			wantKinds: []string{"ClusterRole", "ClusterRoleBinding", "ClusterTriggerAuthentication", "ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget",
				"Role", "RoleBinding", "Secret", "Secret", "Secret", "Service", "ServiceAccount"},
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
				pdb, _ := Find[*policyv1.PodDisruptionBudget](objs)
				if *d.Spec.Replicas != 2 || pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 {
					t.Errorf("default: 2 replicas evicted one at a time, got %d replicas, PDB %+v", *d.Spec.Replicas, pdb.Spec)
				}
				spread := d.Spec.Template.Spec.TopologySpreadConstraints
				if len(spread) != 1 || spread[0].TopologyKey != "kubernetes.io/hostname" || spread[0].WhenUnsatisfiable != corev1.ScheduleAnyway ||
					!maps.Equal(spread[0].LabelSelector.MatchLabels, d.Spec.Selector.MatchLabels) {
					t.Errorf("default: replicas spread softly over nodes, got %+v", spread)
				}
				if !f.Placeholders || f.PlaceholderDryRun || f.SweepFinishedFor != 30*time.Second || len(f.SweepPoolGlobs()) != 0 ||
					f.SweepAgentPattern != "*-?????-?????" {
					t.Errorf("defaults: placeholders on, finished agents after 30s, the pools ScaledJobs use (no listing), KEDA pod names; got %+v", f)
				}
				checkReadCluster(t, f, objs, []string{"azdo-keda-scaler.keda-scalers.svc:6000", "azdo-keda-scaler.keda-scalers:6000"}, nil)
				// Only KEDA's namespace may reach gRPC; the API server and Azure DevOps are reachable.
				np, _ := Find[*networkingv1.NetworkPolicy](objs)
				in := np.Spec.Ingress
				if len(in) < 1 || len(in[0].From) != 1 || in[0].From[0].NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != "keda" ||
					len(in[0].Ports) != 1 || in[0].Ports[0].Port.String() != "grpc" {
					t.Errorf("default NetworkPolicy ingress: %+v", in)
				}
				out := map[int]bool{}
				for _, r := range np.Spec.Egress {
					for _, p := range r.Ports {
						out[p.Port.IntValue()] = true
					}
				}
				if !out[443] || !out[6443] || !out[53] {
					t.Errorf("default NetworkPolicy egress must allow DNS, 443 and 6443: %+v", np.Spec.Egress)
				}
			},
		},
		{
			values: "ci/multi-org-values.yaml",
			wantKinds: []string{"ClusterRole", "ClusterRoleBinding", "ClusterTriggerAuthentication", "ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget",
				"Role", "RoleBinding", "Secret", "Secret", "Secret", "Secret", "Service", "ServiceAccount", "ServiceMonitor"},
			check: func(t *testing.T, d *appsv1.Deployment, f *config.Flags, objs []Object) {
				if f.SweepDryRun || f.SweepAgentPattern != "*-agents-*" || !slices.Equal([]string(f.SweepProtect), []string{"template-*", "placeholder"}) {
					t.Errorf("sweeper flags not from values: %+v", f)
				}
				cfg := renderedConfig(t, objs, f.ConfigFile, d.Spec.Template.Spec.Containers[0])
				if f.ParallelJobs != "off" || cfg.Organizations[0].ParallelJobs != "" || cfg.Organizations[1].ParallelJobs != "5" {
					t.Errorf("parallel jobs: --parallel-jobs %q, organizations %q and %q; want off, default and 5",
						f.ParallelJobs, cfg.Organizations[0].ParallelJobs, cfg.Organizations[1].ParallelJobs)
				}
				sec := secretsByName(objs, scalerNS)[scalerNS+"/azdo-keda-scaler-pat-1"] // the second organization's
				if sec == nil || string(sec.Data["pat"]) != "not-a-real-pat" {
					t.Errorf("created PAT Secret: %v", sec)
				}
			},
		},
		{
			values:    "ci/tls-values.yaml",
			wantKinds: []string{"ClusterTriggerAuthentication", "ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget", "Service", "ServiceAccount"},
			check: func(t *testing.T, d *appsv1.Deployment, f *config.Flags, objs []Object) {
				if f.TLSCertFile == "" || f.TLSKeyFile == "" || f.TLSClientCAFile == "" || !slices.Equal([]string(f.TLSClientNames), []string{"keda-operator"}) {
					t.Errorf("TLS with client certificates: want cert, key, client CA and client name flags, got %+v", f)
				}
				checkTLSVolume(t, d, "azdo-keda-scaler-tls")
				checkClusterTriggerAuthentication(t, objs, "azdo-keda-scaler", "keda-client-tls")
				if f.SweepInterval != 0 {
					t.Errorf("sweeper disabled but --sweep-interval=%v", f.SweepInterval)
				}
				if a := d.Spec.Template.Spec.AutomountServiceAccountToken; a == nil || *a {
					t.Error("without leader election and without reading the cluster the pod needs no API token")
				}
				if f.ReadCluster || len(f.ScalerAddresses) != 0 {
					t.Errorf("cluster.read false: %+v", f)
				}
				mountedUnder(t, d.Spec.Template.Spec.Containers[0], f.TLSCertFile, f.TLSKeyFile, f.TLSClientCAFile)
			},
		},
		{
			values: "ci/cluster-namespaces-values.yaml",
			wantKinds: []string{"ClusterTriggerAuthentication", "ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget", "Role", "Role", "Role",
				"RoleBinding", "RoleBinding", "RoleBinding", "Secret", "Secret", "Secret", "Service", "ServiceAccount"},
			check: func(t *testing.T, d *appsv1.Deployment, f *config.Flags, objs []Object) {
				checkReadCluster(t, f, objs, []string{"azdo-keda-scaler.keda-scalers.svc:6000", "azdo-keda-scaler.keda-scalers:6000", "scaler.example.internal:6000"},
					[]string{"team-a", "team-b"})
				if a := d.Spec.Template.Spec.AutomountServiceAccountToken; a == nil || !*a {
					t.Error("reading the cluster needs the service account token")
				}
			},
		},
		{
			values: "ci/entra-values.yaml",
			wantKinds: []string{"ClusterRole", "ClusterRoleBinding", "ClusterTriggerAuthentication", "ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget",
				"Role", "RoleBinding", "Secret", "Secret", "Secret", "Service", "ServiceAccount"},
			check: checkEntra,
		},
		{
			values: "ci/production-values.yaml",
			wantKinds: []string{"ClusterRole", "ClusterRoleBinding", "ClusterTriggerAuthentication", "ConfigMap", "ConfigMap", "Deployment", "NetworkPolicy",
				"PodDisruptionBudget", "PrometheusRule", "Role", "RoleBinding", "Secret", "Secret", "Secret", "Service", "ServiceAccount"},
			check: checkProduction,
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
				if o.Auth == config.AuthPAT {
					mountedUnder(t, c, o.PATFile)
				}
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

// checkEntra: each organization's way to sign in reaches the scaler's
// config (loaded by the scaler's own loader in the caller), with its
// credential file mounted, and a workload identity gets the webhook's label
// and no Secret at all.
func checkEntra(t *testing.T, d *appsv1.Deployment, f *config.Flags, objs []Object) {
	pod := d.Spec.Template.Spec
	c := pod.Containers[0]
	if d.Spec.Template.Labels["azure.workload.identity/use"] != "true" {
		t.Errorf("a workload identity needs the pod label azure.workload.identity/use: %v", d.Spec.Template.Labels)
	}
	cfg := renderedConfig(t, objs, f.ConfigFile, c)
	byName := map[string]config.Organization{}
	for _, o := range cfg.Organizations {
		byName[o.Name] = o
	}
	if o := byName["contoso"]; o.Auth != config.AuthWorkloadIdentity || o.PATFile != "" || o.ClientSecretFile != "" {
		t.Errorf("contoso: %+v", o)
	}
	fab := byName["fabrikam"]
	if fab.Auth != config.AuthServicePrincipal || fab.TenantID == "" || fab.ClientID == "" || fab.ClientSecretFile == "" {
		t.Errorf("fabrikam: %+v", fab)
	}
	ad := byName["adatum"]
	if ad.ClientCertificateFile == "" || ad.ClientSecretFile != "" || ad.AuthorityHost != "https://login.microsoftonline.us/" {
		t.Errorf("adatum: %+v", ad)
	}
	if o := byName["tailspin"]; o.Auth != config.AuthPAT || o.PATFile == "" {
		t.Errorf("tailspin: %+v", o)
	}
	mountedUnder(t, c, fab.ClientSecretFile, ad.ClientCertificateFile, byName["tailspin"].PATFile)
	secretKeys := map[string]string{} // Secret name -> the key mounted
	for _, v := range pod.Volumes {
		if v.Secret != nil {
			for _, it := range v.Secret.Items {
				secretKeys[v.Secret.SecretName] = it.Key + "->" + it.Path
			}
		}
	}
	want := map[string]string{"fabrikam-sp": "clientSecret->client-secret", "adatum-sp-cert": "tls.pem->client-certificate.pem", "tailspin-pat": "pat->pat"}
	if !maps.Equal(secretKeys, want) {
		t.Errorf("mounted Secret keys %v, want %v (and none for the workload identity)", secretKeys, want)
	}
	sa, _ := Find[*corev1.ServiceAccount](objs)
	if sa.Annotations["azure.workload.identity/client-id"] == "" {
		t.Errorf("ServiceAccount annotations %v", sa.Annotations)
	}
}

// checkProduction: ci/production-values.yaml behind a proxy with a corporate
// CA, with alerts, a dashboard and the platform team's names.
func checkProduction(t *testing.T, d *appsv1.Deployment, f *config.Flags, objs []Object) {
	for _, o := range objs {
		if !strings.HasPrefix(o.Name, "azdo-scaler") {
			t.Errorf("fullnameOverride: %s %q", o.Kind, o.Name)
		}
	}
	pod := d.Spec.Template.Spec
	c := pod.Containers[0]
	if pod.PriorityClassName != "platform-critical" {
		t.Errorf("priorityClassName %q", pod.PriorityClassName)
	}
	if e, _ := env(c, "HTTPS_PROXY"); e.Value != "http://proxy.corp.example:3128" {
		t.Errorf("HTTPS_PROXY %q", e.Value)
	}
	noProxy, _ := env(c, "NO_PROXY")
	for _, want := range []string{"$(KUBERNETES_SERVICE_HOST)", ".svc", "10.0.0.0/8", ".corp.example"} {
		if !slices.Contains(strings.Split(noProxy.Value, ","), want) {
			t.Errorf("NO_PROXY %q lacks %q: the API server must be reached directly", noProxy.Value, want)
		}
	}
	if e, _ := env(c, "SSL_CERT_DIR"); !slices.Contains(strings.Split(e.Value, ":"), "/etc/azdo-keda-scaler/ca") || !hasMount(c, "/etc/azdo-keda-scaler/ca") {
		t.Errorf("corporate CA: SSL_CERT_DIR %q must name the mounted bundle", e.Value)
	}
	vols := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		vols[v.Name] = v
	}
	if v := vols["ca-bundle"]; v.ConfigMap == nil || v.ConfigMap.Name != "corporate-ca" {
		t.Errorf("ca-bundle volume %+v", v)
	}
	if v := vols["scratch"]; v.EmptyDir == nil || !hasMount(c, "/scratch") {
		t.Errorf("extraVolumes/extraVolumeMounts: %+v", v)
	}
	if s := pod.TopologySpreadConstraints; len(s) != 1 || s[0].TopologyKey != "topology.kubernetes.io/zone" {
		t.Errorf("topologySpreadConstraints replace the default spread, got %+v", s)
	}

	np, _ := Find[*networkingv1.NetworkPolicy](objs)
	var proxyPort, extra bool
	for _, r := range np.Spec.Egress {
		for _, p := range r.Ports {
			proxyPort = proxyPort || p.Port.IntValue() == 3128
			extra = extra || (p.Port.IntValue() == 8443 && len(r.To) == 1 && r.To[0].IPBlock.CIDR == "192.0.2.10/32")
		}
	}
	if !proxyPort || !extra {
		t.Errorf("NetworkPolicy egress must allow the proxy's port and extraEgress: %+v", np.Spec.Egress)
	}

	rule, _ := Find[*monitoringv1.PrometheusRule](objs)
	if rule.Labels["release"] != "prometheus" {
		t.Errorf("PrometheusRule labels %v", rule.Labels)
	}
	alerts := map[string]string{}
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			alerts[r.Alert] = r.Expr.String()
		}
	}
	for _, a := range []string{"AzdoKedaScalerDataStale", "AzdoKedaScalerJobsNobodyCanRun", "AzdoKedaScalerRateLimitLow", "AzdoKedaScalerSweeperFailing"} {
		if alerts[a] == "" {
			t.Errorf("alert %s missing: %v", a, alerts)
		}
	}
	if !strings.HasSuffix(alerts["AzdoKedaScalerJobWaitingLong"], "> 600") {
		t.Errorf("prometheusRule.jobWaitingSeconds not used: %q", alerts["AzdoKedaScalerJobWaitingLong"])
	}

	var dash *corev1.ConfigMap
	for _, o := range objs {
		if o.Name == "azdo-scaler-dashboard" {
			dash = o.Typed.(*corev1.ConfigMap)
		}
	}
	if dash == nil || dash.Namespace != "monitoring" || dash.Labels["grafana_dashboard"] != "1" {
		t.Fatalf("dashboard ConfigMap for Grafana's sidecar in namespace monitoring: %+v", dash)
	}
	var board struct {
		Title  string `json:"title"`
		Panels []any  `json:"panels"`
	}
	if err := json.Unmarshal([]byte(dash.Data["azdo-keda-scaler.json"]), &board); err != nil || board.Title == "" || len(board.Panels) == 0 {
		t.Errorf("dashboard JSON: %v, %+v", err, board)
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

// writeValues writes a values file for one test.
func writeValues(t *testing.T, values string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(f, []byte(values), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

const minimalPool = "azp: {url: https://dev.azure.com/c, pool: p, existingSecret: s}\nscaler: {address: 'a:6000'}\n"

func TestAgentPoolChart(t *testing.T) {
	orgs := config.WithPAT("contoso", "https://dev.azure.com/contoso", nil)
	cases := []struct {
		name, values string
		wantKinds    []string
		check        func(t *testing.T, pod corev1.PodSpec, objs []Object)
	}{
		{
			name: "linux-dind", values: "ci/linux-dind-values.yaml",
			wantKinds: []string{"NetworkPolicy", "ScaledJob"},
			check: func(t *testing.T, pod corev1.PodSpec, objs []Object) {
				dind := sidecar(t, pod)
				if dind.SecurityContext == nil || dind.SecurityContext.Privileged == nil || !*dind.SecurityContext.Privileged {
					t.Error("rootful DinD is privileged, and the chart must say so explicitly")
				}
				if !strings.HasSuffix(dind.Image, "-dind") {
					t.Errorf("DinD image %s", dind.Image)
				}
				// Container jobs: the daemon sees what the agent hands to docker at the same paths.
				for _, path := range []string{"/azp/agent/externals", "/azp/_work", "/azp/cache"} {
					if !hasMount(agent(t, pod), path) || !hasMount(dind, path) {
						t.Errorf("%s must be mounted in both the agent and the dind containers", path)
					}
				}
				// Ordinary nodes: small requests, the sizes as the emptyDirs' limits.
				if q, ok := dind.Resources.Requests[corev1.ResourceEphemeralStorage]; !ok || q.String() != "4Gi" {
					t.Errorf("DinD must request 4Gi of ephemeral storage, got %v", dind.Resources.Requests)
				}
				if q := agent(t, pod).Resources.Requests[corev1.ResourceEphemeralStorage]; q.String() != "2Gi" {
					t.Errorf("the agent must request 2Gi of ephemeral storage, got %v", agent(t, pod).Resources.Requests)
				}
				for _, v := range pod.Volumes {
					want := map[string]string{"work": "20Gi", "docker-storage": "50Gi"}[v.Name]
					if want != "" && (v.EmptyDir == nil || v.EmptyDir.SizeLimit == nil || v.EmptyDir.SizeLimit.String() != want) {
						t.Errorf("volume %s must be an emptyDir limited to %s: %+v", v.Name, want, v.VolumeSource)
					}
				}
			},
		},
		{
			name: "dind off", values: minimalPool + "dind: {enabled: false}\n",
			wantKinds: []string{"NetworkPolicy", "ScaledJob"},
			check: func(t *testing.T, pod corev1.PodSpec, objs []Object) {
				if len(pod.InitContainers) != 1 || pod.InitContainers[0].Name != "register" {
					t.Errorf("DinD off: want only the register init container, got %d", len(pod.InitContainers))
				}
				for _, name := range []string{"DOCKER_HOST", "VSTS_SETUP_DOCKERGROUP"} {
					if _, ok := env(agent(t, pod), name); ok {
						t.Errorf("DinD off: %s must not be set", name)
					}
				}
				for _, v := range pod.Volumes {
					if v.Name == "docker-socket" || v.Name == "docker-storage" || v.Name == "externals" {
						t.Errorf("DinD off: volume %s", v.Name)
					}
				}
			},
		},
		{
			// Registration with a Microsoft Entra ID service principal: no PAT anywhere, the
			// client secret in the register init container only (the common checks below).
			name: "service principal", values: "ci/service-principal-values.yaml",
			wantKinds: []string{"NetworkPolicy", "ScaledJob"},
			check: func(t *testing.T, pod corev1.PodSpec, objs []Object) {
				reg := pod.InitContainers[0]
				want := map[string]string{"AZP_AUTH": "SP", "AZP_TENANT_ID": "11111111-2222-3333-4444-555555555555",
					"AZP_CLIENT_ID": "66666666-7777-8888-9999-000000000000", "AZP_CLIENT_SECRET_FILE": "/var/run/secrets/azp/clientSecret",
					"AZURE_AUTHORITY_HOST": "https://login.microsoftonline.us/"}
				for k, v := range want {
					if e, _ := env(reg, k); e.Value != v {
						t.Errorf("register env %s=%q, want %q", k, e.Value, v)
					}
				}
				mountedUnder(t, reg, want["AZP_CLIENT_SECRET_FILE"])
				if _, ok := env(reg, "AZP_TOKEN_FILE"); ok {
					t.Error("a service principal pool has no PAT file")
				}
				for _, v := range pod.Volumes {
					if v.Secret != nil && (v.Secret.SecretName != "agent-sp" || len(v.Secret.Items) != 1 ||
						v.Secret.Items[0] != (corev1.KeyToPath{Key: "clientSecret", Path: "clientSecret"})) {
						t.Errorf("credential volume %+v: want key clientSecret of Secret agent-sp", v.Secret)
					}
				}
				for _, k := range []string{"AZP_AUTH", "AZP_CLIENT_ID", "AZP_CLIENT_SECRET_FILE", "AZURE_AUTHORITY_HOST"} {
					if _, ok := env(agent(t, pod), k); ok {
						t.Errorf("the agent container has %s: only register uses the service principal", k)
					}
				}
			},
		},
		{
			name: "rootless", values: "ci/rootless-values.yaml",
			wantKinds: []string{"NetworkPolicy", "ScaledJob"},
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
				if ref := sj.Spec.Triggers[0].AuthenticationRef; ref == nil || ref.Kind != "ClusterTriggerAuthentication" || ref.Name != "shared-scaler" {
					t.Errorf("the trigger must reference the scaler release's ClusterTriggerAuthentication: %+v", ref)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			values := tc.values
			if strings.Contains(values, "\n") {
				values = writeValues(t, values)
			}
			_, objs, notes, err := Render(poolRelease(), values)
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
			if sj.Spec.Rollout.Strategy != "gradual" {
				t.Errorf("rollout strategy %q: an upgrade must leave running Jobs alone (gradual)", sj.Spec.Rollout.Strategy)
			}
			job := sj.Spec.JobTargetRef
			if job.Parallelism == nil || *job.Parallelism != 1 || job.Completions == nil || *job.Completions != 1 || job.BackoffLimit == nil || *job.BackoffLimit != 0 {
				t.Error("each Job must run exactly one agent once, never retried")
			}
			tmpl := job.Template
			if tmpl.Annotations["cluster-autoscaler.kubernetes.io/safe-to-evict"] != "false" || tmpl.Annotations["karpenter.sh/do-not-disrupt"] != "true" {
				t.Errorf("eviction annotations missing: %v", tmpl.Annotations)
			}
			for k := range tmpl.Labels {
				if k == "helm.sh/chart" || k == "app.kubernetes.io/version" {
					t.Errorf("pod label %s changes with the chart's version", k)
				}
			}
			pod := tmpl.Spec
			if pod.RestartPolicy != corev1.RestartPolicyNever {
				t.Errorf("restartPolicy %s", pod.RestartPolicy)
			}
			a := agent(t, pod)
			for _, k := range []string{"AZP_URL", "AZP_POOL", "AZP_WORK", "AZP_STATE_DIR", "AZP_IDLE_TIMEOUT", "AZP_STOP_TIMEOUT"} {
				if _, ok := env(a, k); !ok {
					t.Errorf("agent env lacks %s", k)
				}
			}
			if v, _ := env(a, "AZP_STOP_TIMEOUT"); v.Value != fmt.Sprint(*pod.TerminationGracePeriodSeconds-15) {
				t.Errorf("AZP_STOP_TIMEOUT %q, want the grace period less 15s", v.Value)
			}
			if v, _ := env(a, "AZP_AGENT_NAME"); v.ValueFrom == nil || v.ValueFrom.FieldRef.FieldPath != "metadata.name" {
				t.Error("AZP_AGENT_NAME must come from the pod name (downward API)")
			}
			// The PAT (or client secret) reaches the register init container only.
			patVolume := ""
			for _, v := range pod.Volumes {
				if v.Secret != nil {
					patVolume = v.Name
				}
			}
			for _, c := range append(pod.Containers, pod.InitContainers...) {
				mounted := slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == patVolume })
				if c.Name == "register" != mounted {
					t.Errorf("container %s: PAT volume mounted=%v; only register may mount it", c.Name, mounted)
				}
				for _, e := range c.Env {
					if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil || c.Name != "register" && strings.Contains(strings.ToLower(e.Name), "token") {
						t.Errorf("container %s: env %s carries a secret", c.Name, e.Name)
					}
				}
			}
			reg := pod.InitContainers[0]
			if reg.Name != "register" || !slices.Equal(reg.Args, []string{"register"}) || !slices.Equal(a.Args, []string{"run"}) {
				t.Errorf("register runs first (start.sh register), the agent runs start.sh run: %v, %v", reg.Args, a.Args)
			}
			credFile, _ := env(reg, "AZP_TOKEN_FILE")
			if auth, _ := env(reg, "AZP_AUTH"); auth.Value == "SP" {
				credFile, _ = env(reg, "AZP_CLIENT_SECRET_FILE")
			}
			mountedUnder(t, reg, credFile.Value)
			if a.SecurityContext == nil || a.SecurityContext.RunAsNonRoot == nil || !*a.SecurityContext.RunAsNonRoot {
				t.Error("the agent must run as non-root")
			}
			if notes == "" {
				t.Error("no NOTES.txt")
			}
			// A team finds why its job waits: the explain command of the
			// scaler the pool's scalerAddress names, for its own namespace.
			if host := strings.Split(strings.Split(sj.Spec.Triggers[0].Metadata["scalerAddress"], ":")[0], "."); len(host) > 1 &&
				!strings.Contains(notes, fmt.Sprintf("kubectl -n %s exec deploy/%s -- /azdo-keda-scaler explain --namespace %s", host[1], host[0], sj.Namespace)) {
				t.Errorf("NOTES.txt must say how to ask the scaler why a job waits:\n%s", notes)
			}
			tc.check(t, pod, objs)
		})
	}
}

// A new chart version alone changes nothing of the pod template, so an
// upgrade that only bumps the chart leaves KEDA's Jobs alone.
func TestChartVersionBumpKeepsThePodTemplate(t *testing.T) {
	templates := map[string]bool{}
	for _, version := range []string{"0.1.0", "0.2.0"} {
		rel := poolRelease()
		rel.ChartVersion = version
		_, objs, _, err := Render(rel, "ci/linux-dind-values.yaml")
		if err != nil {
			t.Fatal(err)
		}
		sj, _ := Find[*kedav1alpha1.ScaledJob](objs)
		b, err := yaml.Marshal(sj.Spec.JobTargetRef.Template)
		if err != nil {
			t.Fatal(err)
		}
		templates[string(b)] = true
	}
	if len(templates) != 1 {
		t.Fatal("the pod template changed with the chart version")
	}
}

// Everything a platform team sets on agent pods: each value reaches the
// pod, extra volumes are mounted in both the agent and the daemon, and
// podSpecOverride is merged last.
func TestOpenPodTemplate(t *testing.T) {
	f := writeValues(t, minimalPool+`runtimeClassName: sysbox-runc
priorityClassName: ci-low
serviceAccount: {name: agents, automountToken: true}
topologySpreadConstraints: [{maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway}]
envFrom: [{configMapRef: {name: proxy}}]
extraVolumes: [{name: ca, configMap: {name: corporate-ca}}]
extraVolumeMounts: [{name: ca, mountPath: /etc/ssl/corporate}]
extraContainers: [{name: log-shipper, image: fluent-bit:3}]
extraInitContainers: [{name: warm-cache, image: busybox:1}]
dind: {mtu: 1400}
podAnnotations: {karpenter.sh/do-not-disrupt: "false", team: a}
podSpecOverride: {dnsPolicy: None, dnsConfig: {nameservers: [10.0.0.10]}}
`)
	_, objs, _, err := Render(poolRelease(), f)
	if err != nil {
		t.Fatal(err)
	}
	sj, _ := Find[*kedav1alpha1.ScaledJob](objs)
	tmpl := sj.Spec.JobTargetRef.Template
	pod := tmpl.Spec
	if pod.RuntimeClassName == nil || *pod.RuntimeClassName != "sysbox-runc" || pod.PriorityClassName != "ci-low" ||
		pod.ServiceAccountName != "agents" || !*pod.AutomountServiceAccountToken || len(pod.TopologySpreadConstraints) != 1 {
		t.Errorf("pod spec: %+v", pod)
	}
	if pod.DNSPolicy != corev1.DNSNone || pod.DNSConfig == nil || pod.DNSConfig.Nameservers[0] != "10.0.0.10" {
		t.Errorf("podSpecOverride not merged: %v %v", pod.DNSPolicy, pod.DNSConfig)
	}
	a, dind := agent(t, pod), sidecar(t, pod)
	if len(a.EnvFrom) != 1 || !hasMount(a, "/etc/ssl/corporate") || !hasMount(dind, "/etc/ssl/corporate") {
		t.Error("envFrom and the extra volume must reach the agent, and the volume the daemon too")
	}
	if v, _ := env(a, "AGENT_DOCKER_MTU_VALUE"); v.Value != "1400" || !slices.Contains(dind.Args, "--mtu=1400") {
		t.Errorf("MTU: agent %q, dind %v", v.Value, dind.Args)
	}
	if !slices.ContainsFunc(pod.Containers, func(c corev1.Container) bool { return c.Name == "log-shipper" }) ||
		!slices.ContainsFunc(pod.InitContainers, func(c corev1.Container) bool { return c.Name == "warm-cache" }) {
		t.Error("extra containers missing")
	}
	if tmpl.Annotations["karpenter.sh/do-not-disrupt"] != "false" || tmpl.Annotations["team"] != "a" ||
		tmpl.Annotations["cluster-autoscaler.kubernetes.io/safe-to-evict"] != "false" {
		t.Errorf("podAnnotations must override the eviction defaults one by one: %v", tmpl.Annotations)
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
	i := slices.IndexFunc(pod.InitContainers, func(c corev1.Container) bool { return c.Name == "dind" })
	if i < 0 {
		t.Fatal("no dind sidecar among the init containers")
	}
	if j := slices.IndexFunc(pod.InitContainers, func(c corev1.Container) bool { return c.Name == "register" }); j > i {
		t.Error("register must come before dind: it copies the externals dind mounts")
	}
	d := pod.InitContainers[i]
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
	// The agent's container jobs put the job's user in the group of
	// /var/run/docker.sock and fail without it; the socket is elsewhere.
	if knob, _ := env(agent(t, pod), "VSTS_SETUP_DOCKERGROUP"); knob.Value != "false" {
		t.Errorf("agent VSTS_SETUP_DOCKERGROUP %q, want false (the socket is not at /var/run/docker.sock)", knob.Value)
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
		{"typo at the root", "azdo-keda-scaler", "organizations: [{url: https://dev.azure.com/c, existingSecret: s}]\nreplicas: 3",
			[]string{"additional properties 'replicas' not allowed"}},
		{"two CA bundles", "azdo-keda-scaler", "organizations: [{url: https://dev.azure.com/c, existingSecret: s}]\ncaBundle: {configMap: a, secret: b}",
			[]string{"/caBundle/secret", "maxLength"}},
		{"proxy not a URL", "azdo-keda-scaler", "organizations: [{url: https://dev.azure.com/c, existingSecret: s}]\nproxy: {httpsProxy: 'proxy:3128'}",
			[]string{"proxy/httpsProxy"}},
		{"service principal without tenant", "azdo-keda-scaler", "organizations: [{url: https://dev.azure.com/c, auth: service-principal, clientId: x, existingSecret: s}]",
			[]string{"organizations/0", "tenantId"}},
		{"workload identity with a Secret", "azdo-keda-scaler", "organizations: [{url: https://dev.azure.com/c, auth: workload-identity, existingSecret: s}]",
			[]string{"organizations/0/existingSecret", "maxLength"}},
		{"PAT with a client id", "azdo-keda-scaler", "organizations: [{url: https://dev.azure.com/c, existingSecret: s, clientId: x}]",
			[]string{"organizations/0/clientId", "maxLength"}},
		{"unknown auth", "azdo-keda-scaler", "organizations: [{url: https://dev.azure.com/c, auth: managed-identity}]",
			[]string{"organizations/0/auth"}},
		{"TLS: a client Secret without the server's", "azdo-keda-scaler", "organizations: [{url: https://dev.azure.com/c, existingSecret: s}]\ntls: {existingClientSecret: c}",
			[]string{"tls/existingClientSecret"}},
		{"no parallel jobs", "azdo-keda-scaler", "organizations: [{url: https://dev.azure.com/c, existingSecret: s, parallelJobs: 0}]",
			[]string{"organizations/0/parallelJobs"}},
		{"parallel jobs: a word", "azdo-keda-scaler", "organizations: [{url: https://dev.azure.com/c, existingSecret: s}]\nscaler: {parallelJobs: many}",
			[]string{"scaler/parallelJobs"}},
		{"no KEDA namespace", "azdo-keda-scaler", "organizations: [{url: https://dev.azure.com/c, existingSecret: s}]\nkeda: {namespace: ''}",
			[]string{"keda/namespace"}},
		{"pool: TLS through a ConfigMap", "azdo-agent-pool", "azp: {url: https://dev.azure.com/c, pool: p, existingSecret: s}\nscaler: {address: 'a:6000', tls: {authenticationRef: {kind: ConfigMap, name: x}}}",
			[]string{"authenticationRef/kind"}},
		{"pool: no scaler address", "azdo-agent-pool", "azp: {url: https://dev.azure.com/c, pool: p, existingSecret: s}",
			[]string{"scaler/address"}},
		{"pool: two filters", "azdo-agent-pool", "azp: {url: https://dev.azure.com/c, pool: p, existingSecret: s}\nscaler: {address: 'a:6000'}\ntrigger: {capabilities: docker, parent: tmpl}",
			[]string{"/trigger/parent", "maxLength: got 4, want 0"}},
		{"pool: bad strategy", "azdo-agent-pool", "azp: {url: https://dev.azure.com/c, pool: p, existingSecret: s}\nscaler: {address: 'a:6000'}\nscaledJob: {scalingStrategy: fastest}",
			[]string{"scaledJob/scalingStrategy"}},
		{"pool: bad routing", "azdo-agent-pool", "azp: {url: https://dev.azure.com/c, pool: p, existingSecret: s}\nscaler: {address: 'a:6000'}\ntrigger: {routing: roundrobin}",
			[]string{"trigger/routing"}},
		{"pool: service principal without tenant", "azdo-agent-pool", "azp: {url: https://dev.azure.com/c, pool: p, auth: service-principal, clientId: x, existingSecret: s}\nscaler: {address: 'a:6000'}",
			[]string{"/azp", "tenantId"}},
		{"pool: service principal with a PAT", "azdo-agent-pool", "azp: {url: https://dev.azure.com/c, pool: p, auth: service-principal, tenantId: t, clientId: x, pat: p}\nscaler: {address: 'a:6000'}",
			[]string{"/azp", "existingSecret"}},
		{"pool: PAT with a client id", "azdo-agent-pool", "azp: {url: https://dev.azure.com/c, pool: p, existingSecret: s, clientId: x}\nscaler: {address: 'a:6000'}",
			[]string{"/azp/clientId", "maxLength"}},
		{"pool: unknown auth", "azdo-agent-pool", "azp: {url: https://dev.azure.com/c, pool: p, auth: workload-identity}\nscaler: {address: 'a:6000'}",
			[]string{"/azp/auth"}},
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

// checkReadCluster: --read-cluster with the Service's addresses, and RBAC
// that is exactly list and watch on KEDA's ScaledJobs, Jobs and pods, bound to
// the scaler's service account: cluster-wide, or in each of namespaces.
func checkReadCluster(t *testing.T, f *config.Flags, objs []Object, addresses, namespaces []string) {
	t.Helper()
	if !f.ReadCluster || !slices.Equal([]string(f.ScalerAddresses), addresses) || !slices.Equal([]string(f.WatchNS), namespaces) {
		t.Errorf("--read-cluster flags: read=%v addresses=%v namespaces=%v; want addresses %v, namespaces %v",
			f.ReadCluster, f.ScalerAddresses, f.WatchNS, addresses, namespaces)
	}
	want := []rbacv1.PolicyRule{
		{APIGroups: []string{"keda.sh"}, Resources: []string{"scaledjobs"}, Verbs: []string{"list", "watch"}},
		{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: []string{"list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
	}
	var granted []string
	for _, o := range objs {
		switch r := o.Typed.(type) {
		case *rbacv1.ClusterRole:
			if len(namespaces) > 0 || !reflect.DeepEqual(r.Rules, want) {
				t.Errorf("ClusterRole %s: %+v", r.Name, r.Rules)
			}
			granted = append(granted, "cluster")
		case *rbacv1.ClusterRoleBinding:
			if r.RoleRef.Name != "azdo-keda-scaler-read-cluster" || len(r.Subjects) != 1 || r.Subjects[0].Name != "azdo-keda-scaler" {
				t.Errorf("ClusterRoleBinding %+v", r)
			}
		case *rbacv1.Role:
			if strings.HasSuffix(r.Name, "-read-cluster") {
				if !reflect.DeepEqual(r.Rules, want) {
					t.Errorf("Role %s/%s: %+v", r.Namespace, r.Name, r.Rules)
				}
				granted = append(granted, r.Namespace)
			}
		}
	}
	if len(namespaces) == 0 && !slices.Equal(granted, []string{"cluster"}) || len(namespaces) > 0 && !slices.Equal(granted, namespaces) {
		t.Errorf("read access granted in %v, want %v", granted, namespaces)
	}
}

// The agent reports its environment as capabilities: the pool chart puts
// the trigger's capabilities (but the agent's own Agent.*) in the register
// and agent containers' environment, so that Azure DevOps sees what the
// trigger claims and dispatches its jobs to these pods.
func TestCapabilitiesBecomeTheAgentsEnvironment(t *testing.T) {
	// extraEnv's own java.version wins: a name may appear once in a container.
	// So does its VSTS_SETUP_DOCKERGROUP (a team that mounts a socket at
	// /var/run/docker.sock through extraVolumes).
	values := writeValues(t, "azp: {url: https://dev.azure.com/c, pool: p, existingSecret: s}\nscaler: {address: 'a:6000'}\n"+
		"trigger: {capabilities: 'Agent.OS=Linux, docker ,java.version=21,agent.name=x'}\n"+
		"extraEnv: [{name: java.version, value: '17'}, {name: VSTS_SETUP_DOCKERGROUP, value: 'true'}]")
	_, objs, _, err := Render(poolRelease(), values)
	if err != nil {
		t.Fatal(err)
	}
	sj, _ := Find[*kedav1alpha1.ScaledJob](objs)
	pod := sj.Spec.JobTargetRef.Template.Spec
	for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
		// Both containers get extraEnv.
		want := map[string][]string{"docker": {"true"}, "java.version": {"17"}, "VSTS_SETUP_DOCKERGROUP": {"true"}}
		switch c.Name {
		case "register", "agent":
		default:
			continue
		}
		got := map[string][]string{}
		for _, e := range c.Env {
			if _, ok := want[e.Name]; ok || strings.HasPrefix(strings.ToLower(e.Name), "agent.") || e.Name == "VSTS_SETUP_DOCKERGROUP" {
				got[e.Name] = append(got[e.Name], e.Value)
			}
		}
		if !maps.EqualFunc(got, want, slices.Equal) {
			t.Errorf("%s container: capability environment %v, want %v", c.Name, got, want)
		}
	}
}
