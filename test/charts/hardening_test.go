package charts

import (
	"slices"
	"strings"
	"testing"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
)

// poolPod renders the pool chart with values and returns its pod template.
func poolPod(t *testing.T, values string) (corev1.PodSpec, []Object) {
	t.Helper()
	_, objs, _, err := Render(poolRelease(), writeValues(t, values))
	if err != nil {
		t.Fatal(err)
	}
	sj, ok := Find[*kedav1alpha1.ScaledJob](objs)
	if !ok {
		t.Fatal("no ScaledJob")
	}
	return sj.Spec.JobTargetRef.Template.Spec, objs
}

// podSecurity is what Kubernetes' own Pod Security admission says of a pod
// at a level: the reasons it refuses, none when it admits.
func podSecurity(t *testing.T, pod corev1.PodSpec, level psaapi.Level) []string {
	t.Helper()
	eval, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var refused []string
	for _, r := range eval.EvaluatePod(psaapi.LevelVersion{Level: level, Version: psaapi.LatestVersion()}, &metav1.ObjectMeta{}, &pod) {
		if !r.Allowed {
			refused = append(refused, r.ForbiddenReason+" ("+r.ForbiddenDetail+")")
		}
	}
	return refused
}

// The Pod Security levels each mode needs, as Kubernetes' own admission
// code judges the rendered pod: without DinD, restricted (RuntimeDefault
// seccomp, non-root, no capabilities); rootful DinD, privileged (its
// container is privileged, in the pod's own user namespace or not);
// rootless DinD, privileged too (Unconfined seccomp and AppArmor).
func TestPoolPodSecurityLevels(t *testing.T) {
	for _, c := range []struct {
		name, values    string
		level           psaapi.Level // the strictest level that admits it
		refusedBaseline string       // why baseline refuses it
	}{
		{"dind off", "dind: {enabled: false}\n", psaapi.LevelRestricted, ""},
		{"rootful dind", "", psaapi.LevelPrivileged, "privileged"},
		{"rootful dind in a user namespace", "dind: {userNamespace: true}\n", psaapi.LevelPrivileged, "privileged"},
		{"rootless dind", "dind: {rootless: true}\n", psaapi.LevelPrivileged, "seccompProfile"},
	} {
		t.Run(c.name, func(t *testing.T) {
			pod, _ := poolPod(t, minimalPool+c.values)
			restricted, baseline := podSecurity(t, pod, psaapi.LevelRestricted), podSecurity(t, pod, psaapi.LevelBaseline)
			switch c.level {
			case psaapi.LevelRestricted:
				if len(restricted) > 0 {
					t.Errorf("restricted refuses it: %v", restricted)
				}
			case psaapi.LevelPrivileged:
				if len(baseline) == 0 || !strings.Contains(strings.Join(baseline, "; "), c.refusedBaseline) {
					t.Errorf("baseline refuses it for %v, want %q among them", baseline, c.refusedBaseline)
				}
			}
			if pod.SecurityContext == nil || pod.SecurityContext.SeccompProfile == nil || pod.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Error("the pod's seccomp profile must be RuntimeDefault")
			}
			userns := strings.Contains(c.values, "userNamespace: true")
			if got := pod.HostUsers != nil && !*pod.HostUsers; got != userns {
				t.Errorf("hostUsers false = %v, want %v", got, userns)
			}
		})
	}
}

func envOf(c corev1.Container) map[string][]string {
	m := map[string][]string{}
	for _, e := range c.Env {
		m[e.Name] = append(m[e.Name], e.Value)
	}
	return m
}

func container(t *testing.T, pod corev1.PodSpec, name string) corev1.Container {
	t.Helper()
	for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %s", name)
	return corev1.Container{}
}

