// Package charts renders the project's Helm charts with Helm's Go SDK and
// decodes what they produce into the Go types Kubernetes and KEDA use, so a
// field Kubernetes would not know fails a test instead of a user's install.
package charts

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// RepoRoot is the repository's top directory, found from this file.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// ChartDir is the directory of one of the project's charts.
func ChartDir(name string) string { return filepath.Join(RepoRoot(), "charts", name) }

// Object is one rendered manifest: its source template, raw YAML and typed value.
type Object struct {
	Template string
	Kind     string
	Name     string
	YAML     []byte
	Typed    any
}

// newTyped maps apiVersion/kind to the Go type the object must decode into.
var newTyped = map[string]func() any{
	"v1/ConfigMap":                                    func() any { return &corev1.ConfigMap{} },
	"v1/Secret":                                       func() any { return &corev1.Secret{} },
	"v1/Service":                                      func() any { return &corev1.Service{} },
	"v1/ServiceAccount":                               func() any { return &corev1.ServiceAccount{} },
	"apps/v1/Deployment":                              func() any { return &appsv1.Deployment{} },
	"rbac.authorization.k8s.io/v1/Role":               func() any { return &rbacv1.Role{} },
	"rbac.authorization.k8s.io/v1/RoleBinding":        func() any { return &rbacv1.RoleBinding{} },
	"rbac.authorization.k8s.io/v1/ClusterRole":        func() any { return &rbacv1.ClusterRole{} },
	"rbac.authorization.k8s.io/v1/ClusterRoleBinding": func() any { return &rbacv1.ClusterRoleBinding{} },
	"policy/v1/PodDisruptionBudget":                   func() any { return &policyv1.PodDisruptionBudget{} },
	"networking.k8s.io/v1/NetworkPolicy":              func() any { return &networkingv1.NetworkPolicy{} },
	"monitoring.coreos.com/v1/ServiceMonitor":         func() any { return &monitoringv1.ServiceMonitor{} },
	"monitoring.coreos.com/v1/PrometheusRule":         func() any { return &monitoringv1.PrometheusRule{} },
	"keda.sh/v1alpha1/ScaledJob":                      func() any { return &kedav1alpha1.ScaledJob{} },
	"keda.sh/v1alpha1/TriggerAuthentication":          func() any { return &kedav1alpha1.TriggerAuthentication{} },
	"keda.sh/v1alpha1/ClusterTriggerAuthentication":   func() any { return &kedav1alpha1.ClusterTriggerAuthentication{} },
}

// Release names what Render installs.
type Release struct {
	Chart        string // directory name under charts/
	Name         string
	Namespace    string
	ChartVersion string // overrides Chart.yaml's version when set
}

// Render runs a client-only `helm install` of the chart with the values
// files (paths relative to the chart directory, or absolute) and decodes
// every object strictly. The error is Helm's, as a user would read it.
func Render(rel Release, valuesFiles ...string) (manifest string, objs []Object, notes string, err error) {
	ch, err := loader.Load(ChartDir(rel.Chart))
	if err != nil {
		return "", nil, "", err
	}
	if rel.ChartVersion != "" {
		ch.Metadata.Version = rel.ChartVersion
	}
	vals := map[string]any{}
	for _, f := range valuesFiles {
		if !filepath.IsAbs(f) {
			f = filepath.Join(ChartDir(rel.Chart), f)
		}
		v, err := chartutil.ReadValuesFile(f)
		if err != nil {
			return "", nil, "", err
		}
		vals = chartutil.CoalesceTables(v.AsMap(), vals)
	}
	install := action.NewInstall(&action.Configuration{})
	install.DryRun = true
	install.ClientOnly = true
	install.Replace = true
	install.ReleaseName = rel.Name
	install.Namespace = rel.Namespace
	install.KubeVersion = &chartutil.KubeVersion{Version: "v1.34.0", Major: "1", Minor: "34"}
	r, err := install.Run(ch, vals)
	if err != nil {
		return "", nil, "", err
	}
	objs, err = Decode(r.Manifest)
	return r.Manifest, objs, r.Info.Notes, err
}

var sourceLine = regexp.MustCompile(`(?m)^# Source: (.+)$`)

// Decode splits a multi-document manifest and strictly decodes each object.
func Decode(manifest string) ([]Object, error) {
	var objs []Object
	for _, doc := range strings.Split(manifest, "\n---") {
		doc = strings.TrimPrefix(doc, "---")
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			return nil, fmt.Errorf("not YAML: %w\n%s", err, doc)
		}
		o := Object{Kind: head.Kind, Name: head.Metadata.Name, YAML: []byte(doc)}
		if m := sourceLine.FindStringSubmatch(doc); m != nil {
			o.Template = m[1]
		}
		mk, ok := newTyped[head.APIVersion+"/"+head.Kind]
		if !ok {
			return nil, fmt.Errorf("%s: %s/%s has no Go type in this test", o.Template, head.APIVersion, head.Kind)
		}
		o.Typed = mk()
		if err := yaml.UnmarshalStrict([]byte(doc), o.Typed); err != nil {
			return nil, fmt.Errorf("%s: %s %q does not decode strictly: %w", o.Template, head.Kind, o.Name, err)
		}
		objs = append(objs, o)
	}
	sort.SliceStable(objs, func(i, j int) bool {
		if objs[i].Kind != objs[j].Kind {
			return objs[i].Kind < objs[j].Kind
		}
		return objs[i].Name < objs[j].Name
	})
	return objs, nil
}

func stripComments(doc string) string {
	var b bytes.Buffer
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// Find returns the first object of that kind.
func Find[T any](objs []Object) (T, bool) {
	for _, o := range objs {
		if t, ok := o.Typed.(T); ok {
			return t, true
		}
	}
	var zero T
	return zero, false
}

// WriteFile writes b to path, creating its directory.
func WriteFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
