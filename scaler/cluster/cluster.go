// Package cluster reads what Kubernetes knows about the scaler's users: the
// KEDA ScaledJobs (keda.sh/v1alpha1) and the pods of the Jobs KEDA creates
// for them, through client-go informers, read-only (list and watch), and
// turns them into the plain facts of package scaledjobs. It decides
// nothing: the rules over those facts are pure functions elsewhere.
//
// Memory stays small: pods are watched only with KEDA's label
// (scaledjob.keda.sh/name), and every cached object is cut down, before it
// is stored, to the few fields the facts are made of.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/scaledjobs"
)

// Labels KEDA v2.21 sets (pkg/scaling/executor/scale_jobs.go): on the Jobs
// it creates and on their pod template, so every pod of them has it; and
// the Job controller's own label naming a pod's Job.
const (
	ScaledJobLabel = "scaledjob.keda.sh/name"
	JobNameLabel   = "batch.kubernetes.io/job-name"
)

// ScaledJobs is KEDA's ScaledJob resource.
var ScaledJobs = schema.GroupVersionResource{Group: "keda.sh", Version: "v1alpha1", Resource: "scaledjobs"}

// Options configure a Reader.
type Options struct {
	Client  kubernetes.Interface
	Dynamic dynamic.Interface
	// Namespaces limits what is read; empty: the whole cluster.
	Namespaces []string
	// RememberGone is how long a deleted pod stays known, so that its
	// agent, which may stay registered for a while, is still known to be
	// that ScaledJob's (and removable). Default 6h.
	RememberGone time.Duration
	Logger       logrus.FieldLogger
	Now          func() time.Time
}

// Reader keeps the facts current.
type Reader struct {
	o         Options
	log       logrus.FieldLogger
	factories []factory

	mu      sync.Mutex
	gone    map[scaledjobs.Ref]gonePod // pods deleted within RememberGone
	changed chan struct{}
}

type factory struct {
	scaledJobs cache.SharedIndexInformer
	jobs       cache.SharedIndexInformer
	pods       cache.SharedIndexInformer
	start      func(stop <-chan struct{})
}

type gonePod struct {
	pod scaledjobs.Pod
	at  time.Time
}

// New makes a reader; Start starts it.
func New(o Options) (*Reader, error) {
	if o.Client == nil || o.Dynamic == nil {
		return nil, errors.New("cluster: a Kubernetes client and a dynamic client are required")
	}
	if o.RememberGone <= 0 {
		o.RememberGone = 6 * time.Hour
	}
	if o.Logger == nil {
		o.Logger = logrus.StandardLogger()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	r := &Reader{o: o, log: o.Logger.WithField("component", "cluster"), gone: map[scaledjobs.Ref]gonePod{}, changed: make(chan struct{})}
	namespaces := o.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	for _, ns := range namespaces {
		f, err := r.newFactory(ns)
		if err != nil {
			return nil, err
		}
		r.factories = append(r.factories, f)
	}
	return r, nil
}

func (r *Reader) newFactory(ns string) (factory, error) {
	dyn := dynamicinformer.NewFilteredDynamicSharedInformerFactory(r.o.Dynamic, 0, ns, nil)
	sj := dyn.ForResource(ScaledJobs).Informer()
	if err := sj.SetTransform(trimScaledJob); err != nil {
		return factory{}, err
	}
	typed := informers.NewSharedInformerFactoryWithOptions(r.o.Client, 0, informers.WithNamespace(ns),
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) { lo.LabelSelector = ScaledJobLabel }))
	pods := typed.Core().V1().Pods().Informer()
	if err := pods.SetTransform(trimPod); err != nil {
		return factory{}, err
	}
	jobs := typed.Batch().V1().Jobs().Informer()
	if err := jobs.SetTransform(trimJob); err != nil {
		return factory{}, err
	}
	notify := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { r.notify() },
		UpdateFunc: func(any, any) { r.notify() },
		DeleteFunc: func(any) { r.notify() },
	}
	if _, err := sj.AddEventHandler(notify); err != nil {
		return factory{}, err
	}
	if _, err := jobs.AddEventHandler(notify); err != nil {
		return factory{}, err
	}
	if _, err := pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { r.notify() },
		UpdateFunc: func(any, any) { r.notify() },
		DeleteFunc: r.podDeleted,
	}); err != nil {
		return factory{}, err
	}
	return factory{scaledJobs: sj, jobs: jobs, pods: pods, start: func(stop <-chan struct{}) { dyn.Start(stop); typed.Start(stop) }}, nil
}

// Start starts the informers; they run until ctx ends.
func (r *Reader) Start(ctx context.Context) {
	for _, f := range r.factories {
		f.start(ctx.Done())
	}
}

