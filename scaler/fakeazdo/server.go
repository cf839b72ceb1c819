// Package fakeazdo is a fake Azure DevOps organization server that speaks the
// real REST shapes, so that the real azure-devops-go-api client (and KEDA's
// built-in azure-pipelines scaler) run against it unchanged.
//
// It serves, under /{organization}:
//   - OPTIONS _apis: the API resource locations the SDK discovers routes from;
//   - GET _apis/ResourceAreas: the resource areas (distributedtask's location URL);
//   - GET _apis/distributedtask/pools[?poolName=&poolType=] and pools/{poolId};
//   - GET _apis/distributedtask/pools/{poolId}/jobrequests[?completedRequestCount=&$top=&agentId=];
//   - GET _apis/distributedtask/pools/{poolId}/agents[?agentName=&includeCapabilities=&includeAssignedRequest=&includeLastCompletedRequest=];
//   - POST _apis/distributedtask/pools/{poolId}/agents (registration, as config.sh does);
//   - DELETE _apis/distributedtask/pools/{poolId}/agents/{agentId}.
//
// Bodies are the SDK's own model types, so field names are the SDK's. Paths
// are matched ignoring case (the SDK lower-cases the organization URL), PATs
// are checked (401, or Azure DevOps' 203 sign-in page for clients that do
// not send X-TFS-FedAuthRedirect: Suppress), api-versions are negotiated
// like the service does, and an optional TSTU budget produces the
// X-RateLimit-* headers and 429 with Retry-After. Tests count calls and
// inject faults.
package fakeazdo

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
)

// Endpoint names one kind of call, for counting and fault injection.
type Endpoint string

// The endpoints the fake serves.
const (
	Any           Endpoint = ""
	Options       Endpoint = "options"
	ResourceAreas Endpoint = "resourceareas"
	Pools         Endpoint = "pools"
	Pool          Endpoint = "pool"
	JobRequests   Endpoint = "jobrequests"
	Agents        Endpoint = "agents"
	DeleteAgent   Endpoint = "deleteagent"
	AddAgent      Endpoint = "addagent"
)

// Well-known ids of Azure DevOps' REST resources.
var (
	distributedTaskArea = uuid.MustParse("a85b8835-c1a1-4aac-ae97-1c3d0ba72dbd")
	locationArea        = uuid.MustParse("00d9565f-ed9c-4a06-9a50-00e7896ccab4")
)

type location struct {
	id, area, resource, route, min, max, released string
	resourceVersion                               int
}

// locations are the routes the SDK discovers with OPTIONS _apis; ids,
// templates and versions are those of Azure DevOps Services.
var locations = []location{
	{"e81700f7-3be2-46de-8624-2eb35882fcaa", "Location", "ResourceAreas", "_apis/{resource}/{areaId}", "3.2", "7.2", "0.0", 1},
	{"a8c47e17-4d56-4a56-92bb-de7ea7dc65be", "distributedtask", "pools", "_apis/{area}/{resource}/{poolId}", "3.0", "7.2", "7.1", 1},
	{"e298ef32-5878-4cab-993c-043836571f42", "distributedtask", "agents", "_apis/{area}/pools/{poolId}/{resource}/{agentId}", "3.0", "7.2", "7.1", 1},
	{"fc825784-c92a-4299-9221-998a02d1b54f", "distributedtask", "jobrequests", "_apis/{area}/pools/{poolId}/{resource}/{requestId}", "3.0", "7.2", "0.0", 1},
}

// Server is a fake Azure DevOps with any number of organizations.
type Server struct {
	mu     sync.Mutex
	orgs   map[string]*Org // key: lower-cased name
	faults []*Fault
	calls  map[callKey]int
	bytes  map[callKey]int64
	url    string

	httpServer *http.Server
	listener   net.Listener
}

type callKey struct {
	org      string
	endpoint Endpoint
	pool     int
}

// New returns an empty server; Start it or use it as an http.Handler.
func New() *Server {
	return &Server{orgs: map[string]*Org{}, calls: map[callKey]int{}, bytes: map[callKey]int64{}}
}

// Start listens on a free loopback port and serves until Close.
func (s *Server) Start() error {
	return s.StartOn("127.0.0.1:0")
}

// StartOn listens on addr and serves until Close.
func (s *Server) StartOn(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.listener = l
	s.url = "http://" + l.Addr().String()
	s.httpServer = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	s.mu.Unlock()
	go func() { _ = s.httpServer.Serve(l) }()
	return nil
}

// URL is the server's base URL (no trailing slash).
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url
}

