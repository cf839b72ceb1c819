package fakeazdo

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
)

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
	if ep == AgentToken {
		// The client assertion is the credential.
		status, body := org.issueAgentToken(r)
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(status)
		_, _ = w.Write(body)
		return
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
	case method == http.MethodPost && len(p) == 2 && p[0] == "oauth2" && p[1] == "token":
		return AgentToken, 0, 0, true
	case method == http.MethodGet && len(p) == 3 && p[0] == "distributedtask" && p[1] == "packages":
		return AgentPackages, 0, 0, p[2] == "agent"
	case method == http.MethodGet && len(p) == 2 && p[0] == "distributedtask" && p[1] == "resourceusage":
		return ResourceUsage, 0, 0, true
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
	case method == http.MethodPost && len(p) == 4 && p[3] == "sessions":
		return CreateSession, id, 0, true
	case method == http.MethodDelete && len(p) == 5 && p[3] == "sessions":
		return DeleteSession, id, 0, true // the session id is a GUID: sessionID reads it
	case method == http.MethodGet && len(p) == 4 && p[3] == "messages":
		return Messages, id, 0, true
	case method == http.MethodDelete && len(p) == 5 && p[3] == "messages":
		msg, msgOK := atoi(p[4])
		return DeleteMessage, id, msg, msgOK
	case method == http.MethodPatch && len(p) == 5 && p[3] == "jobrequests":
		req, reqOK := atoi(p[4])
		return UpdateRequest, id, req, reqOK
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

	if ep == Messages {
		return s.nextMessage(o, poolID, r) // a long poll: it takes the lock itself
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if ep == AgentPackages {
		return o.agentPackages(q)
	}
	if ep == ResourceUsage {
		return o.resourceUsage(q)
	}
	if ep == Pools {
		var out []taskagent.TaskAgentPool
		for _, id := range o.poolIDsLocked() {
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
	o.expireLocked(p)
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
	case CreateSession:
		return o.createSession(p, r)
	case DeleteSession:
		return o.deleteSession(p, path.Base(r.URL.Path))
	case DeleteMessage:
		return o.deleteMessage(p, itemID, r)
	case UpdateRequest:
		return o.updateRequest(p, itemID, r)
	}
	return errorBody(http.StatusNotFound, "NotFoundException", "not found")
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
