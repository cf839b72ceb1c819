package cluster

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus/hooks/test"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/scaledjobs"
)

func scaledJob(ns, name string, maxReplicas int64, addr string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledJob",
		"metadata": map[string]any{"namespace": ns, "name": name, "annotations": map[string]any{"big": "not kept"}},
		"spec": map[string]any{
			"maxReplicaCount": maxReplicas,
			"jobTargetRef":    map[string]any{"template": map[string]any{"spec": map[string]any{"containers": []any{}}}},
			"triggers": []any{
				map[string]any{"type": "cron", "metadata": map[string]any{"timezone": "UTC"}},
				map[string]any{"type": "external", "metadata": map[string]any{"scalerAddress": addr, "poolName": "linux"}},
			},
		},
	}}
	return u
}

func pod(ns, name, scaledJob, job string, phase corev1.PodPhase) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
			Labels:      map[string]string{ScaledJobLabel: scaledJob, JobNameLabel: job, "team": "not kept"},
			Annotations: map[string]string{"big": "not kept"}},
		Spec:   corev1.PodSpec{Containers: []corev1.Container{{Name: "agent", Image: "agent:1"}}},
		Status: corev1.PodStatus{Phase: phase},
	}
}

func newReader(t *testing.T, namespaces []string, objs ...runtime.Object) (*Reader, *fake.Clientset, *dynamicfake.FakeDynamicClient, *time.Time) {
	t.Helper()
	var typed, dyn []runtime.Object
	for _, o := range objs {
		if _, ok := o.(*unstructured.Unstructured); ok {
			dyn = append(dyn, o)
		} else {
			typed = append(typed, o)
		}
	}
	client := fake.NewClientset(typed...)
	dc := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{ScaledJobs: "ScaledJobList"}, dyn...)
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	log, _ := test.NewNullLogger()
	r, err := New(Options{Client: client, Dynamic: dc, Namespaces: namespaces, Logger: log, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r.Start(ctx)
	if err := r.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	return r, client, dc, &now
}

// waitChange waits for the reader's next change (an informer event), at
// most 10 s: no sleeps, the reader's own notification.
func waitChange(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("no change seen within 10s")
	}
}

