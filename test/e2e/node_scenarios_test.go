//go:build e2e && node

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo"
)

// The node tier's scenarios run real pods: KEDA's Jobs become pods through
// the Job controller, the scheduler and the kubelet, from the pool chart's
// template, with the agent image (start.sh and the stand-in agent) and
// Debian's dockerd as the Docker-in-Docker sidecar.

// nodeAgentPAT is the PAT the agent pods register with.
const nodeAgentPAT = "e2e-node-agent-pat-71c2"

// nodePoolValues are what a platform engineer writes for a small node and
// locally built images: the pool chart's defaults otherwise.
func nodePoolValues(scaler *Scaler, pool string, trigger map[string]any) map[string]any {
	return map[string]any{
		"azp": map[string]any{"url": env.fake.OrgURL("contoso"), "pool": pool, "pat": nodeAgentPAT,
			"workStorage": "1Gi", "idleTimeoutSeconds": 30},
		"image":  map[string]any{"repository": agentImage, "tag": agentTag, "pullPolicy": "Never"},
		"scaler": map[string]any{"address": scaler.Addr, "organization": "contoso"},
		"dind": map[string]any{
			"image":     map[string]any{"repository": dindImage, "tag": dindTag, "pullPolicy": "Never"},
			"storage":   map[string]any{"size": "2Gi"},
			"resources": map[string]any{"requests": map[string]any{"cpu": "50m", "memory": "64Mi"}, "limits": map[string]any{"memory": "1Gi"}},
		},
		"resources":                     map[string]any{"requests": map[string]any{"cpu": "50m", "memory": "64Mi"}, "limits": map[string]any{"memory": "1Gi"}},
		"register":                      map[string]any{"resources": map[string]any{"requests": map[string]any{"cpu": "10m", "memory": "32Mi"}}},
		"terminationGracePeriodSeconds": 45,
		"trigger":                       trigger,
		"scaledJob":                     map[string]any{"pollingInterval": int(pollingInterval / time.Second), "maxReplicaCount": 6},
	}
}

// nodeScaler is a scaler that reads the cluster and sweeps for real, fast.
// When the test fails, the pods of namespace ns are described first.
func nodeScaler(t *testing.T, name string, ns ...string) *Scaler {
	t.Helper()
	// The agents register with a PAT of their own.
	env.contoso.SetPATs(orgPAT, nodeAgentPAT)
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range ns {
				dumpPods(t, n)
			}
		}
	})
	return startClusterScaler(t, name, "--sweep-interval=1s", "--sweep-finished-for=2s", "--sweep-dry-run=false", "--leader-elect=false")
}

// nodePool installs the pool chart as release "linux" in namespace
// e2e-node-<name> for pool node-<name>, with a scaler of its own, and waits
// for KEDA to reconcile it. It returns the namespace, the pool and the values.
func nodePool(t *testing.T, name string, adjust func(values map[string]any)) (string, int, map[string]any) {
	t.Helper()
	ns, poolName := "e2e-node-"+name, "node-"+name
	pool := env.contoso.AddPool(poolName)
	scaler := nodeScaler(t, poolName+"-scaler", ns)
	values := nodePoolValues(scaler, poolName, linuxCaps)
	if adjust != nil {
		adjust(values)
	}
	helmInstall(t, "azdo-agent-pool", ns, "linux", values)
	waitReconciled(t, ns, "linux")
	return ns, pool, values
}

// podsOf lists the pods of a ScaledJob's Jobs.
func podsOf(t *testing.T, namespace, scaledJob string) []corev1.Pod {
	t.Helper()
	var l corev1.PodList
	listOfScaledJob(t, namespace, scaledJob, &l)
	return l.Items
}

