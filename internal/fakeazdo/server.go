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
//   - DELETE _apis/distributedtask/pools/{poolId}/agents/{agentId};
//   - what a running agent calls: POST _apis/oauth2/token (its own key's
//     client assertion for a token), POST and DELETE pools/{poolId}/sessions,
//     GET pools/{poolId}/messages (a long poll that hands it a job) and
//     DELETE pools/{poolId}/messages/{messageId}, PATCH
//     pools/{poolId}/jobrequests/{requestId} (renew the lock, finish the job).
//
// Bodies are the SDK's own model types, so field names are the SDK's. Paths
// are matched ignoring case (the SDK lower-cases the organization URL), PATs
// are checked (401, or Azure DevOps' 203 sign-in page for clients that do
// not send X-TFS-FedAuthRedirect: Suppress), api-versions are negotiated
// like the service does, and an optional TSTU budget produces the
// X-RateLimit-* headers and 429 with Retry-After. Tests count calls and
// inject faults.
//
// One file per concern: server.go (lifecycle, call counts), faults.go
// (injected faults, the TSTU budget), http.go (routing, authentication,
// api-version negotiation, answers), locations.go (the discovery
// answers), pools.go (organizations and pools), jobs.go (job requests and
// pipeline runs), agents.go (agents and their registration),
// dispatch.go (what Azure DevOps does when an agent is free), sessions.go
// (a running agent's session, messages and job requests) and oauth.go (an
// agent's own sign-in).
package fakeazdo

import (
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
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
	// An agent's own calls (sessions.go, oauth.go).
	AgentToken    Endpoint = "agenttoken"
	CreateSession Endpoint = "createsession"
	DeleteSession Endpoint = "deletesession"
	Messages      Endpoint = "messages"
	DeleteMessage Endpoint = "deletemessage"
	UpdateRequest Endpoint = "updaterequest"
	// The agent packages Azure DevOps offers (packages.go).
	AgentPackages Endpoint = "agentpackages"
	// The organization's parallel jobs (parallel.go).
	ResourceUsage Endpoint = "resourceusage"
)

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
