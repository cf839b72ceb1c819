// Package routing decides which of a pool's triggers counts each job, so
// that the numbers KEDA gets from the ScaledJobs of one pool add up to the
// pods the pool needs: one per job, no more and no fewer.
//
// The rules are a pure function (Route) of a snapshot's jobs and the
// triggers of the pool, with a named reason for every outcome. Table keeps
// the triggers KEDA asks about and caches the plan; it never calls Azure
// DevOps and never decides anything Route does not.
package routing

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/queue"
)

// Trigger is one trigger of a pool, as the rules see it.
type Trigger struct {
	// ID is the ScaledJob's namespace/name: one trigger per ScaledJob and
	// pool, so that editing a ScaledJob replaces its trigger.
	ID string
	// Digest identifies the trigger's metadata; a new digest for a known ID
	// is an edited ScaledJob.
	Digest    string
	Namespace string
	Name      string
	// Priority: among the triggers that accept a waiting job, the highest
	// counts it.
	Priority int64
	// Rank orders triggers of equal priority: the least capable agent
	// template (lowest rank) counts a waiting job, so that a GPU pod is
	// never started for a job a plain Linux pod can run.
	Rank int
	// Shared triggers count every job they accept, waiting or running,
	// like KEDA's built-in scaler, and take no part in routing.
	Shared bool
	// InFlight: the trigger counts the jobs its own agents run
	// (scaleOnInFlight).
	InFlight bool
	// Accepts is the trigger's filter; nil accepts every job.
	Accepts func(*queue.Job) bool
	// OwnsAgent reports whether an agent is one of the trigger's pods.
	OwnsAgent func(agent string) bool
	// Filter describes the filter, for reasons ("capabilities=...").
	Filter string
	// Capabilities is the agent template of a capabilities trigger (nil
	// otherwise): the placeholder keeper registers an agent with them.
	Capabilities map[string]string
	// Room is the most jobs the trigger may count, the Jobs KEDA runs at
	// once for its ScaledJob (maxReplicaCount); 0: unknown, no limit. Its
	// own running jobs use it first; waiting jobs beyond it go to the next
	// trigger that accepts them.
	Room int64
	// Stalled says why the trigger's pods cannot start ("" when they can):
	// its waiting jobs go to the next trigger that accepts them, and stay
	// with it only when no other can run them.
	Stalled string
}

// full reports whether an exclusive trigger has counted all it has room for.
func (t *Trigger) full(counts map[string]int) bool {
	return t.Room > 0 && int64(counts[t.ID]) >= t.Room
}

func (t *Trigger) accepts(j *queue.Job) bool { return t.Accepts == nil || t.Accepts(j) }

// anyAccepts reports whether one of the triggers, shared ones included,
// accepts the job: whether some pod could run it.
func anyAccepts(ts []Trigger, j *queue.Job) bool {
	for i := range ts {
		if ts[i].accepts(j) {
			return true
		}
	}
	return false
}

// Label is how reasons and logs name the trigger.
func (t *Trigger) Label() string { return t.Namespace + "/" + t.Name }

// Reasons for a job's route.
const (
	// RoutedWaiting: a waiting job counts for the first trigger (highest
	// priority, then least capable template, then name) that accepts it.
	RoutedWaiting = "waiting"
	// HeldWaiting: routed, but counted nowhere yet: the scaler answers its
	// first calls and may not know every trigger of the pool (warm-up).
	HeldWaiting = "held-warmup"
	// HeldBehindOlder: routed, but counted nowhere yet, because an older
	// waiting job that the trigger's agents can also run is routed to
	// another trigger (Rules.HoldBehindOlder). Azure DevOps hands a free
	// agent the oldest job it can run, so a pod started now would take that
	// job, the pod started for it would find nothing, and this job would
	// need a pod more.
	HeldBehindOlder = "held-behind-older"
	// WaitingForParallelJob: the organization's parallel jobs are taken
	// (Rules.Blocked, package budget): Azure DevOps will not give the job
	// an agent before one is free, so no trigger counts it.
	WaitingForParallelJob = "waiting-for-parallel-job"
	// Unroutable: no trigger of the pool accepts the waiting job; it waits
	// until one does.
	Unroutable = "no-trigger-accepts"
	// AroundStall: counted by a trigger after the one the order prefers,
	// whose pods cannot start (Trigger.Stalled; Assignment.Skipped).
	AroundStall = "waiting-around-stalled"
	// OnStalled: counted by a trigger whose pods cannot start, because no
	// other with room accepts it.
	OnStalled = "waiting-on-stalled"
	// NoRoom: triggers accept the waiting job, but each already counts as
	// many jobs as its ScaledJob may run Jobs (maxReplicaCount); it waits
	// until one has room.
	NoRoom = "no-room"
	// RunningOwn: the job runs on an agent that is one of the trigger's pods.
	RunningOwn = "running-own-agent"
	// RunningNotCounted: it runs on the trigger's agent, which has
	// scaleOnInFlight off.
	RunningNotCounted = "running-not-in-flight"
	// RunningStatic: it runs on an agent that is nobody's pod (a static
	// agent, or a pod of a ScaledJob the scaler does not know).
	RunningStatic = "running-static-agent"
)