// WaitSynced waits, within ctx, until the caches hold what the API server
// had when they started: before that the facts are incomplete, and nobody
// may act on them.
func (r *Reader) WaitSynced(ctx context.Context) error {
	var synced []cache.InformerSynced
	for _, f := range r.factories {
		synced = append(synced, f.scaledJobs.HasSynced, f.jobs.HasSynced, f.pods.HasSynced)
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return fmt.Errorf("cluster: the ScaledJob, Job and pod caches did not sync (is list/watch on keda.sh scaledjobs, batch jobs and pods granted?): %w", context.Cause(ctx))
	}
	r.log.WithField("namespaces", r.o.Namespaces).Info("reading ScaledJobs and their pods from the cluster")
	return nil
}

// Changed returns a channel closed at the next change of the facts.
func (r *Reader) Changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

func (r *Reader) notify() {
	r.mu.Lock()
	defer r.mu.Unlock()
	close(r.changed)
	r.changed = make(chan struct{})
}

// ScaledJobs lists the ScaledJobs, by namespace and name.
func (r *Reader) ScaledJobs() []scaledjobs.ScaledJob {
	var out []scaledjobs.ScaledJob
	for _, f := range r.factories {
		for _, obj := range f.scaledJobs.GetStore().List() {
			if u, ok := obj.(*unstructured.Unstructured); ok {
				out = append(out, ScaledJobFacts(u))
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref.String() < out[j].Ref.String() })
	return out
}

// Jobs lists the unfinished Jobs of ScaledJobs, by namespace and name.
func (r *Reader) Jobs() []scaledjobs.Job {
	var out []scaledjobs.Job
	for _, f := range r.factories {
		for _, obj := range f.jobs.GetStore().List() {
			if j, ok := obj.(*batchv1.Job); ok && !jobFinished(j) {
				out = append(out, scaledjobs.Job{Ref: scaledjobs.Ref{Namespace: j.Namespace, Name: j.Name},
					ScaledJob: j.Labels[ScaledJobLabel], Created: j.CreationTimestamp.Time})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref.String() < out[j].Ref.String() })
	return out
}

// jobFinished: the Job controller marked it Complete or Failed (KEDA
// counts a Job as running until then).
func jobFinished(j *batchv1.Job) bool {
	for _, c := range j.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// Pods lists the pods of ScaledJobs' Jobs, those deleted within
// RememberGone included (as gone), by namespace and name.
func (r *Reader) Pods() []scaledjobs.Pod {
	seen := map[scaledjobs.Ref]bool{}
	var out []scaledjobs.Pod
	for _, f := range r.factories {
		for _, obj := range f.pods.GetStore().List() {
			if p, ok := obj.(*corev1.Pod); ok {
				fact := PodFacts(p)
				seen[fact.Ref] = true
				out = append(out, fact)
			}
		}
	}
	now := r.o.Now()
	r.mu.Lock()
	for ref, g := range r.gone {
		switch {
		case now.Sub(g.at) > r.o.RememberGone:
			delete(r.gone, ref)
		case !seen[ref]:
			out = append(out, g.pod)
		}
	}
	r.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Ref.String() < out[j].Ref.String() })
	return out
}

func (r *Reader) podDeleted(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	if p, ok := obj.(*corev1.Pod); ok {
		fact := PodFacts(p)
		fact.Gone = true
		r.mu.Lock()
		r.gone[fact.Ref] = gonePod{pod: fact, at: r.o.Now()}
		r.mu.Unlock()
	}
	r.notify()
}

// ScaledJobFacts reads the fields the scaler uses from a ScaledJob.
// Malformed fields read as absent: the API server validated the object
// against KEDA's schema.
func ScaledJobFacts(u *unstructured.Unstructured) scaledjobs.ScaledJob {
	s := scaledjobs.ScaledJob{Ref: scaledjobs.Ref{Namespace: u.GetNamespace(), Name: u.GetName()}}
	if n, ok, _ := unstructured.NestedInt64(u.Object, "spec", "maxReplicaCount"); ok {
		s.MaxReplicaCount = &n
	}
	if n, ok, _ := unstructured.NestedInt64(u.Object, "spec", "minReplicaCount"); ok {
		s.MinReplicaCount = &n
	}
	triggers, _, _ := unstructured.NestedSlice(u.Object, "spec", "triggers")
	for i, t := range triggers {
		m, ok := t.(map[string]any)
		if !ok {
			continue
		}
		if typ, _, _ := unstructured.NestedString(m, "type"); typ != "external" {
			continue
		}
		md, _, _ := unstructured.NestedStringMap(m, "metadata")
		s.Triggers = append(s.Triggers, scaledjobs.Trigger{Index: i, Metadata: md})
	}
	return s
}

// PodFacts reads the fields the scaler uses from a pod.
func PodFacts(p *corev1.Pod) scaledjobs.Pod {
	job := p.Labels[JobNameLabel]
	if job == "" {
		job = p.Labels["job-name"] // before Kubernetes 1.27
	}
	gone := p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
	return scaledjobs.Pod{Ref: scaledjobs.Ref{Namespace: p.Namespace, Name: p.Name}, ScaledJob: p.Labels[ScaledJobLabel], Job: job, Gone: gone,
		Problem: podProblem(p), Created: p.CreationTimestamp.Time}
}

// Waiting reasons of a container that will not start without a change to
// the pod, its image, or the cluster.
var stuck = map[string]bool{
	"ErrImagePull": true, "ImagePullBackOff": true, "ErrImageNeverPull": true, "InvalidImageName": true,
	"CreateContainerConfigError": true, "CreateContainerError": true, "CrashLoopBackOff": true,
}

// podProblem is why a pod cannot start, from its conditions and container
// statuses; "" when nothing says so.
func podProblem(p *corev1.Pod) string {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return "Unschedulable: " + c.Message
		}
	}
	for _, list := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
		for _, cs := range list {
			if w := cs.State.Waiting; w != nil && stuck[w.Reason] {
				return fmt.Sprintf("%s (container %s): %s", w.Reason, cs.Name, w.Message)
			}
		}
	}
	return ""
}