// Behind a proxy and a TLS-inspecting CA, registration is the first thing
// that must work: the register container gets the proxy, the CA, extraEnv,
// envFrom and the extra volumes, as the agent does; the daemon gets the
// proxy and the CA for pulls. A name extraEnv sets appears once.
func TestPoolProxyAndCAReachRegistration(t *testing.T) {
	pod, _ := poolPod(t, minimalPool+`proxy: {httpsProxy: "http://proxy.corp:3128", noProxy: [.corp.example]}
caBundle: {configMap: corp-ca}
extraEnv: [{name: no_proxy, value: "mine"}, {name: GIT_TRACE, value: "1"}]
envFrom: [{configMapRef: {name: build-env}}]
extraVolumes: [{name: tools, emptyDir: {}}]
extraVolumeMounts: [{name: tools, mountPath: /opt/tools}]
`)
	for _, name := range []string{"register", "agent", "dind"} {
		c := container(t, pod, name)
		env := envOf(c)
		for k, vs := range env {
			if len(vs) > 1 {
				t.Errorf("%s: %s set %d times", name, k, len(vs))
			}
		}
		if env["HTTPS_PROXY"][0] != "http://proxy.corp:3128" || env["https_proxy"][0] != "http://proxy.corp:3128" ||
			!strings.Contains(env["NO_PROXY"][0], ".svc") || !strings.Contains(env["NO_PROXY"][0], ".corp.example") {
			t.Errorf("%s: proxy environment %v", name, env)
		}
		if !hasMount(c, "/etc/azp/ca") || !hasMount(c, "/opt/tools") && name != "dind" {
			t.Errorf("%s: the CA and the extra volume must be mounted: %v", name, c.VolumeMounts)
		}
		switch name {
		case "register", "agent":
			if env["VSTS_HTTP_PROXY"][0] != "http://proxy.corp:3128" || env["AZP_CA_DIR"][0] != "/etc/azp/ca" ||
				env["GIT_TRACE"][0] != "1" || env["no_proxy"][0] != "mine" || len(c.EnvFrom) != 1 {
				t.Errorf("%s: VSTS_HTTP_PROXY, AZP_CA_DIR, extraEnv (winning over no_proxy) and envFrom: %v %v", name, env, c.EnvFrom)
			}
		case "dind":
			if env["SSL_CERT_DIR"][0] != "/etc/ssl/certs:/etc/azp/ca" {
				t.Errorf("dind: SSL_CERT_DIR %v", env["SSL_CERT_DIR"])
			}
		}
	}
	if !slices.ContainsFunc(pod.Volumes, func(v corev1.Volume) bool {
		return v.Name == "ca-bundle" && v.ConfigMap != nil && v.ConfigMap.Name == "corp-ca"
	}) {
		t.Error("no ca-bundle volume from the ConfigMap")
	}
	// Without a proxy and a CA: none of it.
	pod, _ = poolPod(t, minimalPool)
	for _, name := range []string{"register", "agent", "dind"} {
		env := envOf(container(t, pod, name))
		for _, k := range []string{"HTTPS_PROXY", "NO_PROXY", "VSTS_HTTP_PROXY", "AZP_CA_DIR", "SSL_CERT_DIR"} {
			if _, ok := env[k]; ok {
				t.Errorf("%s: %s set without a proxy or CA", name, k)
			}
		}
	}
}

// The agent pods' NetworkPolicy: it selects exactly the pod template's
// labels, admits nothing in, and lets out DNS to the cluster's DNS pods and
// everything but the metadata endpoints and the API server's addresses.
func TestPoolNetworkPolicy(t *testing.T) {
	pod, objs := poolPod(t, minimalPool+"networkPolicy: {apiServerCIDRs: [10.0.0.1/32, 203.0.113.7/32]}\n")
	np, ok := Find[*networkingv1.NetworkPolicy](objs)
	if !ok {
		t.Fatal("no NetworkPolicy by default")
	}
	sj, _ := Find[*kedav1alpha1.ScaledJob](objs)
	labels := sj.Spec.JobTargetRef.Template.Labels
	for k, v := range np.Spec.PodSelector.MatchLabels {
		if labels[k] != v {
			t.Errorf("the policy selects %s=%s, which the agent pods lack (%v)", k, v, labels)
		}
	}
	if len(np.Spec.PodSelector.MatchLabels) == 0 || len(np.Spec.Ingress) != 0 || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
		t.Errorf("the policy must select the pods and admit no ingress: %+v", np.Spec)
	}
	var except4, except6 []string
	var dns, pods bool
	for _, rule := range np.Spec.Egress {
		for _, to := range rule.To {
			switch {
			case to.NamespaceSelector != nil && to.PodSelector == nil && len(to.NamespaceSelector.MatchLabels) == 0 && len(rule.Ports) == 0:
				pods = true
			case to.IPBlock != nil && to.IPBlock.CIDR == "0.0.0.0/0":
				except4 = to.IPBlock.Except
			case to.IPBlock != nil && to.IPBlock.CIDR == "::/0":
				except6 = to.IPBlock.Except
			case to.PodSelector != nil && to.PodSelector.MatchLabels["k8s-app"] == "kube-dns":
				dns = len(rule.Ports) == 2
			}
		}
	}
	if !dns || !pods {
		t.Errorf("egress to the cluster's DNS on port 53 (%v) and to its pods (%v) must be allowed", dns, pods)
	}
	if !slices.Equal(except4, []string{"169.254.169.254/32", "10.0.0.1/32", "203.0.113.7/32"}) || !slices.Equal(except6, []string{"fd00:ec2::254/128"}) {
		t.Errorf("excepted %v and %v, want the metadata address and the API server's", except4, except6)
	}
	if _, warned := np.Annotations["azdo-agent-pool/warning"]; warned {
		t.Error("warned although apiServerCIDRs are given")
	}
	_ = pod
	// helm template cannot look the API server up: the policy says so.
	_, objs = poolPod(t, minimalPool)
	np, _ = Find[*networkingv1.NetworkPolicy](objs)
	if !strings.Contains(np.Annotations["azdo-agent-pool/warning"], "networkPolicy.apiServerCIDRs") {
		t.Errorf("no warning that the API server was not found: %v", np.Annotations)
	}
	_, objs = poolPod(t, minimalPool+"networkPolicy: {enabled: false}\n")
	if _, ok := Find[*networkingv1.NetworkPolicy](objs); ok {
		t.Error("networkPolicy.enabled: false still renders one")
	}
}

