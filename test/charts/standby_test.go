package charts

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/config"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/trigger"
)

// The pool chart's standby values become trigger metadata the scaler
// accepts, and the agent's environment for the standby question; without
// them the agent never asks. The scaler chart serves the endpoint on its
// own port, open to agent pods only.
func TestStandbyValues(t *testing.T) {
	orgs := config.WithPAT("contoso", "https://dev.azure.com/contoso", nil)
	base := "azp: {url: https://dev.azure.com/c, pool: p, existingSecret: s}\nscaler: {address: 'azdo-keda-scaler.keda-scalers.svc:6000'}\n"
	for values, want := range map[string]map[string]string{
		"":                    {"standby": "", "standbySchedule": "", "AZP_STANDBY_URL": ""},
		"standby: {count: 2}": {"standby": "2", "AZP_STANDBY_URL": "http://azdo-keda-scaler.keda-scalers.svc:8081/api/v1/standby"},
		"standby: {count: auto, percentile: 90, max: 4}": {"standby": "auto", "standbyPercentile": "90", "standbyMax": "4",
			"AZP_STANDBY_URL": "http://azdo-keda-scaler.keda-scalers.svc:8081/api/v1/standby"},
		"standby: {schedule: 'Mon-Fri 08:00-18:00=2', timeZone: Europe/Berlin, url: 'http://s:9/api/v1/standby'}": {"standby": "",
			"standbySchedule": "Mon-Fri 08:00-18:00=2", "standbyTimeZone": "Europe/Berlin", "AZP_STANDBY_URL": "http://s:9/api/v1/standby"},
	} {
		f := filepath.Join(t.TempDir(), "values.yaml")
		if err := os.WriteFile(f, []byte(base+values), 0o600); err != nil {
			t.Fatal(err)
		}
		_, objs, _, err := Render(poolRelease(), f)
		if err != nil {
			t.Fatalf("%q: %v", values, err)
		}
		sj, _ := Find[*kedav1alpha1.ScaledJob](objs)
		md := sj.Spec.Triggers[0].Metadata
		spec, err := trigger.Parse(md, orgs)
		if err != nil {
			t.Fatalf("%q: the scaler rejects %v: %v", values, md, err)
		}
		a := agent(t, sj.Spec.JobTargetRef.Template.Spec)
		for k, v := range want {
			got := md[k]
			if strings.HasPrefix(k, "AZP_") {
				e, _ := env(a, k)
				got = e.Value
			}
			if got != v {
				t.Errorf("%q: %s = %q, want %q", values, k, got, v)
			}
		}
		if ns, ok := env(a, "AZP_POD_NAMESPACE"); (want["AZP_STANDBY_URL"] != "") != ok || ok && ns.ValueFrom.FieldRef.FieldPath != "metadata.namespace" {
			t.Errorf("%q: AZP_POD_NAMESPACE %+v", values, ns)
		}
		if values != "" && !spec.Standby.Enabled() {
			t.Errorf("%q: the trigger keeps no standby: %+v", values, spec.Standby)
		}
	}
	f := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(f, []byte(base+"standby: {count: some}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := Render(poolRelease(), f); err == nil || !strings.Contains(err.Error(), "standby") {
		t.Errorf("standby.count some: %v", err)
	}
}

func TestScalerServesStandbyToAgentPods(t *testing.T) {
	_, objs, _, err := Render(Release{Chart: "azdo-keda-scaler", Name: "azdo-keda-scaler", Namespace: "keda-scalers"}, "ci/minimal-values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	svc, _ := Find[*corev1.Service](objs)
	found := false
	for _, p := range svc.Spec.Ports {
		found = found || p.Name == "standby" && p.Port == 8081
	}
	if !found {
		t.Errorf("the Service has no standby port 8081: %+v", svc.Spec.Ports)
	}
	np, _ := Find[*networkingv1.NetworkPolicy](objs)
	open := false
	for _, rule := range np.Spec.Ingress {
		for _, p := range rule.Ports {
			if p.Port != nil && p.Port.String() == "standby" {
				open = len(rule.From) == 1 && rule.From[0].NamespaceSelector != nil && rule.From[0].PodSelector != nil &&
					rule.From[0].PodSelector.MatchLabels["app.kubernetes.io/name"] == "azdo-agent-pool"
			}
		}
	}
	if !open {
		t.Errorf("the NetworkPolicy does not open the standby port to agent pods only: %+v", np.Spec.Ingress)
	}
}
