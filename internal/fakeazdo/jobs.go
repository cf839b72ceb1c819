package fakeazdo

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
)

// Job describes a job request to queue.
type Job struct {
	Demands []string // as Azure Pipelines writes them: "docker", "Agent.OS -equals Linux"
	Name    string   // job name; default "Job"
	// Pipeline is the run's pipeline (the request's definition); default
	// pipeline-N.
	Pipeline string
	Plan     string // plan type; default "Build"
	Script   string // what the job's one step runs (bash), for agents that run it
	// Container is the image of the job's container (YAML `container:`):
	// the job message then names it as the job container, and an agent runs
	// the job's steps in it.
	Container string
	// Public: the job is a public project's (parallelism tag "Public"),
	// which does not use the organization's private parallel jobs.
	Public bool
}

// QueueJob adds an unassigned job request to a pool and returns its id.
func (o *Org) QueueJob(poolID int, job Job) uint64 {
	o.server.mu.Lock()
	defer o.server.mu.Unlock()
	p := o.mustPool(poolID)
	id := o.nextRequest
	o.nextRequest++
	if job.Name == "" {
		job.Name = "Job"
	}
	if job.Plan == "" {
		job.Plan = "Build"
	}
	if job.Pipeline == "" {
		job.Pipeline = fmt.Sprintf("pipeline-%d", id%97)
	}
	if job.Script != "" || job.Container != "" {
		if p.steps == nil {
			p.steps = map[uint64]Job{}
		}
		p.steps[id] = job
	}
	ds := *demandsOf(job.Demands)
	now := nowTime()
	definitionID := int(id % 97)
	p.requests = append(p.requests, &taskagent.TaskAgentJobRequest{
		RequestId: &id, QueueTime: &now, PoolId: ptr(poolID), JobName: &job.Name, PlanType: &job.Plan,
		Demands: &ds, JobId: ptr(uuid.New()), PlanId: ptr(uuid.New()), HostId: ptr(uuid.New()),
		ScopeId: ptr(uuid.New()), ServiceOwner: ptr(uuid.MustParse("00025394-6065-48ca-87d9-7f5672854ef7")),
		OrchestrationId: ptr(uuid.NewString() + ".job.__default"), Priority: ptr(1),
		Definition: &taskagent.TaskOrchestrationOwner{Id: &definitionID, Name: &job.Pipeline},
		Owner: &taskagent.TaskOrchestrationOwner{Id: ptr(int(id)), Name: ptr(fmt.Sprintf("20261203.%d", id)),
			Links: map[string]any{"web": map[string]any{"href": fmt.Sprintf("%s/%s/project/_build/results?buildId=%d", o.server.url, o.Name, id)}}},
		Data: &map[string]string{"ParallelismTag": tagOf(job.Public), "IsScheduledKey": "False"},
	})
	return id
}

// AssignJob gives a queued job to an agent: Azure DevOps sets assignTime and
// reservedAgent, and the agent's assignedRequest.
func (o *Org) AssignJob(requestID uint64, agentID int) error {
	o.server.mu.Lock()
	defer o.server.mu.Unlock()
	r, p := o.findRequest(requestID)
	if r == nil {
		return fmt.Errorf("no request %d", requestID)
	}
	a := p.findAgent(agentID)
	if a == nil {
		return fmt.Errorf("no agent %d in pool %d", agentID, *p.info.Id)
	}
	now := nowTime()
	r.AssignTime = &now
	r.ReservedAgent = reference(a)
	a.AssignedRequest = r
	return nil
}

// ReceiveJob marks an assigned job as received by its agent (in flight).
func (o *Org) ReceiveJob(requestID uint64) error {
	o.server.mu.Lock()
	defer o.server.mu.Unlock()
	r, _ := o.findRequest(requestID)
	if r == nil {
		return fmt.Errorf("no request %d", requestID)
	}
	now := nowTime()
	if r.AssignTime == nil {
		r.AssignTime = &now
	}
	r.ReceiveTime = &now
	return nil
}

