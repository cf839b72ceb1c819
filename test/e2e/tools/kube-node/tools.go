//go:build tools

// Package tools pins the rest of a Kubernetes node (v1.34.4, the same
// k8s.io/kubernetes as kube-apiserver) for the node tier: the controller
// manager (Job, garbage-collector and ReplicaSet controllers), the
// scheduler and the kubelet.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
