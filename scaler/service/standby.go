package service

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/queue"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/routing"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/scaledjobs"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/standby"
)

// Demand keeps the demand history of every trigger with standby auto, fed
// by the routing plans (it is a routing.Observer): each job counts once,
// for the trigger it is routed to or whose agent runs it, in the
// five-minute bucket it was queued in.
type Demand struct {
	now func() time.Time

	mu       sync.Mutex
	hist     map[string]*standby.History   // trigger id -> its history
	born     map[string]time.Time          // trigger id -> when its live recording began
	rebuilt  map[string]bool               // trigger id -> its history was rebuilt from Azure DevOps
	recorded map[queue.Key]map[uint64]bool // per pool: jobs added while Azure DevOps still lists them
	ready    map[queue.Key]map[uint64]bool // per pool: jobs seen running, judged once
	owners   scaledjobs.Owners             // the pods agents are named after (--read-cluster)
	observer StandbyObserver
	state    map[string]*StandbyState // trigger id -> its standby as last seen
}

// StandbyState is a trigger's warm standby as last seen, for the status
// page: the agents it keeps now and why, its idle pods at the latest
// question, and the jobs that found one of its agents ready.
type StandbyState struct {
	Wanted int
	Why    string
	Ready  int
	Used   int
}

// Standby returns a trigger's standby state; false when it keeps none and
// none of its jobs found an agent ready.
func (d *Demand) Standby(trigger string) (StandbyState, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s, ok := d.state[trigger]
	if !ok {
		return StandbyState{}, false
	}
	return *s, true
}

// stateLocked returns a trigger's standby state, making it; d.mu held.
func (d *Demand) stateLocked(trigger string) *StandbyState {
	s, ok := d.state[trigger]
	if !ok {
		s = &StandbyState{}
		d.state[trigger] = s
	}
	return s
}

// StandbyObserver receives what standby measures (the metrics package),
// per ScaledJob.
type StandbyObserver interface {
	// ObserveStandbyWanted: the standby agents its trigger keeps now.
	ObserveStandbyWanted(namespace, name string, n int)
	// ObserveStandbyReady: its idle pods at a pod's latest question.
	ObserveStandbyReady(namespace, name string, n int)
	// ObserveStandbyUsed: a job started on one of its pods that was
	// created before the job was queued: an agent was ready for it.
	ObserveStandbyUsed(namespace, name string)
}

type nopStandbyObserver struct{}

func (nopStandbyObserver) ObserveStandbyWanted(string, string, int) {}
func (nopStandbyObserver) ObserveStandbyReady(string, string, int)  {}
func (nopStandbyObserver) ObserveStandbyUsed(string, string)        {}

// NewDemand makes a recorder; now is its clock (nil: time.Now).
func NewDemand(now func() time.Time) *Demand {
	if now == nil {
		now = time.Now
	}
	return &Demand{now: now, hist: map[string]*standby.History{}, born: map[string]time.Time{}, rebuilt: map[string]bool{},
		recorded: map[queue.Key]map[uint64]bool{}, ready: map[queue.Key]map[uint64]bool{}, observer: nopStandbyObserver{},
		state: map[string]*StandbyState{}}
}

// History returns a trigger's history, starting one on first use: its
// demand is known from then on, and earlier once RebuildDemand has read
// the pool's finished jobs.
func (d *Demand) History(trigger string) *standby.History {
	d.mu.Lock()
	defer d.mu.Unlock()
	h, ok := d.hist[trigger]
	if !ok {
		now := d.now()
		h = standby.NewHistory(now)
		d.hist[trigger], d.born[trigger] = h, now
	}
	return h
}

// Recorded reports whether a job of the pool is already in a history.
func (d *Demand) Recorded(k queue.Key, id uint64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.recorded[k][id]
}

// setOwners tells the recorder whose pod each agent is, and where to
// report; from the cluster's pods (--read-cluster).
func (d *Demand) setOwners(o scaledjobs.Owners, obs StandbyObserver) {
	d.mu.Lock()
	d.owners = o
	if obs != nil {
		d.observer = obs
	}
	d.mu.Unlock()
}