func TestFactsFromScaledJobsAndPods(t *testing.T) {
	r, client, dc, _ := newReader(t, nil,
		scaledJob("team-a", "linux", 5, "azdo-keda-scaler.keda.svc:6000"),
		scaledJob("team-b", "linux", 3, "azdo-keda-scaler.keda.svc:6000"),
		pod("team-a", "linux-x7k2p-b4c6d", "linux", "linux-x7k2p", corev1.PodRunning),
		pod("team-b", "linux-q9w8e-r5t6y", "linux", "linux-q9w8e", corev1.PodSucceeded),
	)
	sjs := r.ScaledJobs()
	if got := fmt.Sprint(len(sjs), sjs[0].Ref, *sjs[0].MaxReplicaCount, sjs[0].Triggers); got !=
		"2 team-a/linux 5 [{1 map[poolName:linux scalerAddress:azdo-keda-scaler.keda.svc:6000]}]" {
		t.Fatalf("facts: %s", got)
	}
	if targets := scaledjobs.Targets(sjs, []string{"azdo-keda-scaler.keda.svc.cluster.local:6000"}); len(targets) != 2 {
		t.Fatalf("targets %+v", targets)
	}
	pods := r.Pods()
	var got []string
	for _, p := range pods {
		got = append(got, fmt.Sprintf("%s sj=%s job=%s gone=%t", p.Ref, p.ScaledJob, p.Job, p.Gone))
	}
	if want := "[team-a/linux-x7k2p-b4c6d sj=linux job=linux-x7k2p gone=false team-b/linux-q9w8e-r5t6y sj=linux job=linux-q9w8e gone=true]"; fmt.Sprint(got) != want {
		t.Fatalf("pods %v, want %s", got, want)
	}
	if owner, ok := scaledjobs.NewOwners(pods).Of("linux-q9w8e-r5t6y"); !ok || owner != (scaledjobs.Ref{Namespace: "team-b", Name: "linux"}) {
		t.Fatalf("owner %v %v", owner, ok)
	}

	// A deleted ScaledJob leaves the facts at once.
	changed := r.Changed()
	if err := dc.Resource(ScaledJobs).Namespace("team-b").Delete(context.Background(), "linux", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitChange(t, changed)
	if sjs := r.ScaledJobs(); len(sjs) != 1 || sjs[0].Namespace != "team-a" {
		t.Fatalf("after deleting team-b/linux: %+v", sjs)
	}
	// A new pod appears.
	changed = r.Changed()
	if _, err := client.CoreV1().Pods("team-a").Create(context.Background(), pod("team-a", "linux-aaaaa-bbbbb", "linux", "linux-aaaaa", corev1.PodPending), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitChange(t, changed)
	if len(r.Pods()) != 3 {
		t.Fatalf("pods after a create: %v", r.Pods())
	}
}

// A deleted pod stays known, as gone, for RememberGone: its agent may stay
// registered, and is still that ScaledJob's (and removable). After that it
// is forgotten.
func TestDeletedPodsAreRememberedAsGone(t *testing.T) {
	r, client, _, now := newReader(t, nil, pod("team-a", "linux-x7k2p-b4c6d", "linux", "linux-x7k2p", corev1.PodRunning))
	changed := r.Changed()
	if err := client.CoreV1().Pods("team-a").Delete(context.Background(), "linux-x7k2p-b4c6d", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitChange(t, changed)
	pods := r.Pods()
	if len(pods) != 1 || !pods[0].Gone || pods[0].ScaledJob != "linux" {
		t.Fatalf("a deleted pod: %+v", pods)
	}
	*now = now.Add(6*time.Hour + time.Second)
	if pods := r.Pods(); len(pods) != 0 {
		t.Fatalf("a pod deleted over RememberGone ago is still known: %+v", pods)
	}
}

// Limited to namespaces, the reader sees nothing of the others.
func TestNamespacesLimitWhatIsRead(t *testing.T) {
	r, _, _, _ := newReader(t, []string{"team-a"},
		scaledJob("team-a", "linux", 5, "x:6000"), scaledJob("team-b", "linux", 5, "x:6000"),
		pod("team-a", "a-1", "linux", "a", corev1.PodRunning), pod("team-b", "b-1", "linux", "b", corev1.PodRunning))
	if sjs, pods := r.ScaledJobs(), r.Pods(); len(sjs) != 1 || len(pods) != 1 || sjs[0].Namespace != "team-a" || pods[0].Namespace != "team-a" {
		t.Fatalf("read %+v and %+v", sjs, pods)
	}
}

// The informers store trimmed objects: no annotations, no pod spec, only
// the labels the facts need.
func TestCachedObjectsAreTrimmed(t *testing.T) {
	r, _, _, _ := newReader(t, nil, scaledJob("team-a", "linux", 5, "x:6000"), pod("team-a", "a-1", "linux", "a", corev1.PodRunning))
	u := r.factories[0].scaledJobs.GetStore().List()[0].(*unstructured.Unstructured)
	if _, ok, _ := unstructured.NestedMap(u.Object, "spec", "jobTargetRef"); ok || len(u.GetAnnotations()) != 0 {
		t.Fatalf("ScaledJob kept more than it needs: %v", u.Object)
	}
	p := r.factories[0].pods.GetStore().List()[0].(*corev1.Pod)
	if len(p.Spec.Containers) != 0 || len(p.Annotations) != 0 || p.Labels["team"] != "" || p.Labels[ScaledJobLabel] != "linux" {
		t.Fatalf("pod kept more than it needs: %+v", p)
	}
}

// Unfinished Jobs are listed; a pod says why it cannot start.
func TestJobsAndPodProblems(t *testing.T) {
	job := func(name string, done bool) *batchv1.Job {
		j := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: name, Labels: map[string]string{ScaledJobLabel: "linux"},
			CreationTimestamp: metav1.NewTime(time.Date(2026, 12, 3, 11, 0, 0, 0, time.UTC))}}
		if done {
			j.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}
		}
		return j
	}
	unschedulable := pod("team-a", "linux-a-1", "linux", "linux-a", corev1.PodPending)
	unschedulable.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
		Reason: corev1.PodReasonUnschedulable, Message: "0/3 nodes are available: 3 Insufficient ephemeral-storage."}}
	pullFails := pod("team-a", "linux-b-1", "linux", "linux-b", corev1.PodPending)
	pullFails.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "agent",
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "Back-off pulling image"}}}}
	slow := pod("team-a", "linux-c-1", "linux", "linux-c", corev1.PodPending)
	slow.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "agent",
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}}
	r, _, _, _ := newReader(t, nil, job("linux-a", false), job("linux-done", true), unschedulable, pullFails, slow)
	jobs := r.Jobs()
	if len(jobs) != 1 || jobs[0].Name != "linux-a" || jobs[0].ScaledJob != "linux" || jobs[0].Created.IsZero() {
		t.Fatalf("unfinished Jobs: %+v", jobs)
	}
	problems := map[string]string{}
	for _, p := range r.Pods() {
		problems[p.Name] = p.Problem
	}
	if !strings.HasPrefix(problems["linux-a-1"], "Unschedulable: 0/3 nodes") || !strings.HasPrefix(problems["linux-b-1"], "ImagePullBackOff (container agent)") ||
		problems["linux-c-1"] != "" {
		t.Fatalf("problems: %q", problems)
	}
}

// Events land on the ScaledJob itself (kind, name and UID), so that
// kubectl describe scaledjob shows them; an unknown ScaledJob gets none.
func TestEventsOnScaledJobs(t *testing.T) {
	sj := scaledJob("team-a", "linux", 5, "x:6000")
	sj.SetUID("uid-1")
	r, client, _, _ := newReader(t, nil, sj)
	ev := r.NewEvents()
	t.Cleanup(ev.Stop)
	ev.Warn(scaledjobs.Ref{Namespace: "team-a", Name: "ghost"}, false, "Ignored", "no such ScaledJob")
	ev.Warn(scaledjobs.Ref{Namespace: "team-a", Name: "linux"}, false, "AgentPodsCannotStart", "Job linux-x has no pod after 3m0s")
	deadline := time.Now().Add(10 * time.Second)
	for {
		list, err := client.CoreV1().Events("team-a").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Items) > 0 {
			e := list.Items[0]
			if len(list.Items) != 1 || e.InvolvedObject.Kind != "ScaledJob" || e.InvolvedObject.Name != "linux" || e.InvolvedObject.UID != "uid-1" ||
				e.InvolvedObject.APIVersion != "keda.sh/v1alpha1" || e.Type != corev1.EventTypeWarning || e.Reason != "AgentPodsCannotStart" {
				t.Fatalf("events: %+v", list.Items)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no Event recorded within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