// Reasons lists every reason a job can have, for documentation checks.
var Reasons = []string{RoutedWaiting, HeldWaiting, HeldBehindOlder, WaitingForParallelJob, Unroutable, AroundStall, OnStalled, NoRoom,
	RunningOwn, RunningNotCounted, RunningStatic}

// Assignment is what happens to one job.
type Assignment struct {
	Job     *queue.Job
	Waiting bool
	// Owner is the trigger that counts the job exclusively ("" none); with
	// RunningNotCounted and HeldWaiting it is the trigger the job belongs to.
	Owner  string
	Reason string
	// Shared lists the shared triggers that count the job too.
	Shared []string
	// Skipped is the stalled trigger the order preferred (AroundStall).
	Skipped string
	// Behind is the older job a HeldBehindOlder job waits behind.
	Behind uint64
}

// CountedByOwner reports whether Owner counts the job.
func (a *Assignment) CountedByOwner() bool {
	switch a.Reason {
	case RoutedWaiting, AroundStall, OnStalled, RunningOwn:
		return a.Owner != ""
	}
	return false
}

// Plan is the outcome of Route for one snapshot and trigger set.
type Plan struct {
	Assignments []Assignment
	Triggers    []Trigger // in routing order
	counts      map[string]int
	blockedWhy  string
}

// Count is the number of jobs the trigger counts; 0 for an unknown one.
func (p *Plan) Count(id string) int { return p.counts[id] }

// Unroutable lists the waiting jobs no trigger accepts.
func (p *Plan) Unroutable() []Assignment {
	var out []Assignment
	for _, r := range p.Assignments {
		if r.Reason == Unroutable {
			out = append(out, r)
		}
	}
	return out
}

// Rules are the settings of Route that are not triggers.
type Rules struct {
	// Warmup: waiting jobs are routed but counted for no exclusive trigger
	// (shared triggers still count them).
	Warmup bool
	// HoldBehindOlder: a waiting job is counted for no trigger while an
	// older waiting job, queued less than this long before At, that the
	// job's trigger also accepts is routed to another trigger (rule 3
	// below); 0: never.
	HoldBehindOlder time.Duration
	// At is the moment of the jobs (the snapshot's fetch time).
	At time.Time
	// Blocked are the waiting jobs that wait for a parallel job of the
	// organization (package budget): counted by no trigger, shared ones
	// included. BlockedWhy says why, for Explain.
	Blocked    map[uint64]bool
	BlockedWhy string
}

// DefaultHoldBehindOlder is --hold-behind-older's default: long enough for
// a pod to start and its agent to take a job, short enough that a job does
// not wait long behind a template whose pods never come.
const DefaultHoldBehindOlder = 2 * time.Minute