// OrgURL is the URL of an organization, as users write it.
func (s *Server) OrgURL(org string) string { return s.URL() + "/" + org }

// Close stops serving.
func (s *Server) Close() {
	s.mu.Lock()
	srv := s.httpServer
	s.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// AddOrg creates an organization that accepts the given PATs.
func (s *Server) AddOrg(name string, pats ...string) *Org {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := &Org{server: s, Name: name, pats: map[string]bool{}, bearers: map[string]bool{}, pools: map[int]*pool{}, nextPool: 1, nextAgent: 1, nextRequest: 1000}
	for _, p := range pats {
		o.pats[p] = true
	}
	s.orgs[strings.ToLower(name)] = o
	return o
}

// Calls counts the calls an organization received on an endpoint (Any: all).
func (s *Server) Calls(org string, ep Endpoint) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, v := range s.calls {
		if strings.EqualFold(k.org, org) && (ep == Any || k.endpoint == ep) {
			n += v
		}
	}
	return n
}

// PoolCalls counts the calls on an endpoint about one pool.
func (s *Server) PoolCalls(org string, ep Endpoint, poolID int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[callKey{strings.ToLower(org), ep, poolID}]
}

// BytesServed counts the response body bytes sent to an organization's
// callers on an endpoint (Any: all).
func (s *Server) BytesServed(org string, ep Endpoint) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for k, v := range s.bytes {
		if strings.EqualFold(k.org, org) && (ep == Any || k.endpoint == ep) {
			n += v
		}
	}
	return n
}

// ResetCalls forgets the call and byte counts.
func (s *Server) ResetCalls() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = map[callKey]int{}
	s.bytes = map[callKey]int64{}
}

// Fault changes the answers to matching calls.
type Fault struct {
	Org      string   // organization name; "" matches every organization
	Endpoint Endpoint // Any matches every endpoint
	Times    int      // how many calls it applies to; 0 means until ClearFaults

	Status         int           // answer with this status instead (0: answer normally)
	Body           string        // with Status, or alone: this raw body (malformed JSON, say); EchoAuthorization in it becomes the request's Authorization header
	ContentType    string        // of Body; default application/json
	RetryAfter     time.Duration // Retry-After header, whole seconds
	RateLimitDelay time.Duration // X-RateLimit-Delay header, seconds (fractions allowed)
	Delay          time.Duration // wait this long before answering (timeouts)
}

// EchoAuthorization in a Fault's Body is replaced with the request's
// Authorization header, as some proxies and servers do in error pages.
const EchoAuthorization = "{{authorization}}"

// InjectFault adds a fault; the first matching fault with calls left applies.
func (s *Server) InjectFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	copied := f
	s.faults = append(s.faults, &copied)
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

func (s *Server) takeFault(org string, ep Endpoint) *Fault {
	for i, f := range s.faults {
		if (f.Org == "" || strings.EqualFold(f.Org, org)) && (f.Endpoint == Any || f.Endpoint == ep) {
			copied := *f
			if f.Times > 0 {
				f.Times--
				if f.Times == 0 {
					s.faults = append(s.faults[:i:i], s.faults[i+1:]...)
				}
			}
			return &copied
		}
	}
	return nil
}

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
}