// FinishJob sets a job's result ("succeeded", "failed", "canceled", ...).
func (o *Org) FinishJob(requestID uint64, result string) error {
	o.server.mu.Lock()
	defer o.server.mu.Unlock()
	r, p := o.findRequest(requestID)
	if r == nil {
		return fmt.Errorf("no request %d", requestID)
	}
	o.finishLocked(p, r, taskagent.TaskResult(result))
	return nil
}

// UnfinishedJobs lists the ids of a pool's requests that have no result.
func (o *Org) UnfinishedJobs(poolID int) []uint64 {
	o.server.mu.Lock()
	defer o.server.mu.Unlock()
	var ids []uint64
	for _, r := range o.mustPool(poolID).requests {
		if r.Result == nil {
			ids = append(ids, *r.RequestId)
		}
	}
	return ids
}

// JobDemands returns a request's demands.
func (o *Org) JobDemands(requestID uint64) []string {
	o.server.mu.Lock()
	defer o.server.mu.Unlock()
	r, _ := o.findRequest(requestID)
	if r == nil {
		return nil
	}
	return demandStrings(r)
}

func (o *Org) findRequest(id uint64) (*taskagent.TaskAgentJobRequest, *pool) {
	for _, p := range o.pools {
		for _, r := range p.requests {
			if *r.RequestId == id {
				return r, p
			}
		}
	}
	return nil, nil
}