// Route applies the rules:
//
//  1. A job an agent has (assigned or received) counts only for the
//     exclusive trigger whose pods that agent is (when its scaleOnInFlight
//     is on), and for no exclusive trigger when the agent is nobody's.
//  2. A waiting job counts for exactly one exclusive trigger: of those
//     whose filter accepts it and that have room (Trigger.Room, after its
//     own running jobs and the waiting jobs queued before this one), the
//     highest priority, then the lowest rank (least capable template),
//     then the smallest ID. Waiting jobs are taken oldest first.
//  3. Azure DevOps gives a free agent the oldest job it can run, so the
//     pods of a trigger take the oldest waiting jobs it accepts. A waiting
//     job therefore counts only while every older waiting job its trigger
//     accepts is routed to that trigger too: otherwise it is held
//     (HeldBehindOlder) until that older job has an agent, or has waited
//     Rules.HoldBehindOlder. A GPU job queued after a plain one waits the
//     few seconds a plain pod needs to take the plain job, instead of a GPU
//     pod taking it and the plain pod leaving idle.
//  4. Shared triggers count every job they accept, like KEDA's built-in
//     scaler (running ones only with scaleOnInFlight).
//  5. A waiting job in Rules.Blocked (it waits for one of the
//     organization's parallel jobs) counts for no trigger at all.
//
// With Rules.Warmup, waiting jobs are routed but counted for no exclusive
// trigger (shared triggers still count them).
//
// The result depends on the set of triggers, not on their order.
func Route(jobs []queue.Job, triggers []Trigger, rules Rules) *Plan {
	ordered := append([]Trigger(nil), triggers...)
	sort.SliceStable(ordered, func(i, j int) bool { return less(&ordered[i], &ordered[j]) })
	p := &Plan{Assignments: make([]Assignment, len(jobs)), Triggers: ordered, counts: make(map[string]int, len(ordered))}
	// Running jobs first: they use their trigger's room before any waiting
	// job does. Then waiting jobs, oldest first.
	var waiting []int
	for i := range jobs {
		if jobs[i].Waiting() {
			waiting = append(waiting, i)
			continue
		}
		p.Assignments[i] = Assignment{Job: &jobs[i]}
		routeRunning(&p.Assignments[i], ordered, p.counts)
	}
	sort.SliceStable(waiting, func(a, b int) bool { return jobs[waiting[a]].Older(&jobs[waiting[b]]) })
	// behind[t]: the oldest waiting job trigger t accepts that went to
	// another trigger (rule 3).
	behind := make(map[string]uint64)
	p.blockedWhy = rules.BlockedWhy
	for _, i := range waiting {
		r := &p.Assignments[i]
		*r = Assignment{Job: &jobs[i], Waiting: true}
		if rules.Blocked[jobs[i].ID] {
			// Waiting for a parallel job, unless no trigger could run it
			// anyway: that is the reason a person must act on.
			r.Reason = Unroutable
			if anyAccepts(ordered, r.Job) {
				r.Reason = WaitingForParallelJob
			}
			continue
		}
		routeWaiting(r, ordered, rules.Warmup, behind, p.counts)
		if r.Owner == "" || rules.HoldBehindOlder <= 0 || rules.At.Sub(jobs[i].QueuedAt) >= rules.HoldBehindOlder {
			continue
		}
		for k := range ordered {
			t := &ordered[k]
			if _, held := behind[t.ID]; !held && !t.Shared && t.ID != r.Owner && t.accepts(r.Job) {
				behind[t.ID] = r.Job.ID
			}
		}
	}
	for i := range jobs {
		j := &jobs[i]
		r := p.Assignments[i]
		for k := range ordered {
			t := &ordered[k]
			if t.Shared && (r.Waiting || t.InFlight) && t.accepts(j) && r.Reason != WaitingForParallelJob {
				r.Shared = append(r.Shared, t.ID)
				p.counts[t.ID]++
			}
		}
		if (r.Reason == Unroutable || r.Reason == NoRoom) && len(r.Shared) > 0 {
			r.Reason = RoutedWaiting // a shared trigger will start a pod for it
		}
		p.Assignments[i] = r
	}
	return p
}

func routeWaiting(r *Assignment, ordered []Trigger, warmup bool, behind map[string]uint64, counts map[string]int) {
	r.Reason = Unroutable
	// The first acceptor with room whose pods start, and a stalled one the
	// order puts before it.
	var healthy, stalled *Trigger
	for k := range ordered {
		t := &ordered[k]
		if t.Shared || !t.accepts(r.Job) {
			continue
		}
		if t.full(counts) {
			r.Reason = NoRoom
			continue
		}
		if t.Stalled != "" {
			if stalled == nil {
				stalled = t
			}
			continue
		}
		healthy = t
		break
	}
	chosen, reason := healthy, RoutedWaiting
	switch {
	case healthy != nil && stalled != nil:
		reason, r.Skipped = AroundStall, stalled.ID
	case healthy == nil && stalled != nil:
		chosen, reason = stalled, OnStalled // never leave a job uncounted for a stall
	case healthy == nil:
		return // Unroutable, or NoRoom
	}
	r.Owner = chosen.ID
	if warmup {
		r.Reason = HeldWaiting
		return
	}
	if older, held := behind[chosen.ID]; held {
		r.Reason, r.Behind, r.Skipped = HeldBehindOlder, older, ""
		return
	}
	r.Reason = reason
	counts[chosen.ID]++
}