func jobComplete(j batchv1.Job) bool {
	for _, c := range j.Status.Conditions {
		if c.Type == batchv1.JobComplete && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// timeline records when each step of a job's life was seen.
type timeline struct {
	start time.Time
	marks []string
}

func (tl *timeline) mark(what string) {
	tl.marks = append(tl.marks, fmt.Sprintf("%s +%.1fs", what, time.Since(tl.start).Seconds()))
}

func (tl *timeline) String() string { return strings.Join(tl.marks, ", ") }

// Node scenario 1: one queued job, followed through every step: KEDA's Job,
// the pod scheduled and started, the register init container, the
// Docker-in-Docker sidecar ready, the agent taking the job, a job step
// running `docker load` and `docker run` in the sidecar, the job finished
// in Azure DevOps, the pod Completed, the Job Complete, and the agent
// removed by the sweeper.
func TestNodeOneJobFromQueueToGone(t *testing.T) {
	ns, pool, _ := nodePool(t, "one", nil)

	tl := &timeline{start: time.Now()}
	id := env.contoso.QueueJob(pool, fakeazdo.Job{Name: "Build", Demands: linuxJob.Demands,
		Script: "set -e; docker load -i /azp/testdata/busybox.tar; docker run --rm " + busyboxImage + " echo hello from a nested container"})
	var podName string
	seen := map[string]bool{}
	step := func(name string, ok bool) {
		if ok && !seen[name] {
			seen[name] = true
			tl.mark(name)
		}
	}
	waitFor(t, "the job to finish and the agent to be removed", 3*time.Minute, func() bool {
		js := jobs(t, ns, "linux")
		step("Job created", len(js) > 0)
		pods := podsOf(t, ns, "linux")
		if len(pods) > 0 {
			p := pods[0]
			podName = p.Name
			step("pod scheduled", p.Spec.NodeName != "")
			for _, s := range p.Status.InitContainerStatuses {
				step("registered", s.Name == "register" && s.State.Terminated != nil && s.State.Terminated.ExitCode == 0)
				step("dind ready", s.Name == "dind" && s.Started != nil && *s.Started)
			}
			for _, s := range p.Status.ContainerStatuses {
				step("agent started", s.Name == "agent" && (s.State.Running != nil || s.State.Terminated != nil))
			}
			step("pod Completed", p.Status.Phase == corev1.PodSucceeded)
		}
		if agent, ok := env.contoso.JobAgent(id); ok {
			step("job taken by "+agent, true)
		}
		result, finished := env.contoso.JobResult(id)
		step("job "+result, finished)
		step("Job Complete", len(js) > 0 && jobComplete(js[0]))
		registered := false
		for _, a := range env.contoso.AgentNames(pool) {
			registered = registered || a == podName
		}
		step("agent removed", podName != "" && !registered && seen["pod Completed"])
		return seen["agent removed"] && seen["Job Complete"]
	})
	if r, _ := env.contoso.JobResult(id); r != "succeeded" {
		t.Fatalf("job result %q, want succeeded; timeline: %s", r, tl)
	}
	logs := podLogs(t, ns, podName, "agent")
	if !strings.Contains(logs, "hello from a nested container") || !strings.Contains(logs, "Running job: Build") {
		t.Fatalf("the agent's log lacks the job's output:\n%s", logs)
	}
	if n := len(jobs(t, ns, "linux")); n != 1 {
		t.Fatalf("%d Jobs for one queued job", n)
	}
	record("N1 one job on a real node: %s; the job step ran docker load and docker run in the dind sidecar", tl)
}

// podLogs is a container's log, through the API server and the kubelet.
func podLogs(t *testing.T, namespace, pod, container string) string {
	t.Helper()
	logs, err := containerLog(namespace, pod, container, false)
	if err != nil {
		t.Fatalf("logs of %s/%s %s: %v", namespace, pod, container, err)
	}
	return logs
}

// containerLog is a container's log (previous: of its last run before a
// restart).
func containerLog(namespace, pod, container string, previous bool) (string, error) {
	b, err := env.cluster.Kube.CoreV1().Pods(namespace).GetLogs(pod, &corev1.PodLogOptions{Container: container, Previous: previous}).Do(context.Background()).Raw()
	return string(b), err
}

// takenBy waits until a job is taken and returns the agent (the pod) that
// took it.
func takenBy(t *testing.T, id uint64, limit time.Duration) string {
	t.Helper()
	return awaitJob(t, fmt.Sprintf("job %d taken by an agent", id), limit, func() (string, bool) { return env.contoso.JobAgent(id) })
}

// jobResult waits until a job has finished and returns its result.
func jobResult(t *testing.T, id uint64, limit time.Duration) string {
	t.Helper()
	return awaitJob(t, fmt.Sprintf("job %d finished", id), limit, func() (string, bool) { return env.contoso.JobResult(id) })
}

func awaitJob(t *testing.T, what string, limit time.Duration, get func() (string, bool)) string {
	t.Helper()
	var v string
	waitFor(t, what, limit, func() bool {
		var ok bool
		v, ok = get()
		return ok
	})
	return v
}

func getPod(t *testing.T, namespace, name string) (corev1.Pod, bool) {
	t.Helper()
	var p corev1.Pod
	err := env.kube.Get(context.Background(), ctrlclient.ObjectKey{Namespace: namespace, Name: name}, &p)
	return p, err == nil
}

func podGone(t *testing.T, namespace, name string) bool {
	p, ok := getPod(t, namespace, name)
	return !ok || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

// Node scenario 2: `helm upgrade` of the pool chart to a new image tag
// while a job runs: the running pod keeps its job to the end (the chart's
// gradual rollout), and the next job gets a pod of the new image.
func TestNodeHelmUpgradeKeepsTheRunningJob(t *testing.T) {
	ns, pool, values := nodePool(t, "upgrade", nil)
	running := env.contoso.QueueJob(pool, fakeazdo.Job{Name: "Long", Demands: linuxJob.Demands, Script: "sleep 20; echo done"})
	first := takenBy(t, running, 2*time.Minute)

	values["image"].(map[string]any)["tag"] = agentTagV2
	upgraded := time.Now()
	helmUpgrade(t, "azdo-agent-pool", ns, "linux", values)
	next := env.contoso.QueueJob(pool, fakeazdo.Job{Name: "After", Demands: linuxJob.Demands, Script: "echo after the upgrade"})
	second := takenBy(t, next, 2*time.Minute)
	// Until the running job ends, its pod is never told to stop: an
	// upgrade that deleted its Job would show as a deletion here, even
	// though the agent's graceful stop could still finish a short job.
	waitFor(t, "the running job to finish", 2*time.Minute, func() bool {
		if p, ok := getPod(t, ns, first); !ok || p.DeletionTimestamp != nil {
			t.Fatalf("helm upgrade deleted pod %s while its job ran (the Job went with the old template)", first)
		}
		_, done := env.contoso.JobResult(running)
		return done
	})
	if r := jobResult(t, running, time.Minute); r != "succeeded" {
		t.Fatalf("the job running during helm upgrade ended %q, want succeeded (its pod %s)", r, first)
	}
	if r := jobResult(t, next, time.Minute); r != "succeeded" {
		t.Fatalf("the job after the upgrade ended %q", r)
	}
	p, ok := getPod(t, ns, second)
	if !ok || !strings.HasSuffix(p.Spec.Containers[0].Image, ":"+agentTagV2) {
		t.Fatalf("the job after the upgrade ran on %s with image %v, want tag %s", second, p.Spec.Containers, agentTagV2)
	}
	record("N2 helm upgrade to a new image tag %s after the running job started: that job finished succeeded on its pod %s (%.0fs after the upgrade); the next job ran on %s with the new image",
		agentTagV2, first, time.Since(upgraded).Seconds(), second)
}

// Node scenario 3: a node drain's eviction (the Eviction API) while a job
// runs: the pod gets SIGTERM, start.sh lets the job finish within
// AZP_STOP_TIMEOUT (the grace period less 15 s), then the pod leaves.
func TestNodeEvictionLetsTheJobFinish(t *testing.T) {
	ns, pool, _ := nodePool(t, "evict", nil)
	id := env.contoso.QueueJob(pool, fakeazdo.Job{Name: "Build", Demands: linuxJob.Demands, Script: "sleep 10; echo built"})
	pod := takenBy(t, id, 2*time.Minute)
	evicted := time.Now()
	if err := env.cluster.Kube.CoreV1().Pods(ns).EvictV1(context.Background(), &policyv1.Eviction{
		ObjectMeta: metav1.ObjectMeta{Name: pod, Namespace: ns}}); err != nil {
		t.Fatalf("eviction of %s: %v", pod, err)
	}
	if r := jobResult(t, id, time.Minute); r != "succeeded" {
		t.Fatalf("the job of the evicted pod ended %q, want succeeded", r)
	}
	finished := time.Since(evicted)
	gone := waitFor(t, "the evicted pod to leave", time.Minute, func() bool { return podGone(t, ns, pod) })
	logs, _ := containerLog(ns, pod, "agent", false) // "" once the pod is gone
	record("N3 eviction of %s while its 10s job ran: the job finished succeeded %.1fs after the eviction, the pod left %.1fs after; agent log: %q",
		pod, finished.Seconds(), gone.Seconds(), strings.TrimSpace(lineIn(logs, "stop requested")))
}

// Node scenario 4: a pod deleted while its job runs longer than
// AZP_STOP_TIMEOUT: the job is cancelled at the stop timeout and the pod
// leaves before its grace period ends.
func TestNodePodDeletedCancelsTheJobAtTheStopTimeout(t *testing.T) {
	ns, pool, _ := nodePool(t, "delete", func(v map[string]any) { v["terminationGracePeriodSeconds"] = 20 }) // AZP_STOP_TIMEOUT 5
	id := env.contoso.QueueJob(pool, fakeazdo.Job{Name: "Endless", Demands: linuxJob.Demands, Script: "sleep 300"})
	pod := takenBy(t, id, 2*time.Minute)
	deleted := time.Now()
	if err := env.cluster.Kube.CoreV1().Pods(ns).Delete(context.Background(), pod, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if r := jobResult(t, id, time.Minute); r != "canceled" {
		t.Fatalf("the job of the deleted pod ended %q, want canceled", r)
	}
	cancelled := time.Since(deleted)
	waitFor(t, "the deleted pod to leave", time.Minute, func() bool { _, ok := getPod(t, ns, pod); return !ok })
	gone := time.Since(deleted)
	if cancelled < 5*time.Second || gone > 20*time.Second {
		t.Fatalf("cancelled %.1fs and gone %.1fs after the delete: want the cancel at AZP_STOP_TIMEOUT (5s) and the pod gone within the grace period (20s)",
			cancelled.Seconds(), gone.Seconds())
	}
	record("N4 pod deleted during a 300s job (grace 20s, AZP_STOP_TIMEOUT 5s): job canceled %.1fs after the delete, pod gone %.1fs after", cancelled.Seconds(), gone.Seconds())
}

// Node scenario 5: the agent container crashes mid-job (its processes
// killed): the job fails in Azure DevOps when its lock runs out, the
// sweeper removes the agent, and no pod keeps running.
func TestNodeAgentCrashFailsTheJobAndTheAgentIsSwept(t *testing.T) {
	ns, pool, _ := nodePool(t, "crash", nil)
	id := env.contoso.QueueJob(pool, fakeazdo.Job{Name: "Doomed", Demands: linuxJob.Demands, Script: "sleep 300"})
	pod := takenBy(t, id, 2*time.Minute)
	var p corev1.Pod
	var containerID string
	waitFor(t, "the agent container's id in the pod's status", time.Minute, func() bool {
		p, _ = getPod(t, ns, pod)
		for _, s := range p.Status.ContainerStatuses {
			if s.Name == "agent" && s.State.Running != nil {
				containerID = strings.TrimPrefix(s.ContainerID, "containerd://")
			}
		}
		return containerID != ""
	})
	crashed := time.Now()
	if err := theNode.killContainer(containerID); err != nil {
		t.Fatal(err)
	}
	if r := jobResult(t, id, 2*time.Minute); r != "failed" {
		t.Fatalf("the crashed agent's job ended %q, want failed", r)
	}
	failed := time.Since(crashed)
	waitFor(t, "the crashed agent to be swept", 2*time.Minute, func() bool {
		for _, a := range env.contoso.AgentNames(pool) {
			if a == pod {
				return false
			}
		}
		return true
	})
	swept := time.Since(crashed)
	if !podGone(t, ns, pod) {
		t.Fatalf("pod %s still runs after its agent crashed", pod)
	}
	p, _ = getPod(t, ns, pod)
	record("N5 agent container killed mid-job: job failed %.1fs later (lock %s), agent swept %.1fs after the crash, pod %s",
		failed.Seconds(), fakeazdo.JobLockDuration, swept.Seconds(), p.Status.Phase)
}

// dumpPods logs a namespace's pods: phase, each container's state, and
// their logs, which go with the pods at teardown.
func dumpPods(t *testing.T, namespace string) {
	var l corev1.PodList
	if err := env.kube.List(context.Background(), &l, ctrlclient.InNamespace(namespace)); err != nil {
		t.Logf("pods of %s: %v", namespace, err)
		return
	}
	for _, p := range l.Items {
		t.Logf("pod %s/%s: %s %v", namespace, p.Name, p.Status.Phase, p.Status.Conditions)
		for _, st := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
			t.Logf("  container %s: %+v", st.Name, st.State)
			for _, previous := range []bool{false, true} {
				if logs, err := containerLog(namespace, p.Name, st.Name, previous); err == nil && logs != "" {
					t.Logf("  log of %s (previous %v):\n%s", st.Name, previous, logs)
				}
			}
		}
	}
}
