// Package scaledjobs is plain data about what Kubernetes knows of the KEDA
// ScaledJobs that use this scaler (their external triggers, how many Jobs
// KEDA may run for them, their pods), and the pure rules over it: which
// triggers point at this scaler (Targets) and whose pod an agent is
// (Owner). It imports no Kubernetes client: package cluster fills it from
// informers, the way package pools fills package queue from Azure DevOps.
package scaledjobs

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Ref names a namespaced object.
type Ref struct {
	Namespace string
	Name      string
}

// String is "namespace/name".
func (r Ref) String() string { return r.Namespace + "/" + r.Name }

// DefaultStallGrace is how long a Job may have no pod that can start
// before its ScaledJob is stalled (--stall-grace).
const DefaultStallGrace = 2 * time.Minute

// KEDA's defaults (apis/keda/v1alpha1/scaledjob_types.go in v2.21).
const (
	DefaultMaxReplicaCount = 100
	DefaultMinReplicaCount = 0
)

// ScaledJob is what the scaler needs of one KEDA ScaledJob.
type ScaledJob struct {
	Ref
	// MinReplicaCount and MaxReplicaCount as written; nil when unset.
	MinReplicaCount *int64
	MaxReplicaCount *int64
	// Triggers are its triggers of type external, in the order written.
	Triggers []Trigger
}

// Trigger is one external trigger of a ScaledJob.
type Trigger struct {
	// Index is the trigger's position among all the ScaledJob's triggers
	// (KEDA names its metric s<index>-...).
	Index int
	// Metadata is the trigger's metadata as written, scalerAddress
	// included; ...FromEnv keys are not resolved (KEDA resolves them from
	// the pod template before each call).
	Metadata map[string]string
}

// ScalerAddress is the trigger's scalerAddress.
func (t Trigger) ScalerAddress() string { return t.Metadata["scalerAddress"] }

// Room is the most Jobs KEDA runs at once for the ScaledJob, by KEDA's own
// rule: maxReplicaCount minus minReplicaCount (the minimum is kept apart),
// or maxReplicaCount when the minimum is above it; 100 when unset.
func (s ScaledJob) Room() int64 {
	if s.MaxReplicaCount == nil {
		return DefaultMaxReplicaCount
	}
	maxN := *s.MaxReplicaCount
	if s.MinReplicaCount != nil && *s.MinReplicaCount > maxN {
		return maxN
	}
	minN := int64(DefaultMinReplicaCount)
	if s.MinReplicaCount != nil {
		minN = *s.MinReplicaCount
	}
	return maxN - minN
}

// Target is an external trigger that points at this scaler.
type Target struct {
	ScaledJob Ref
	Trigger   Trigger
	Room      int64
	// Stalled says why the ScaledJob's pods cannot start (Stall); "" when
	// they can. Set by the caller of Targets.
	Stalled string
}

// Targets lists the external triggers whose scalerAddress is one of the
// addresses this scaler is reachable at, by ScaledJob then trigger index.
func Targets(sjs []ScaledJob, addresses []string) []Target {
	want := make(map[string]bool, len(addresses))
	for _, a := range addresses {
		want[NormalizeAddress(a)] = true
	}
	var out []Target
	for _, s := range sjs {
		for _, t := range s.Triggers {
			if want[NormalizeAddress(t.ScalerAddress())] {
				out = append(out, Target{ScaledJob: s.Ref, Trigger: t, Room: s.Room()})
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].ScaledJob != out[j].ScaledJob {
			return out[i].ScaledJob.String() < out[j].ScaledJob.String()
		}
		return out[i].Trigger.Index < out[j].Trigger.Index
	})
	return out
}

// NormalizeAddress makes the spellings of one Service address equal: gRPC's
// "dns:///" scheme and a trailing dot are dropped, case is ignored, and a
// Service's fully qualified name ("name.ns.svc.cluster.local") equals its
// short cluster form ("name.ns.svc"). A port must be given: KEDA requires
// one in scalerAddress.
func NormalizeAddress(addr string) string {
	a := strings.ToLower(strings.TrimSpace(addr))
	a = strings.TrimPrefix(a, "dns:///")
	a = strings.TrimPrefix(a, "dns:")
	host, port := a, ""
	if i := strings.LastIndexByte(a, ':'); i >= 0 && !strings.HasSuffix(a, "]") {
		host, port = a[:i], a[i:]
	}
	host = strings.TrimSuffix(host, ".")
	host = strings.TrimSuffix(host, ".cluster.local")
	return host + port
}