type pool struct {
	info     taskagent.TaskAgentPool
	requests []*taskagent.TaskAgentJobRequest // in queue order
	agents   []*taskagent.TaskAgent
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

// Job describes a job request to queue.
type Job struct {
	Demands []string // as Azure Pipelines writes them: "docker", "Agent.OS -equals Linux"
	Name    string   // job name; default "Job"
	Plan    string   // plan type; default "Build"
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
	ds := *demandsOf(job.Demands)
	now := nowTime()
	definitionID := int(id % 97)
	p.requests = append(p.requests, &taskagent.TaskAgentJobRequest{
		RequestId: &id, QueueTime: &now, PoolId: ptr(poolID), JobName: &job.Name, PlanType: &job.Plan,
		Demands: &ds, JobId: ptr(uuid.New()), PlanId: ptr(uuid.New()), HostId: ptr(uuid.New()),
		ScopeId: ptr(uuid.New()), ServiceOwner: ptr(uuid.MustParse("00025394-6065-48ca-87d9-7f5672854ef7")),
		OrchestrationId: ptr(uuid.NewString() + ".job.__default"), Priority: ptr(1),
		Definition: &taskagent.TaskOrchestrationOwner{Id: &definitionID, Name: ptr(fmt.Sprintf("pipeline-%d", definitionID))},
		Owner:      &taskagent.TaskOrchestrationOwner{Id: ptr(int(id)), Name: ptr(fmt.Sprintf("%d", id))},
		Data:       &map[string]string{"ParallelismTag": "Private", "IsScheduledKey": "false"},
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
	now := nowTime()
	res := taskagent.TaskResult(result)
	r.FinishTime = &now
	r.Result = &res
	for _, a := range p.agents {
		if a.AssignedRequest == r {
			a.AssignedRequest = nil
			a.LastCompletedRequest = r
		}
	}
	return nil
}

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
	status := taskagent.TaskAgentStatusValues.Offline
	if spec.Online {
		status = taskagent.TaskAgentStatusValues.Online
	}
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
		Id: &id, Name: ptr(spec.Name), Status: &status, Enabled: &enabled, Version: ptr(version),
		OsDescription: ptr("Linux 6.1.0 #1 SMP"), ProvisioningState: ptr("Provisioned"), AccessPoint: ptr("CodexAccessMapping"),
		CreatedOn: &azuredevops.Time{Time: created}, StatusChangedOn: &azuredevops.Time{Time: spec.StatusChangedOn},
		MaxParallelism: ptr(1), SystemCapabilities: &system, UserCapabilities: &user, Authorization: auth,
	}
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
	status := taskagent.TaskAgentStatusValues.Offline
	if online {
		status = taskagent.TaskAgentStatusValues.Online
	}
	a.Status = &status
	a.StatusChangedOn = &azuredevops.Time{Time: changedOn}
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

func (o *Org) mustPool(id int) *pool {
	p, ok := o.pools[id]
	if !ok {
		panic(fmt.Sprintf("fakeazdo: organization %s has no pool %d", o.Name, id))
	}
	return p
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

// nowTime is the current time as Azure DevOps writes it.
func nowTime() azuredevops.Time { return azuredevops.Time{Time: time.Now().UTC()} }

func ptr[T any](v T) *T { return &v }

// ServeHTTP routes a request the way Azure DevOps does.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	segments := strings.Split(strings.Trim(strings.ToLower(r.URL.Path), "/"), "/")
	if len(segments) < 2 || segments[1] != "_apis" {
		writeError(w, http.StatusNotFound, "NotFoundException", "The resource cannot be found.")
		return
	}
	s.mu.Lock()
	org, ok := s.orgs[segments[0]]
	s.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, "AccountNotFoundException", "The organization "+segments[0]+" was not found.")
		return
	}
	ep, poolID, itemID, routeOK := route(r.Method, segments[2:])
	if !routeOK {
		writeError(w, http.StatusNotFound, "NotFoundException", "API resource location was not found for "+r.Method+" "+r.URL.Path+".")
		return
	}

	s.mu.Lock()
	s.calls[callKey{strings.ToLower(org.Name), ep, poolID}]++
	fault := s.takeFault(org.Name, ep)
	s.mu.Unlock()

	if fault != nil && fault.Delay > 0 {
		select {
		case <-time.After(fault.Delay):
		case <-r.Context().Done():
			return
		}
	}
	if !s.authorized(org, r) {
		if r.Header.Get("X-TFS-FedAuthRedirect") != "Suppress" {
			// What Azure DevOps does for browsers and for clients that do not
			// ask otherwise: a 203 with the sign-in page.
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.WriteHeader(http.StatusNonAuthoritativeInfo)
			_, _ = w.Write([]byte("<html><head><title>Azure DevOps Services | Sign In</title></head><body></body></html>"))
			return
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="`+s.URL()+`/"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if blocked := s.applyRateLimit(org, w); blocked {
		return
	}
	if fault != nil {
		if fault.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(fault.RetryAfter.Round(time.Second)/time.Second)))
		}
		if fault.RateLimitDelay > 0 {
			w.Header().Set("X-RateLimit-Resource", "Core")
			w.Header().Set("X-RateLimit-Delay", strconv.FormatFloat(fault.RateLimitDelay.Seconds(), 'f', 3, 64))
		}
		if fault.Status != 0 || fault.Body != "" {
			ct := fault.ContentType
			if ct == "" {
				ct = "application/json; charset=utf-8"
			}
			w.Header().Set("Content-Type", ct)
			status := fault.Status
			if status == 0 {
				status = http.StatusOK
			}
			w.WriteHeader(status)
			_, _ = w.Write([]byte(strings.ReplaceAll(fault.Body, EchoAuthorization, r.Header.Get("Authorization"))))
			return
		}
	}
	if ep != Options {
		if msg, ok := checkAPIVersion(ep, r); !ok {
			writeError(w, http.StatusBadRequest, "VssVersionOutOfRangeException", msg)
			return
		}
	}

	status, body := s.answer(org, ep, poolID, itemID, r)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-TFS-Session", r.Header.Get("X-TFS-Session"))
	w.Header().Set("X-VSS-E2EID", uuid.NewString())
	if status == http.StatusNoContent {
		w.WriteHeader(status)
		return
	}
	w.WriteHeader(status)
	n, _ := w.Write(body)
	s.mu.Lock()
	s.bytes[callKey{strings.ToLower(org.Name), ep, poolID}] += int64(n)
	s.mu.Unlock()
}

