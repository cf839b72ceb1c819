package fakeazdo

import (
	"fmt"

	"github.com/google/uuid"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
)

// Org is one fake organization. Its methods change what the server reports.
type Org struct {
	server *Server
	Name   string

	pats        map[string]bool
	bearers     map[string]bool // Entra ID access tokens accepted
	bearerSeen  []string
	pools       map[int]*pool
	nextPool    int
	nextAgent   int
	nextRequest uint64
	rateLimit   *rateLimit
	rejected    int
	sessions    map[uuid.UUID]*session // open agent sessions
	agentTokens []string               // agents that signed in with their key
	packages    []taskagent.PackageMetadata
	// parallelJobs is the organization's private self-hosted parallel
	// jobs; 0: as many as asked for (resourceusage says Unlimited).
	parallelJobs int
	mostRunning  int
}

type pool struct {
	info     taskagent.TaskAgentPool
	requests []*taskagent.TaskAgentJobRequest // in queue order
	agents   []*taskagent.TaskAgent
	steps    map[uint64]Job // what a job runs (script, container), by request id
}

// AcceptBearerToken adds a Microsoft Entra ID access token the organization
// accepts (Authorization: Bearer), as Azure DevOps accepts a service
// principal's or a managed identity's token: a fake Entra ID's OnIssue.
func (o *Org) AcceptBearerToken(token string) {
	o.server.mu.Lock()
	defer o.server.mu.Unlock()
	o.bearers[token] = true
}

// BearerTokensSeen lists the bearer tokens of the organization's requests,
// accepted or not, in order.
func (o *Org) BearerTokensSeen() []string {
	o.server.mu.Lock()
	defer o.server.mu.Unlock()
	return append([]string(nil), o.bearerSeen...)
}

// SetPATs replaces the PATs the organization accepts (PAT rotation).
func (o *Org) SetPATs(pats ...string) {
	o.server.mu.Lock()
	defer o.server.mu.Unlock()
	o.pats = map[string]bool{}
	for _, p := range pats {
		o.pats[p] = true
	}
}

// AddPool creates an agent pool and returns its id.
func (o *Org) AddPool(name string) int {
	o.server.mu.Lock()
	defer o.server.mu.Unlock()
	id := o.nextPool
	o.nextPool++
	poolType := taskagent.TaskAgentPoolTypeValues.Automation
	created := nowTime()
	o.pools[id] = &pool{info: taskagent.TaskAgentPool{
		Id: &id, Name: ptr(name), IsHosted: ptr(false), IsLegacy: ptr(false), PoolType: &poolType,
		Size: ptr(0), AutoProvision: ptr(false), AutoUpdate: ptr(true), AutoSize: ptr(true),
		CreatedOn: &created, Scope: ptr(uuid.New()),
	}}
	return id
}

func (o *Org) mustPool(id int) *pool {
	p, ok := o.pools[id]
	if !ok {
		panic(fmt.Sprintf("fakeazdo: organization %s has no pool %d", o.Name, id))
	}
	return p
}
