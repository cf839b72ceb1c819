package fakeazdo

import (
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/demands"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
)

// Dispatch does what Azure DevOps does when agents are free: each waiting
// job, oldest first, goes to the first online, enabled, idle agent of the
// pool (in registration order) whose capabilities satisfy its demands, if
// a parallel job of the organization is free for it. It
// returns the assignments made (request id to agent id). Agents do not
// refuse jobs: a job a plain template could run goes to a GPU agent if
// that one is free first.
func (o *Org) Dispatch(poolID int) map[uint64]int {
	o.server.mu.Lock()
	defer o.server.mu.Unlock()
	return o.dispatchLocked(o.mustPool(poolID))
}

func (o *Org) dispatchLocked(p *pool) map[uint64]int {
	out := map[uint64]int{}
	for _, r := range p.requests {
		if r.Result != nil || r.ReservedAgent != nil {
			continue
		}
		if !o.parallelJobFreeLocked(r) {
			continue // it waits for a parallel job (parallel.go)
		}
		for _, a := range p.agents {
			if !idleOnline(a) || !satisfies(a, r) {
				continue
			}
			now := nowTime()
			r.AssignTime, r.ReceiveTime = &now, &now
			r.ReservedAgent = reference(a)
			a.AssignedRequest = r
			out[*r.RequestId] = *a.Id
			o.noteRunningLocked()
			break
		}
	}
	return out
}

func idleOnline(a *taskagent.TaskAgent) bool {
	return a.AssignedRequest == nil && a.Status != nil && *a.Status == taskagent.TaskAgentStatusValues.Online &&
		(a.Enabled == nil || *a.Enabled)
}

// satisfies applies Azure Pipelines' demand rules to an agent's
// capabilities; a demand that does not parse matches no agent.
func satisfies(a *taskagent.TaskAgent, r *taskagent.TaskAgentJobRequest) bool {
	caps := demands.FromMap(deref(a.SystemCapabilities), deref(a.UserCapabilities))
	for _, s := range demandStrings(r) {
		d, err := demands.Parse(s)
		if err != nil || !caps.Satisfies(d) {
			return false
		}
	}
	return true
}

// deref is *p, or the zero value for nil.
func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// AssignedJob returns the request an agent runs (0, false: none).
func (o *Org) AssignedJob(poolID, agentID int) (uint64, bool) {
	o.server.mu.Lock()
	defer o.server.mu.Unlock()
	a := o.mustPool(poolID).findAgent(agentID)
	if a == nil || a.AssignedRequest == nil {
		return 0, false
	}
	return *a.AssignedRequest.RequestId, true
}