// route maps the path after /{org}/_apis/ to an endpoint.
func route(method string, p []string) (ep Endpoint, poolID, itemID int, ok bool) {
	atoi := func(s string) (int, bool) {
		n, err := strconv.Atoi(s)
		return n, err == nil && n > 0
	}
	switch {
	case method == http.MethodOptions && len(p) == 0:
		return Options, 0, 0, true
	case method == http.MethodGet && len(p) == 1 && p[0] == "resourceareas":
		return ResourceAreas, 0, 0, true
	case len(p) < 2 || p[0] != "distributedtask" || p[1] != "pools":
		return "", 0, 0, false
	case method == http.MethodGet && len(p) == 2:
		return Pools, 0, 0, true
	}
	id, idOK := atoi(p[2])
	if !idOK {
		return "", 0, 0, false
	}
	switch {
	case method == http.MethodGet && len(p) == 3:
		return Pool, id, 0, true
	case method == http.MethodGet && len(p) == 4 && p[3] == "jobrequests":
		return JobRequests, id, 0, true
	case method == http.MethodGet && len(p) == 4 && p[3] == "agents":
		return Agents, id, 0, true
	case method == http.MethodPost && len(p) == 4 && p[3] == "agents":
		return AddAgent, id, 0, true
	case method == http.MethodDelete && len(p) == 5 && p[3] == "agents":
		agent, agentOK := atoi(p[4])
		return DeleteAgent, id, agent, agentOK
	}
	return "", 0, 0, false
}

func (s *Server) authorized(o *Org, r *http.Request) bool {
	scheme, encoded, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if ok && strings.EqualFold(scheme, "Bearer") {
		s.mu.Lock()
		defer s.mu.Unlock()
		o.bearerSeen = append(o.bearerSeen, encoded)
		return o.bearers[encoded]
	}
	if !ok || !strings.EqualFold(scheme, "Basic") {
		return false
	}
	raw, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		return false
	}
	_, pat, ok := strings.Cut(string(raw), ":")
	s.mu.Lock()
	defer s.mu.Unlock()
	return ok && o.pats[pat]
}

// checkAPIVersion negotiates like Azure DevOps: no api-version means the
// latest; a version above the resource's maximum is refused, and so is a
// version above the released one that does not say -preview.
func checkAPIVersion(ep Endpoint, r *http.Request) (string, bool) {
	requested := r.URL.Query().Get("api-version")
	for _, part := range strings.Split(r.Header.Get("Accept"), ";") {
		if k, v, ok := strings.Cut(strings.TrimSpace(part), "="); ok && k == "api-version" {
			requested = v
		}
	}
	if requested == "" {
		return "", true
	}
	loc := locationFor(ep)
	number, preview, _ := strings.Cut(requested, "-")
	req, err := strconv.ParseFloat(number, 64)
	if err != nil {
		return "The requested REST API version of " + requested + " is not valid.", false
	}
	max, _ := strconv.ParseFloat(loc.max, 64)
	released, _ := strconv.ParseFloat(loc.released, 64)
	if req > max {
		return fmt.Sprintf("The requested REST API version of %s is out of range for this server. The latest REST API version this server supports is %s.", requested, loc.max), false
	}
	if req > released && !strings.HasPrefix(preview, "preview") {
		return fmt.Sprintf("The requested REST API version of %s is in preview. Add -preview to the version to use it.", requested), false
	}
	return "", true
}

func locationFor(ep Endpoint) location {
	name := map[Endpoint]string{ResourceAreas: "ResourceAreas", Pools: "pools", Pool: "pools", Agents: "agents", DeleteAgent: "agents",
		AddAgent: "agents", JobRequests: "jobrequests"}[ep]
	for _, l := range locations {
		if l.resource == name {
			return l
		}
	}
	return locations[0]
}