// ObservePlan adds the plan's jobs not added before to the history of the
// trigger each belongs to, and counts the running jobs whose pod was
// there before the job was queued (standby used). A job stays marked
// while the pool lists it, so the memory is that of the pool's unfinished
// jobs.
func (d *Demand) ObservePlan(k queue.Key, p *routing.Plan) {
	d.mu.Lock()
	defer d.mu.Unlock()
	before, judged := d.recorded[k], d.ready[k]
	now := make(map[uint64]bool, len(before))
	nowJudged := make(map[uint64]bool, len(judged))
	for _, a := range p.Assignments {
		id := a.Job.ID
		if a.Job.Agent != "" && a.Owner != "" {
			if !judged[id] {
				if pod, ok := d.owners.Pod(a.Job.Agent); ok && !pod.Created.IsZero() && pod.Created.Before(a.Job.QueuedAt) {
					d.observer.ObserveStandbyUsed(pod.Namespace, pod.ScaledJob)
					d.stateLocked(pod.Namespace+"/"+pod.ScaledJob).Used++
				}
			}
			nowJudged[id] = true
		}
		if before[id] {
			now[id] = true
			continue
		}
		if h, ok := d.hist[a.Owner]; ok && a.Owner != "" {
			h.Add(a.Job.QueuedAt)
			now[id] = true
		}
	}
	d.recorded[k], d.ready[k] = now, nowJudged
}

// standbyCount is the idle agents a trigger keeps ready now, as a count
// KEDA turns into that many pods (times the target), and why.
func (s *Service) standbyCount(t *target) (int64, string) {
	st := t.spec.Standby
	if !st.Enabled() {
		return 0, ""
	}
	var h *standby.History
	if st.Auto && s.opts.Demand != nil {
		h = s.opts.Demand.History(t.triggerID)
	}
	n, why := standby.Want(st, h, s.opts.now())
	if s.opts.Standby != nil {
		s.opts.Standby.ObserveStandbyWanted(t.namespace, t.name, n)
	}
	if d := s.opts.Demand; d != nil {
		d.mu.Lock()
		state := d.stateLocked(t.triggerID)
		state.Wanted, state.Why = n, why
		d.mu.Unlock()
	}
	return int64(n) * t.spec.Target, why
}

// StandbyPod says whether a pod of a ScaledJob stays as a standby agent
// after its idle timeout: the ScaledJob's trigger wants standby agents
// and the pod is among the oldest idle pods that many (standby.Keep).
// pods are the ScaledJob's pods that are not gone. Only known ScaledJobs
// (Options.Verify) are answered; a failure to read the pool's jobs says
// leave, as the idle timeout always did.
func (s *Service) StandbyPod(ctx context.Context, scaledJob, pod string, pods []standby.Pod) (stay bool, why string) {
	s.mu.Lock()
	t, ok := s.targets[scaledJob]
	s.mu.Unlock()
	if !ok {
		return false, "no ScaledJob " + scaledJob + " with a trigger of this scaler is known"
	}
	want, _ := s.standbyCount(t)
	if want == 0 {
		return false, "its trigger keeps no standby agent now"
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	snap, err := t.poller.Snapshot(ctx)
	if err != nil {
		return false, "the pool's jobs are unknown: " + err.Error()
	}
	busy := map[string]bool{}
	for i := range snap.Jobs {
		if a := snap.Jobs[i].Agent; a != "" {
			busy[strings.ToLower(a)] = true
		}
	}
	for i := range pods {
		pods[i].Busy = pods[i].Busy || busy[strings.ToLower(pods[i].Name)]
	}
	idle := 0
	for _, p := range pods {
		if !p.Busy {
			idle++
		}
	}
	if s.opts.Standby != nil {
		s.opts.Standby.ObserveStandbyReady(t.namespace, t.name, idle)
	}
	if d := s.opts.Demand; d != nil {
		d.mu.Lock()
		d.stateLocked(t.triggerID).Ready = idle
		d.mu.Unlock()
	}
	// The answer says no more than whether the pod stays and how many stay:
	// the endpoint cannot tell who asks, so it does not show the trigger's
	// settings (its schedule, its percentile) to a pod of another team.
	n := int(want / t.spec.Target)
	if standby.Keep(pods, n)[pod] {
		return true, fmt.Sprintf("one of the %d standby agents its ScaledJob keeps now", n)
	}
	return false, fmt.Sprintf("its ScaledJob keeps %d standby agents now, older idle pods among them", n)
}

// retain forgets the histories and standby states of triggers that are
// gone (SyncTriggers knows them all), so memory follows the ScaledJobs.
func (d *Demand) retain(ids map[string]bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for id := range d.hist {
		if !ids[id] {
			delete(d.hist, id)
			delete(d.born, id)
			delete(d.rebuilt, id)
		}
	}
	for id := range d.state {
		if !ids[id] {
			delete(d.state, id)
		}
	}
}

// HistoryRequests is how many finished job requests of a pool are read to
// rebuild the standby history: once per pool and auto trigger per process
// (about 1 KiB each in Azure DevOps' answer).
const HistoryRequests = 5000

// pendingRebuild lists the auto triggers whose history was not rebuilt.
func (d *Demand) pendingRebuild() map[string]time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]time.Time{}
	for id, born := range d.born {
		if !d.rebuilt[id] {
			out[id] = born
		}
	}
	return out
}

