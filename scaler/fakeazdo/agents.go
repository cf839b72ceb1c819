package fakeazdo

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
)

// addAgentFromBody answers POST .../pools/{poolId}/agents, the call that
// registers an agent (config.sh, or the SDK's AddAgent): a name, a public
// key the agent will authenticate with, and the capabilities it reports.
// Like Azure DevOps it refuses a name the pool already has (409). The
// server's lock is held.
func (o *Org) addAgentFromBody(p *pool, r *http.Request) (int, []byte) {
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return errorBody(http.StatusBadRequest, "InvalidRequestException", err.Error())
	}
	var in taskagent.TaskAgent
	if err := json.Unmarshal(b, &in); err != nil {
		return errorBody(http.StatusBadRequest, "InvalidRequestException", "The request body is not a TaskAgent: "+err.Error())
	}
	if in.Name == nil || strings.TrimSpace(*in.Name) == "" {
		return errorBody(http.StatusBadRequest, "ArgumentException", "The agent name is required.")
	}
	if in.Authorization == nil || in.Authorization.PublicKey == nil || in.Authorization.PublicKey.Modulus == nil || in.Authorization.PublicKey.Exponent == nil {
		return errorBody(http.StatusBadRequest, "ArgumentException", "The agent's authorization must carry a public key.")
	}
	for _, a := range p.agents {
		if strings.EqualFold(*a.Name, *in.Name) {
			return errorBody(http.StatusConflict, "TaskAgentExistsException",
				fmt.Sprintf("Pool %d already contains an agent with name %s.", *p.info.Id, *in.Name))
		}
	}
	system, user := map[string]string{}, map[string]string{}
	if in.SystemCapabilities != nil {
		system = *in.SystemCapabilities
	}
	if in.UserCapabilities != nil {
		user = *in.UserCapabilities
	}
	if in.Version != nil && system["Agent.Version"] == "" {
		system["Agent.Version"] = *in.Version
	}
	a := o.addAgentLocked(p, Agent{Name: *in.Name}, system, user, in.Authorization)
	return marshal(http.StatusOK, *a)
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

// Agent returns a registered agent as the REST API shows it, with its
// capabilities.
func (o *Org) Agent(poolID int, name string) (taskagent.TaskAgent, bool) {
	o.server.mu.Lock()
	defer o.server.mu.Unlock()
	for _, a := range o.mustPool(poolID).agents {
		if strings.EqualFold(*a.Name, name) {
			return *a, true
		}
	}
	return taskagent.TaskAgent{}, false
}