// Windows agents (os: windows): a pod the API server accepts for a Windows
// node (spec.os windows, no Linux-only security fields, which it refuses
// for such a pod), on Windows nodes, with the Windows image and paths, no
// Docker-in-Docker and no privileged container; Pod Security restricted
// admits it.
func TestPoolWindowsAgents(t *testing.T) {
	pod, _ := poolPod(t, minimalPool+"os: windows\ntrigger: {capabilities: 'Agent.OS=Windows_NT'}\n")
	if pod.OS == nil || pod.OS.Name != corev1.Windows || pod.NodeSelector["kubernetes.io/os"] != "windows" {
		t.Fatalf("os %v, nodeSelector %v", pod.OS, pod.NodeSelector)
	}
	if refused := podSecurity(t, pod, psaapi.LevelRestricted); len(refused) > 0 {
		t.Errorf("restricted refuses the Windows pod: %v", refused)
	}
	if sc := pod.SecurityContext; sc == nil || sc.FSGroup != nil || sc.SeccompProfile != nil || sc.RunAsUser != nil ||
		sc.WindowsOptions == nil || sc.WindowsOptions.RunAsUserName == nil || *sc.WindowsOptions.RunAsUserName != "ContainerUser" {
		t.Errorf("pod security context %+v: Windows options only", sc)
	}
	// One container registers, runs and removes the agent: the Windows agent
	// keeps its key under DPAPI's machine scope, which no second container opens.
	if len(pod.InitContainers) != 0 || len(pod.Containers) != 1 || !slices.Equal(pod.Containers[0].Args, []string{"all"}) {
		t.Fatalf("want one agent container running start.ps1 all (no register init container, no Docker-in-Docker), got %d init, %d, args %v",
			len(pod.InitContainers), len(pod.Containers), pod.Containers[0].Args)
	}
	for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
		if !strings.HasSuffix(c.Image, "-windows-ltsc2022") {
			t.Errorf("%s: image %s, want the Windows image", c.Name, c.Image)
		}
		sc := c.SecurityContext
		if sc == nil || sc.Privileged != nil || sc.Capabilities != nil || sc.RunAsUser != nil || sc.AllowPrivilegeEscalation != nil ||
			sc.WindowsOptions == nil || *sc.WindowsOptions.RunAsUserName != "ContainerUser" {
			t.Errorf("%s: security context %+v: Windows options only", c.Name, sc)
		}
		env := envOf(c)
		if env["AZP_WORK"][0] != `C:\azp\_work` {
			t.Errorf("%s: Windows paths: %v", c.Name, env)
		}
		for _, k := range []string{"DOCKER_HOST", "VSTS_SETUP_DOCKERGROUP", "AZP_EXTERNALS_DIR"} {
			if _, ok := env[k]; ok {
				t.Errorf("%s: %s set on Windows", c.Name, k)
			}
		}
		for _, m := range c.VolumeMounts {
			if !strings.HasPrefix(m.MountPath, `C:\`) {
				t.Errorf("%s: mount %s is not a Windows path", c.Name, m.MountPath)
			}
		}
	}
	if f := envOf(pod.Containers[0])["AZP_TOKEN_FILE"]; len(f) != 1 || f[0] != `C:\azp\secrets\pat` || !hasMount(pod.Containers[0], `C:\azp\secrets`) {
		t.Errorf("the PAT file %v", f)
	}
}

// A CA bundle cannot be added to the Windows image at start: the chart says so.
func TestPoolWindowsRefusesCABundle(t *testing.T) {
	_, _, _, err := Render(poolRelease(), writeValues(t, minimalPool+"os: windows\ncaBundle: {configMap: corp-ca}\n"))
	if err == nil || !strings.Contains(err.Error(), "caBundle is not supported with os: windows") {
		t.Errorf("err %v", err)
	}
}