// Pod is a pod of one of a ScaledJob's Jobs, as KEDA and the Job
// controller label it (scaledjob.keda.sh/name, batch.kubernetes.io/job-name).
type Pod struct {
	Ref
	ScaledJob string // its ScaledJob, in the pod's namespace
	Job       string
	// Gone: the pod was deleted, or all its containers have terminated.
	// An agent of a gone pod can never come back.
	Gone bool
	// Problem is why the pod cannot start, as Kubernetes says it
	// ("Unschedulable: 0/3 nodes are available...", "ImagePullBackOff:
	// ..."); "" when nothing is known to be wrong.
	Problem string
	// Created is when the pod was created: the oldest idle pods stay as
	// standby agents.
	Created time.Time
}

// Job is an unfinished Job KEDA made for a ScaledJob.
type Job struct {
	Ref
	ScaledJob string // in the Job's namespace
	Created   time.Time
}

// Stall says why a ScaledJob's pods cannot start, or "" when nothing shows
// they cannot: one of its unfinished Jobs is older than grace and has no
// pod that may still run: either no pod at all (the Job controller could
// not create one: a ResourceQuota, Pod Security admission) or only pods
// with a problem (unschedulable, image pull or container config errors).
// A pod that is merely slow (pulling a large image, waiting for a node
// that is being added) has no problem and does not stall its template.
func Stall(sj Ref, jobs []Job, pods []Pod, now time.Time, grace time.Duration) string {
	podsOf := map[string][]Pod{}
	for _, p := range pods {
		if p.Namespace == sj.Namespace && p.ScaledJob == sj.Name && !p.Gone {
			podsOf[p.Job] = append(podsOf[p.Job], p)
		}
	}
	var why []string
	for _, j := range jobs {
		if j.Namespace != sj.Namespace || j.ScaledJob != sj.Name || now.Sub(j.Created) < grace {
			continue
		}
		ps := podsOf[j.Name]
		if len(ps) == 0 {
			why = append(why, fmt.Sprintf("Job %s has no pod after %s: the Job controller could not create one "+
				"(a ResourceQuota, a LimitRange or Pod Security admission may refuse it; see the Job's events)", j.Name, now.Sub(j.Created).Round(time.Second)))
			continue
		}
		var problems []string
		for _, p := range ps {
			if p.Problem == "" {
				problems = nil
				break
			}
			problems = append(problems, fmt.Sprintf("pod %s: %s", p.Name, p.Problem))
		}
		if len(problems) > 0 {
			why = append(why, fmt.Sprintf("Job %s: %s", j.Name, strings.Join(problems, "; ")))
		}
	}
	if len(why) == 0 {
		return ""
	}
	sort.Strings(why)
	if len(why) > 1 {
		return fmt.Sprintf("%s (and %d more)", why[0], len(why)-1)
	}
	return why[0]
}

// Owners indexes pods by name, to tell whose pod an agent is (Of).
type Owners struct {
	byName map[string]Pod // lower-cased pod name -> the pod
	twice  map[string]bool
}

// NewOwners indexes pods.
func NewOwners(pods []Pod) Owners {
	o := Owners{byName: make(map[string]Pod, len(pods)), twice: map[string]bool{}}
	for _, p := range pods {
		name := strings.ToLower(p.Name)
		if prev, ok := o.byName[name]; ok && prev.Ref != p.Ref {
			o.twice[name] = true
		}
		o.byName[name] = p
	}
	return o
}

// Of is the ScaledJob whose pod an agent is: the agent is named after a
// pod of one of its Jobs (agent names compare ignoring case, as Azure
// DevOps compares them). An agent named after no known pod, or after pods
// of two namespaces, is nobody's: a static agent, or one the scaler cannot
// tell apart. That is never a guess from the name's shape.
func (o Owners) Of(agent string) (Ref, bool) {
	p, ok := o.Pod(agent)
	if !ok {
		return Ref{}, false
	}
	return Ref{Namespace: p.Namespace, Name: p.ScaledJob}, true
}

// Pod is the pod an agent is named after; false when there is none, or
// pods of that name in two namespaces.
func (o Owners) Pod(agent string) (Pod, bool) {
	name := strings.ToLower(agent)
	p, ok := o.byName[name]
	if !ok || o.twice[name] {
		return Pod{}, false
	}
	return p, true
}