// trimScaledJob keeps of a ScaledJob only what ScaledJobFacts reads, before
// the informer stores it.
func trimScaledJob(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil // a tombstone
	}
	out := &unstructured.Unstructured{Object: map[string]any{}}
	out.SetAPIVersion(u.GetAPIVersion())
	out.SetKind(u.GetKind())
	out.SetNamespace(u.GetNamespace())
	out.SetName(u.GetName())
	out.SetUID(u.GetUID())
	out.SetResourceVersion(u.GetResourceVersion())
	for _, f := range []string{"maxReplicaCount", "minReplicaCount", "triggers"} {
		if v, ok, _ := unstructured.NestedFieldNoCopy(u.Object, "spec", f); ok {
			_ = unstructured.SetNestedField(out.Object, v, "spec", f)
		}
	}
	return out, nil
}

// trimPod keeps of a pod only what PodFacts reads.
func trimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil // a tombstone
	}
	labels := map[string]string{}
	for _, k := range []string{ScaledJobLabel, JobNameLabel, "job-name"} {
		if v, ok := p.Labels[k]; ok {
			labels[k] = v
		}
	}
	status := corev1.PodStatus{Phase: p.Status.Phase}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled {
			status.Conditions = append(status.Conditions, corev1.PodCondition{Type: c.Type, Status: c.Status, Reason: c.Reason, Message: c.Message})
		}
	}
	trim := func(list []corev1.ContainerStatus) []corev1.ContainerStatus {
		var out []corev1.ContainerStatus
		for _, cs := range list {
			if cs.State.Waiting != nil {
				out = append(out, corev1.ContainerStatus{Name: cs.Name, State: corev1.ContainerState{Waiting: cs.State.Waiting}})
			}
		}
		return out
	}
	status.InitContainerStatuses, status.ContainerStatuses = trim(p.Status.InitContainerStatuses), trim(p.Status.ContainerStatuses)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name, UID: p.UID, ResourceVersion: p.ResourceVersion,
			Labels: labels, DeletionTimestamp: p.DeletionTimestamp, CreationTimestamp: p.CreationTimestamp},
		Status: status,
	}, nil
}

// trimJob keeps of a Job only what Jobs reads.
func trimJob(obj any) (any, error) {
	j, ok := obj.(*batchv1.Job)
	if !ok {
		return obj, nil // a tombstone
	}
	out := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: j.Namespace, Name: j.Name, UID: j.UID, ResourceVersion: j.ResourceVersion,
		CreationTimestamp: j.CreationTimestamp, Labels: map[string]string{ScaledJobLabel: j.Labels[ScaledJobLabel]}}}
	for _, c := range j.Status.Conditions {
		out.Status.Conditions = append(out.Status.Conditions, batchv1.JobCondition{Type: c.Type, Status: c.Status})
	}
	return out, nil
}

// Events records Kubernetes Events on ScaledJobs (create and patch on
// events: the only write the scaler makes to the cluster).
type Events struct {
	r        *Reader
	recorder record.EventRecorder
	stop     func()
}

// NewEvents starts an event recorder for the reader's ScaledJobs.
func (r *Reader) NewEvents() *Events {
	b := record.NewBroadcaster()
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: r.o.Client.CoreV1().Events("")})
	return &Events{r: r, recorder: b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "azdo-keda-scaler"}), stop: b.Shutdown}
}

// Warn records a Warning Event on a ScaledJob, Normal when ok; nothing when
// the ScaledJob is not (or no longer) known.
func (e *Events) Warn(ref scaledjobs.Ref, ok bool, reason, message string) {
	for _, f := range e.r.factories {
		obj, exists, err := f.scaledJobs.GetStore().GetByKey(ref.Namespace + "/" + ref.Name)
		if err != nil || !exists {
			continue
		}
		u, isU := obj.(*unstructured.Unstructured)
		if !isU {
			continue
		}
		kind := corev1.EventTypeWarning
		if ok {
			kind = corev1.EventTypeNormal
		}
		e.recorder.Event(u, kind, reason, message)
		return
	}
}

// Stop flushes and stops the recorder.
func (e *Events) Stop() { e.stop() }