func demandStrings(r *taskagent.TaskAgentJobRequest) []string {
	if r.Demands == nil {
		return nil
	}
	out := make([]string, 0, len(*r.Demands))
	for _, d := range *r.Demands {
		if s, ok := d.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// matchedAgents is what Azure DevOps computes for a request: the enabled
// agents of the pool whose capabilities satisfy every demand.
func (p *pool) matchedAgents(r *taskagent.TaskAgentJobRequest) []taskagent.TaskAgentReference {
	var out []taskagent.TaskAgentReference
	for _, a := range p.agents {
		if (a.Enabled == nil || *a.Enabled) && satisfies(a, r) {
			out = append(out, *reference(a))
		}
	}
	return out
}

// jobRequests answers the list call: newest first; completedRequestCount=N
// keeps every unfinished request and the N most recent finished ones; $top=N
// keeps the newest N requests whatever their state and, as Azure DevOps does
// (KEDA issue #4387), leaves matchedAgents out.
func (p *pool) jobRequests(q queryValues) []taskagent.TaskAgentJobRequest {
	completed := -1
	if v := q.Get("completedrequestcount"); v != "" {
		completed, _ = strconv.Atoi(v)
	}
	top := -1
	if v := q.Get("$top"); v != "" {
		top, _ = strconv.Atoi(v)
	}
	agentID, _ := strconv.Atoi(q.Get("agentid"))
	out := []taskagent.TaskAgentJobRequest{}
	for i := len(p.requests) - 1; i >= 0; i-- {
		r := p.requests[i]
		if agentID != 0 && (r.ReservedAgent == nil || *r.ReservedAgent.Id != agentID) {
			continue
		}
		if r.Result != nil && completed >= 0 {
			if completed == 0 {
				continue
			}
			completed--
		}
		if top >= 0 && len(out) >= top {
			break
		}
		copied := *r
		if top < 0 {
			matched := p.matchedAgents(r)
			copied.MatchedAgents = &matched
			copied.MatchesAllAgentsInPool = ptr(len(matched) == len(p.agents) && len(matched) > 0)
		}
		out = append(out, copied)
	}
	return out
}

// JobRequestsBody is the body the server would answer for a pool's
// unfinished job requests (completedRequestCount=0), for benchmarks.
func JobRequestsBody(o *Org, poolID int) ([]byte, error) {
	o.server.mu.Lock()
	defer o.server.mu.Unlock()
	p, ok := o.pools[poolID]
	if !ok {
		return nil, fmt.Errorf("no pool %d", poolID)
	}
	_, body := collection(p.jobRequests(queryValues{"completedrequestcount": "0"}))
	return body, nil
}

// ErrNoAgentSatisfies is what Azure DevOps answers a run whose job no
// agent of the pool, online or offline, can run.
type ErrNoAgentSatisfies struct {
	Pool    string
	Demands []string
}

func (e *ErrNoAgentSatisfies) Error() string {
	return fmt.Sprintf("No agent found in pool %s which satisfies the specified demands: %s", e.Pool, strings.Join(e.Demands, ", "))
}

// Submit queues a job as a pipeline run does: Azure DevOps fails the job
// at once when no agent of the pool, online or offline, satisfies its
// demands; otherwise it is queued. (QueueJob queues whatever it is given,
// for tests of pools whose agents do not matter.)
func (o *Org) Submit(poolID int, job Job) (uint64, error) {
	o.server.mu.Lock()
	p := o.mustPool(poolID)
	probe := &taskagent.TaskAgentJobRequest{Demands: demandsOf(job.Demands)}
	ok := false
	for _, a := range p.agents {
		if (a.Enabled == nil || *a.Enabled) && satisfies(a, probe) {
			ok = true
			break
		}
	}
	name := *p.info.Name
	o.server.mu.Unlock()
	if !ok {
		o.server.mu.Lock()
		o.rejected++
		o.server.mu.Unlock()
		return 0, &ErrNoAgentSatisfies{Pool: name, Demands: job.Demands}
	}
	return o.QueueJob(poolID, job), nil
}

// Rejected counts the jobs Submit refused.
func (o *Org) Rejected() int {
	o.server.mu.Lock()
	defer o.server.mu.Unlock()
	return o.rejected
}

func demandsOf(ds []string) *[]interface{} {
	out := make([]interface{}, len(ds))
	for i, d := range ds {
		out[i] = d
	}
	return &out
}

// JobAgent returns the name of the agent a request is assigned to.
func (o *Org) JobAgent(requestID uint64) (string, bool) {
	o.server.mu.Lock()
	defer o.server.mu.Unlock()
	r, _ := o.findRequest(requestID)
	if r == nil || r.ReservedAgent == nil || r.ReservedAgent.Name == nil {
		return "", false
	}
	return *r.ReservedAgent.Name, true
}

// JobWait is how long a request waited for its agent: assignTime less
// queueTime.
func (o *Org) JobWait(requestID uint64) (time.Duration, bool) {
	o.server.mu.Lock()
	defer o.server.mu.Unlock()
	r, _ := o.findRequest(requestID)
	if r == nil || r.AssignTime == nil || r.QueueTime == nil {
		return 0, false
	}
	return r.AssignTime.Time.Sub(r.QueueTime.Time), true
}

// JobResult is a finished job's result (succeeded, failed, canceled...).
func (o *Org) JobResult(requestID uint64) (string, bool) {
	o.server.mu.Lock()
	defer o.server.mu.Unlock()
	r, p := o.findRequest(requestID)
	if r == nil {
		return "", false
	}
	o.expireLocked(p)
	if r.Result == nil {
		return "", false
	}
	return string(*r.Result), true
}

// AddFinishedJob adds a job request that was queued and finished in the
// past ("succeeded"), as Azure DevOps keeps the pool's history, and
// returns its id. Add history before the jobs that follow it: the list
// answers newest first by order of addition.
func (o *Org) AddFinishedJob(poolID int, job Job, queued, finished time.Time) uint64 {
	id := o.QueueJob(poolID, job)
	o.server.mu.Lock()
	defer o.server.mu.Unlock()
	r, _ := o.findRequest(id)
	result := taskagent.TaskResultValues.Succeeded
	q, f := azuredevops.Time{Time: queued.UTC()}, azuredevops.Time{Time: finished.UTC()}
	r.QueueTime, r.AssignTime, r.FinishTime, r.Result = &q, &q, &f, &result
	return id
}
