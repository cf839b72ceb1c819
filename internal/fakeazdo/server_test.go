package fakeazdo

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// do sends a raw request as a client would, with Basic auth and the SDK's
// redirect header unless told otherwise.
func do(t *testing.T, method, url, pat string, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if pat != "" {
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(":"+pat)))
	}
	req.Header.Set("X-TFS-FedAuthRedirect", "Suppress")
	for k, v := range header {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

type list struct {
	Count int               `json:"count"`
	Value []json.RawMessage `json:"value"`
}

func decodeList(t *testing.T, b []byte) list {
	t.Helper()
	var l list
	if err := json.Unmarshal(b, &l); err != nil {
		t.Fatalf("%v in %s", err, b)
	}
	if l.Count != len(l.Value) {
		t.Fatalf("count %d but %d values", l.Count, len(l.Value))
	}
	return l
}

func TestRESTShapes(t *testing.T) {
	s := New()
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	org := s.AddOrg("Contoso", "pat")
	pool := org.AddPool("Linux")
	org.AddAgent(pool, Agent{Name: "tpl", Capabilities: map[string]string{"Agent.OS": "Linux"}})
	var ids []uint64
	for i := 0; i < 5; i++ {
		ids = append(ids, org.QueueJob(pool, Job{Demands: []string{"Agent.OS -equals Linux"}}))
	}
	_ = org.FinishJob(ids[3], "succeeded")
	_ = org.FinishJob(ids[4], "failed")
	base := strings.ToLower(s.OrgURL("Contoso")) // the SDK lower-cases it

	resp, body := do(t, http.MethodOptions, base+"/_apis", "pat", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"routeTemplate":"_apis/{area}/pools/{poolId}/{resource}/{requestId}"`) {
		t.Fatalf("OPTIONS _apis = %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, http.MethodGet, base+"/_apis/ResourceAreas", "pat", map[string]string{"Accept": "application/json;api-version=5.1-preview.1"})
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"id":"a85b8835-c1a1-4aac-ae97-1c3d0ba72dbd"`) {
		t.Fatalf("ResourceAreas = %d %s", resp.StatusCode, body)
	}

	// Authentication: 401 for the SDK, Azure DevOps' 203 sign-in page otherwise.
	resp, _ = do(t, http.MethodGet, base+"/_apis/distributedtask/pools", "wrong", nil)
	if resp.StatusCode != 401 {
		t.Errorf("wrong PAT = %d, want 401", resp.StatusCode)
	}
	resp, body = do(t, http.MethodGet, base+"/_apis/distributedtask/pools", "wrong", map[string]string{"X-TFS-FedAuthRedirect": ""})
	if resp.StatusCode != 203 || !strings.Contains(string(body), "Sign In") {
		t.Errorf("wrong PAT without the redirect header = %d", resp.StatusCode)
	}

	// Pools: filter by name ignoring case; 404 with the error shape.
	_, body = do(t, http.MethodGet, base+"/_apis/distributedtask/pools?poolName=LINUX", "pat", nil)
	if l := decodeList(t, body); l.Count != 1 || !strings.Contains(string(l.Value[0]), `"name":"Linux"`) {
		t.Errorf("pools?poolName = %s", body)
	}
	resp, body = do(t, http.MethodGet, base+"/_apis/distributedtask/pools/42", "pat", nil)
	var wrapped map[string]any
	_ = json.Unmarshal(body, &wrapped)
	if resp.StatusCode != 404 || wrapped["typeKey"] != "TaskAgentPoolNotFoundException" || wrapped["message"] == nil {
		t.Errorf("missing pool = %d %s", resp.StatusCode, body)
	}

	// api-version negotiation.
	resp, _ = do(t, http.MethodGet, base+"/_apis/distributedtask/pools/1/jobrequests", "pat", map[string]string{"Accept": "application/json;api-version=7.1"})
	if resp.StatusCode != 400 {
		t.Errorf("jobrequests at released 7.1 without -preview = %d, want 400", resp.StatusCode)
	}
	resp, _ = do(t, http.MethodGet, base+"/_apis/distributedtask/pools/1/jobrequests?api-version=9.0", "pat", nil)
	if resp.StatusCode != 400 {
		t.Errorf("api-version above the maximum = %d, want 400", resp.StatusCode)
	}

	// Job requests: all, unfinished only, $top (newest first, no matchedAgents).
	_, body = do(t, http.MethodGet, base+"/_apis/distributedtask/pools/1/jobrequests", "pat", nil)
	if l := decodeList(t, body); l.Count != 5 {
		t.Errorf("all requests: %d", l.Count)
	}
	_, body = do(t, http.MethodGet, base+"/_apis/distributedtask/pools/1/jobrequests?completedRequestCount=0", "pat",
		map[string]string{"Accept": "application/json;api-version=7.1-preview.1"})
	l := decodeList(t, body)
	if l.Count != 3 || strings.Contains(string(body), `"result"`) || !strings.Contains(string(l.Value[0]), `"matchedAgents":[{`) {
		t.Errorf("completedRequestCount=0: %s", body)
	}
	_, body = do(t, http.MethodGet, base+"/_apis/distributedtask/pools/1/jobrequests?completedRequestCount=1", "pat", nil)
	if l := decodeList(t, body); l.Count != 4 {
		t.Errorf("completedRequestCount=1: %d requests, want 3 unfinished + 1 finished", l.Count)
	}
	_, body = do(t, http.MethodGet, base+"/_apis/distributedtask/pools/1/jobrequests?$top=2", "pat", nil)
	l = decodeList(t, body)
	if l.Count != 2 || strings.Contains(string(body), "matchedAgents") || !strings.Contains(string(l.Value[0]), `"result":"failed"`) {
		t.Errorf("$top=2 must give the two newest (finished) without matchedAgents: %s", body)
	}

	// Agents: capabilities and assigned requests only when asked for.
	_ = org.AssignJob(ids[0], 1)
	_, body = do(t, http.MethodGet, base+"/_apis/distributedtask/pools/1/agents", "pat", nil)
	if strings.Contains(string(body), "systemCapabilities") || strings.Contains(string(body), "assignedRequest") {
		t.Errorf("agents without include flags: %s", body)
	}
	_, body = do(t, http.MethodGet, base+"/_apis/distributedtask/pools/1/agents?includeCapabilities=true&includeAssignedRequest=true", "pat", nil)
	if !strings.Contains(string(body), `"Agent.Version":"4.264.2"`) || !strings.Contains(string(body), `"assignedRequest":{`) ||
		!strings.Contains(string(body), `"statusChangedOn":"0001-01-01T00:00:00Z"`) {
		t.Errorf("agents with include flags: %s", body)
	}
	resp, body = do(t, http.MethodDelete, base+"/_apis/distributedtask/pools/1/agents/1", "pat", nil)
	if resp.StatusCode != 400 || !strings.Contains(string(body), "TaskAgentJobStillRunningException") {
		t.Errorf("deleting a busy agent = %d %s", resp.StatusCode, body)
	}
	_ = org.FinishJob(ids[0], "succeeded")
	if resp, _ = do(t, http.MethodDelete, base+"/_apis/distributedtask/pools/1/agents/1", "pat", nil); resp.StatusCode != 204 {
		t.Errorf("delete = %d, want 204", resp.StatusCode)
	}
	if resp, _ = do(t, http.MethodDelete, base+"/_apis/distributedtask/pools/1/agents/1", "pat", nil); resp.StatusCode != 404 {
		t.Errorf("delete again = %d, want 404", resp.StatusCode)
	}
	if n := s.Calls("contoso", DeleteAgent); n != 3 {
		t.Errorf("delete calls counted = %d", n)
	}
}

func TestRateLimitBudget(t *testing.T) {
	s := New()
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.AddOrg("o", "pat").SetRateLimit(2, time.Minute)
	url := s.OrgURL("o") + "/_apis/distributedtask/pools"
	for want := 1; want >= 0; want-- {
		resp, _ := do(t, http.MethodGet, url, "pat", nil)
		if resp.StatusCode != 200 || resp.Header.Get("X-RateLimit-Remaining") != string(rune('0'+want)) || resp.Header.Get("X-RateLimit-Limit") != "2" {
			t.Fatalf("status %d remaining %q", resp.StatusCode, resp.Header.Get("X-RateLimit-Remaining"))
		}
	}
	resp, _ := do(t, http.MethodGet, url, "pat", nil)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || resp.Header.Get("X-RateLimit-Reset") == "" {
		t.Fatalf("over budget: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

// Dispatch gives each waiting job, oldest first, to the first idle online
// agent that can run it, and an agent with a job cannot be removed.
func TestDispatchLikeAzureDevOps(t *testing.T) {
	o := New().AddOrg("contoso", "pat")
	pool := o.AddPool("p")
	plain := o.QueueJob(pool, Job{Demands: []string{"Agent.OS -equals Linux"}})
	docker := o.QueueJob(pool, Job{Demands: []string{"Agent.OS -equals Linux", "docker"}})
	offline := o.AddAgent(pool, Agent{Name: "offline", Capabilities: map[string]string{"Agent.OS": "Linux", "docker": ""}})
	gpu := o.AddAgent(pool, Agent{Name: "gpu-1", Online: true, Capabilities: map[string]string{"Agent.OS": "Linux", "docker": "", "cuda": "12.4"}})
	if got := o.Dispatch(pool); len(got) != 1 || got[plain] != gpu {
		t.Fatalf("dispatch = %v: the oldest job goes to the first free agent that can run it, however capable", got)
	}
	linux := o.AddAgent(pool, Agent{Name: "linux-1", Online: true, Capabilities: map[string]string{"Agent.OS": "Linux"}})
	if got := o.Dispatch(pool); len(got) != 0 {
		t.Fatalf("dispatch = %v: the docker job must wait for an agent with docker", got)
	}
	if err := o.RemoveAgent(pool, gpu); err == nil {
		t.Fatal("an agent with a job must not be removable")
	}
	_ = o.FinishJob(plain, "succeeded")
	if got := o.Dispatch(pool); got[docker] != gpu {
		t.Fatalf("dispatch = %v: the freed agent takes the docker job", got)
	}
	if _, busy := o.AssignedJob(pool, linux); busy {
		t.Fatal("linux-1 cannot run the docker job")
	}
	if err := o.RemoveAgent(pool, offline); err != nil {
		t.Fatal(err)
	}
	if names := o.AgentNames(pool); strings.Join(names, ",") != "gpu-1,linux-1" {
		t.Fatalf("agents = %v", names)
	}
}