func (s *Server) answer(o *Org, ep Endpoint, poolID, itemID int, r *http.Request) (int, []byte) {
	q := queryIgnoringCase(r)
	switch ep {
	case Options:
		return collection(locationList())
	case ResourceAreas:
		// Azure DevOps answers its own public URL; the fake answers the one
		// it was reached at, which is its own unless served elsewhere (TLS
		// behind a name, through a proxy).
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		base := strings.ToLower(scheme+"://"+r.Host+"/"+o.Name) + "/"
		return collection([]azuredevops.ResourceAreaInfo{
			{Id: &distributedTaskArea, Name: ptr("distributedtask"), LocationUrl: &base},
			{Id: &locationArea, Name: ptr("Location"), LocationUrl: &base},
		})
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if ep == Pools {
		var out []taskagent.TaskAgentPool
		ids := make([]int, 0, len(o.pools))
		for id := range o.pools {
			ids = append(ids, id)
		}
		sort.Ints(ids)
		for _, id := range ids {
			p := o.pools[id]
			if name := q.Get("poolname"); name != "" && !strings.EqualFold(name, *p.info.Name) {
				continue
			}
			if t := q.Get("pooltype"); t != "" && !strings.EqualFold(t, string(*p.info.PoolType)) {
				continue
			}
			out = append(out, p.info)
		}
		return collection(out)
	}
	p, ok := o.pools[poolID]
	if !ok {
		return errorBody(http.StatusNotFound, "TaskAgentPoolNotFoundException", fmt.Sprintf("Agent pool %d could not be found.", poolID))
	}
	switch ep {
	case Pool:
		return marshal(http.StatusOK, p.info)
	case JobRequests:
		return collection(p.jobRequests(q))
	case Agents:
		return collection(p.agentList(q))
	case AddAgent:
		return o.addAgentFromBody(p, r)
	case DeleteAgent:
		for i, a := range p.agents {
			if *a.Id != itemID {
				continue
			}
			if a.AssignedRequest != nil {
				return errorBody(http.StatusBadRequest, "TaskAgentJobStillRunningException",
					fmt.Sprintf("The agent %s is running job %d and cannot be deleted.", *a.Name, *a.AssignedRequest.RequestId))
			}
			p.agents = append(p.agents[:i], p.agents[i+1:]...)
			p.info.Size = ptr(len(p.agents))
			return http.StatusNoContent, nil
		}
		return errorBody(http.StatusNotFound, "TaskAgentNotFoundException", fmt.Sprintf("Agent %d was not found in pool %d.", itemID, poolID))
	}
	return errorBody(http.StatusNotFound, "NotFoundException", "not found")
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

func locationList() []azuredevops.ApiResourceLocation {
	out := make([]azuredevops.ApiResourceLocation, 0, len(locations))
	for _, l := range locations {
		id := uuid.MustParse(l.id)
		out = append(out, azuredevops.ApiResourceLocation{Id: &id, Area: ptr(l.area), ResourceName: ptr(l.resource),
			RouteTemplate: ptr(l.route), ResourceVersion: ptr(l.resourceVersion), MinVersion: ptr(l.min),
			MaxVersion: ptr(l.max), ReleasedVersion: ptr(l.released)})
	}
	return out
}

// queryValues looks query parameters up ignoring case, as Azure DevOps does.
type queryValues map[string]string

func (q queryValues) Get(k string) string { return q[k] }

func queryIgnoringCase(r *http.Request) queryValues {
	out := queryValues{}
	for k, v := range r.URL.Query() {
		if len(v) > 0 {
			out[strings.ToLower(k)] = v[0]
		}
	}
	return out
}

func collection[T any](items []T) (int, []byte) {
	if items == nil {
		items = []T{}
	}
	return marshal(http.StatusOK, struct {
		Count int `json:"count"`
		Value []T `json:"value"`
	}{len(items), items})
}

func marshal(status int, v any) (int, []byte) {
	b, err := json.Marshal(v)
	if err != nil {
		return errorBody(http.StatusInternalServerError, "SerializationException", err.Error())
	}
	return status, b
}

// errorBody is Azure DevOps' error shape (the SDK's WrappedError).
func errorBody(status int, typeKey, message string) (int, []byte) {
	b, _ := json.Marshal(map[string]any{
		"$id": "1", "innerException": nil, "message": message,
		"typeName": "Microsoft.TeamFoundation.DistributedTask.WebApi." + typeKey + ", Microsoft.TeamFoundation.DistributedTask.WebApi",
		"typeKey":  typeKey, "errorCode": 0, "eventId": 3000,
	})
	return status, b
}

func writeError(w http.ResponseWriter, status int, typeKey, message string) {
	_, body := errorBody(status, typeKey, message)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(body)
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