func routeRunning(r *Assignment, ordered []Trigger, counts map[string]int) {
	r.Reason = RunningStatic
	if r.Job.Agent == "" {
		return // received but no agent named: nobody's pod can be told apart
	}
	for k := range ordered {
		t := &ordered[k]
		if t.Shared || t.OwnsAgent == nil || !t.OwnsAgent(r.Job.Agent) {
			continue
		}
		r.Owner = t.ID
		if !t.InFlight {
			r.Reason = RunningNotCounted
			return
		}
		r.Reason = RunningOwn
		counts[t.ID]++
		return
	}
}

// less is the routing order: highest priority, then lowest rank, then ID.
func less(a, b *Trigger) bool {
	if a.Priority != b.Priority {
		return a.Priority > b.Priority
	}
	if a.Rank != b.Rank {
		return a.Rank < b.Rank
	}
	return a.ID < b.ID
}

// unmet lists the job's demands that no exclusive trigger of the plan
// accepts even as a job's only demand: what a template would need to offer.
func (p *Plan) unmet(j *queue.Job) []string {
	var out []string
	for _, raw := range j.RawDemands {
		var alone queue.Job
		alone.AddDemand(raw)
		met := false
		for i := range p.Triggers {
			if t := &p.Triggers[i]; !t.Shared && t.accepts(&alone) {
				met = true
				break
			}
		}
		if !met {
			out = append(out, raw)
		}
	}
	return out
}

func stallOf(ts []Trigger, id string) string {
	for i := range ts {
		if ts[i].ID == id {
			return ts[i].Stalled
		}
	}
	return ""
}

// Explain says in words why a job is counted as it is, naming triggers by
// namespace/name.
func (p *Plan) Explain(r Assignment) string {
	name := func(id string) string {
		for i := range p.Triggers {
			if p.Triggers[i].ID == id {
				return p.Triggers[i].Label()
			}
		}
		return id
	}
	var s string
	switch r.Reason {
	case RoutedWaiting:
		if r.Owner == "" {
			s = "waiting; counted only by shared triggers"
		} else {
			s = "waiting; counted by " + name(r.Owner) + ", the first trigger that accepts it (priority, then least capable template, then name)"
		}
	case HeldWaiting:
		s = "waiting; would be counted by " + name(r.Owner) + ", held while the scaler learns the pool's triggers (--routing-warmup)"
	case HeldBehindOlder:
		s = fmt.Sprintf("waiting; would be counted by %s, held until job %d, queued before it, has an agent (--hold-behind-older): %s's agents can run that job too, "+
			"and Azure DevOps gives a free agent the oldest job it can run", name(r.Owner), r.Behind, name(r.Owner))
	case Unroutable:
		s = fmt.Sprintf("waiting; none of the pool's %d trigger(s) accepts its demands %q", len(p.Triggers), r.Job.RawDemands)
		if missing := p.unmet(r.Job); len(missing) > 0 {
			s += fmt.Sprintf(": no trigger accepts %q even alone", missing)
		} else if len(r.Job.RawDemands) > 1 {
			s += ": each is met by some trigger, but no trigger meets them all"
		}
	case NoRoom:
		s = "waiting; every trigger that accepts it already counts as many jobs as its ScaledJob's maxReplicaCount allows"
	case AroundStall:
		s = "waiting; counted by " + name(r.Owner) + " because the pods of " + name(r.Skipped) + ", which the order prefers, cannot start: " +
			stallOf(p.Triggers, r.Skipped)
	case OnStalled:
		s = "waiting; counted by " + name(r.Owner) + ", the only trigger with room that accepts it, whose pods cannot start: " +
			stallOf(p.Triggers, r.Owner)
	case WaitingForParallelJob:
		s = "waiting for a parallel job of the organization: " + p.blockedWhy + "; Azure DevOps gives it no agent before one is free, so no pod is started for it"
	case RunningOwn:
		s = "running on agent " + r.Job.Agent + ", a pod of " + name(r.Owner)
	case RunningNotCounted:
		s = "running on agent " + r.Job.Agent + ", a pod of " + name(r.Owner) + " (scaleOnInFlight is off)"
	case RunningStatic:
		s = "running on agent " + r.Job.Agent + ", which is no known trigger's pod"
	}
	if len(r.Shared) > 0 {
		var names []string
		for _, id := range r.Shared {
			names = append(names, name(id))
		}
		s += "; also counted by shared trigger(s) " + strings.Join(names, ", ")
	}
	return s
}
