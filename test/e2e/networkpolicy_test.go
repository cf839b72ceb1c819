//go:build e2e

package e2e

import (
	"context"
	"slices"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Scenario 19: the pool chart's NetworkPolicy, installed by Helm into a
// real API server, excepts the API server's own addresses from the agent
// pods' egress: the kubernetes Service's cluster IP and its EndpointSlice's
// addresses, which the chart looks up at install time (helm template
// cannot). No CNI here enforces it; what it says is checked.
func TestPoolNetworkPolicyExceptsTheAPIServer(t *testing.T) {
	ctx := context.Background()
	ns := "e2e-netpol"
	env.contoso.AddPool("netpol")
	helmInstall(t, "azdo-agent-pool", ns, "linux", poolValues("contoso", "netpol", linuxCaps))
	svc, err := env.cluster.Kube.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"169.254.169.254/32"}
	for _, ip := range svc.Spec.ClusterIPs {
		want = append(want, ip+"/32")
	}
	slice, err := env.cluster.Kube.DiscoveryV1().EndpointSlices("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range slice.Endpoints {
		if slice.AddressType == discoveryv1.AddressTypeIPv4 {
			want = append(want, e.Addresses[0]+"/32")
		}
	}
	np, err := env.cluster.Kube.NetworkingV1().NetworkPolicies(ns).Get(ctx, "linux-agents", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var except []string
	for _, rule := range np.Spec.Egress {
		for _, to := range rule.To {
			if to.IPBlock != nil && to.IPBlock.CIDR == "0.0.0.0/0" {
				except = to.IPBlock.Except
			}
		}
	}
	for _, w := range want {
		if !slices.Contains(except, w) {
			t.Errorf("the agents' NetworkPolicy does not except %s (excepts %v)", w, except)
		}
	}
	if _, warned := np.Annotations["azdo-agent-pool/warning"]; warned || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
		t.Errorf("policy %+v", np)
	}
	record("19 the agents' NetworkPolicy excepts the API server: %v", except)
}
