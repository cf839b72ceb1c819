package fakeazdo

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
)

// agentVersion is the version fake agents report unless their capabilities
// say otherwise.
const agentVersion = "4.264.2"

// Agent describes an agent to register.
type Agent struct {
	Name            string
	Online          bool
	Enabled         *bool             // default true
	Capabilities    map[string]string // system and user capabilities together
	CreatedOn       time.Time         // default now
	StatusChangedOn time.Time         // zero: Azure DevOps' "0001-01-01T00:00:00" (never changed)
}

// AddAgent registers an agent in a pool and returns its id.
func (o *Org) AddAgent(poolID int, spec Agent) int {
	o.server.mu.Lock()
	defer o.server.mu.Unlock()
	// Every agent reports these system capabilities itself.
	caps := map[string]string{"Agent.Name": spec.Name, "Agent.Version": agentVersion}
	for k, v := range spec.Capabilities {
		caps[k] = v
	}
	return *o.addAgentLocked(o.mustPool(poolID), spec, caps, map[string]string{}, nil).Id
}

// addAgentLocked registers an agent; the server's lock is held.
func (o *Org) addAgentLocked(p *pool, spec Agent, system, user map[string]string, auth *taskagent.TaskAgentAuthorization) *taskagent.TaskAgent {
	id := o.nextAgent
	o.nextAgent++
	enabled := true
	if spec.Enabled != nil {
		enabled = *spec.Enabled
	}
	created := spec.CreatedOn
	if created.IsZero() {
		created = time.Now().UTC()
	}
	version := system["Agent.Version"]
	if version == "" {
		version = agentVersion
	}
	a := &taskagent.TaskAgent{
		Id: &id, Name: ptr(spec.Name), Enabled: &enabled, Version: ptr(version),
		OsDescription: ptr("Linux 6.1.0 #1 SMP"), ProvisioningState: ptr("Provisioned"), AccessPoint: ptr("CodexAccessMapping"),
		CreatedOn:      &azuredevops.Time{Time: created},
		MaxParallelism: ptr(1), SystemCapabilities: &system, UserCapabilities: &user, Authorization: auth,
	}
	setStatus(a, spec.Online, spec.StatusChangedOn)
	p.agents = append(p.agents, a)
	p.info.Size = ptr(len(p.agents))
	return a
}

// SetAgentStatus changes an agent's status and its status-change time.
func (o *Org) SetAgentStatus(poolID, agentID int, online bool, changedOn time.Time) {
	o.server.mu.Lock()
	defer o.server.mu.Unlock()
	a := o.mustPool(poolID).findAgent(agentID)
	if a == nil {
		panic(fmt.Sprintf("fakeazdo: no agent %d in pool %d", agentID, poolID))
	}
	setStatus(a, online, changedOn)
}

// AgentNames lists the names of a pool's registered agents, sorted.
func (o *Org) AgentNames(poolID int) []string {
	o.server.mu.Lock()
	defer o.server.mu.Unlock()
	var names []string
	for _, a := range o.mustPool(poolID).agents {
		names = append(names, *a.Name)
	}
	sort.Strings(names)
	return names
}

func (p *pool) findAgent(id int) *taskagent.TaskAgent {
	for _, a := range p.agents {
		if *a.Id == id {
			return a
		}
	}
	return nil
}

func reference(a *taskagent.TaskAgent) *taskagent.TaskAgentReference {
	return &taskagent.TaskAgentReference{Id: a.Id, Name: a.Name, Version: a.Version, Enabled: a.Enabled,
		Status: a.Status, ProvisioningState: a.ProvisioningState, OsDescription: a.OsDescription}
}

func (p *pool) agentList(q queryValues) []taskagent.TaskAgent {
	out := []taskagent.TaskAgent{}
	for _, a := range p.agents {
		if name := q.Get("agentname"); name != "" && !strings.EqualFold(name, *a.Name) {
			continue
		}
		copied := *a
		if q.Get("includecapabilities") != "true" {
			copied.SystemCapabilities, copied.UserCapabilities = nil, nil
		}
		if q.Get("includeassignedrequest") != "true" {
			copied.AssignedRequest = nil
		} else if a.AssignedRequest != nil {
			assigned := *a.AssignedRequest
			assigned.MatchedAgents = nil
			copied.AssignedRequest = &assigned
		}
		if q.Get("includelastcompletedrequest") != "true" {
			copied.LastCompletedRequest = nil
		}
		out = append(out, copied)
	}
	return out
}

// addAgentFromBody answers POST .../pools/{poolId}/agents, the call that
// registers an agent (config.sh, or the SDK's AddAgent): a name, a public
// key the agent will authenticate with, and the capabilities it reports.
// Like Azure DevOps it refuses a name the pool already has (409). The
// server's lock is held.
func (o *Org) addAgentFromBody(p *pool, r *http.Request) (int, []byte) {
	var in taskagent.TaskAgent
	if err := decodeBody(r, &in); err != nil {
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
	o.authorizeAgent(in.Authorization)
	a := o.addAgentLocked(p, Agent{Name: *in.Name}, system, user, in.Authorization)
	return marshal(http.StatusOK, *a)
}

// Agent returns a registered agent as the REST API shows it, with its
// capabilities.
func (o *Org) Agent(poolID int, name string) (taskagent.TaskAgent, bool) {
	o.server.mu.Lock()
	defer o.server.mu.Unlock()
	p := o.mustPool(poolID)
	o.expireLocked(p)
	for _, a := range p.agents {
		if strings.EqualFold(*a.Name, name) {
			return *a, true
		}
	}
	return taskagent.TaskAgent{}, false
}

// RemoveAgent deregisters an agent, as config.sh remove does; like Azure
// DevOps it refuses while the agent has a job.
func (o *Org) RemoveAgent(poolID, agentID int) error {
	o.server.mu.Lock()
	defer o.server.mu.Unlock()
	p := o.mustPool(poolID)
	for i, a := range p.agents {
		if *a.Id != agentID {
			continue
		}
		if a.AssignedRequest != nil {
			return fmt.Errorf("agent %s is running job %d", *a.Name, *a.AssignedRequest.RequestId)
		}
		p.agents = append(p.agents[:i], p.agents[i+1:]...)
		p.info.Size = ptr(len(p.agents))
		return nil
	}
	return fmt.Errorf("no agent %d in pool %d", agentID, poolID)
}