// RebuildDemand fills the history of every auto trigger not rebuilt yet
// from its pool's finished job requests, as Azure DevOps keeps them: each
// finished job counts for the trigger routing would give it alone (the
// least capable template that can run it), in the bucket it was queued in,
// if it finished before the trigger's live recording began. The history is
// then known from the oldest job read, or for every past week the forecast
// reads when Azure DevOps returned fewer than HistoryRequests. A pool whose
// read fails is tried again at the next call; it returns the first error.
func (s *Service) RebuildDemand(ctx context.Context) error {
	d := s.opts.Demand
	if d == nil {
		return nil
	}
	pending := d.pendingRebuild()
	if len(pending) == 0 {
		return nil
	}
	var first error
	for _, k := range s.registry.InUse() {
		triggers := s.opts.Router.Table(k).Triggers()
		mine := map[string]time.Time{}
		for _, t := range triggers {
			if born, ok := pending[t.ID]; ok {
				mine[t.ID] = born
			}
		}
		if len(mine) == 0 {
			continue
		}
		jobs, err := s.registry.FinishedJobs(ctx, k, HistoryRequests)
		if err != nil {
			if first == nil {
				first = fmt.Errorf("reading the finished jobs of pool %d of %s for the standby history: %w", k.ID, k.Org, err)
			}
			continue
		}
		now := d.now()
		since := now.Add(-time.Duration(standby.PastWeeks+1) * 7 * 24 * time.Hour)
		if len(jobs) >= HistoryRequests {
			since = now
			for _, j := range jobs {
				if j.QueuedAt.Before(since) {
					since = j.QueuedAt
				}
			}
		}
		for i := range jobs {
			j := jobs[i]
			if d.Recorded(k, j.ID) {
				continue
			}
			j.Agent, j.AssignedAt, j.Received = "", time.Time{}, false // as it waited
			plan := routing.Route([]queue.Job{j}, triggers, routing.Rules{At: j.QueuedAt})
			if len(plan.Assignments) == 0 {
				continue
			}
			owner := plan.Assignments[0].Owner
			if born, ok := mine[owner]; ok && jobs[i].FinishedAt.Before(born) {
				d.History(owner).Add(j.QueuedAt)
			}
		}
		d.mu.Lock()
		for id := range mine {
			if h := d.hist[id]; h != nil && since.Before(h.Since()) {
				h.SetSince(since)
			}
			d.rebuilt[id] = true
		}
		d.mu.Unlock()
	}
	return first
}
