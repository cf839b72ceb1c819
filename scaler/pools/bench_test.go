package pools

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/queue"
)

// jobRequestsBody is what the fake (the real shapes) answers for a pool of n
// unfinished requests with demands and matched agents.
func jobRequestsBody(tb testing.TB, n int) []byte {
	tb.Helper()
	s := fakeazdo.New()
	org := s.AddOrg("o", "pat")
	pool := org.AddPool("p")
	for a := 0; a < 3; a++ {
		org.AddAgent(pool, fakeazdo.Agent{Name: "agent-" + string(rune('a'+a)), Capabilities: map[string]string{"Agent.OS": "Linux", "docker": ""}})
	}
	for i := 0; i < n; i++ {
		org.QueueJob(pool, fakeazdo.Job{Demands: []string{"Agent.OS -equals Linux", "docker", "Agent.Version -gtVersion 3.220.0"}})
	}
	body, err := fakeazdo.JobRequestsBody(org, pool)
	if err != nil {
		tb.Fatal(err)
	}
	return body
}

// BenchmarkDecodeSnapshot1000: decode an answer of 1,000 job requests with
// the SDK's collection decoder, and reduce it to a snapshot.
func BenchmarkDecodeSnapshot1000(b *testing.B) {
	body := jobRequestsBody(b, 1000)
	client := azuredevops.Client{}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var reqs []taskagent.TaskAgentJobRequest
		if err := client.UnmarshalCollectionJson(body, &reqs); err != nil {
			b.Fatal(err)
		}
		if s := NewSnapshot(queue.Pool{Key: queue.Key{Org: "o", ID: 1}, Name: "p"}, reqs, time.Now()); len(s.Jobs) != 1000 {
			b.Fatalf("%d jobs", len(s.Jobs))
		}
	}
}

func TestSnapshotFromRealShapes(t *testing.T) {
	body := jobRequestsBody(t, 3)
	var reqs []taskagent.TaskAgentJobRequest
	if err := (&azuredevops.Client{}).UnmarshalCollectionJson(body, &reqs); err != nil {
		t.Fatal(err)
	}
	s := NewSnapshot(queue.Pool{Key: queue.Key{Org: "o", ID: 1}, Name: "p"}, reqs, time.Now())
	if len(s.Jobs) != 3 {
		t.Fatalf("jobs = %d", len(s.Jobs))
	}
	j := s.Jobs[0]
	if len(j.Demands) != 3 || j.Unparsable || len(j.MatchedAgents) != 3 || j.Received {
		t.Fatalf("job = %+v", j)
	}
	var raw struct {
		Count int              `json:"count"`
		Value []map[string]any `json:"value"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatal(err)
	}
	if raw.Count != 3 || len(raw.Value) != 3 {
		t.Fatalf("count %d, %d values", raw.Count, len(raw.Value))
	}
	for _, field := range []string{"requestId", "queueTime", "demands", "matchedAgents", "poolId", "planType", "jobId", "definition", "owner"} {
		if _, ok := raw.Value[0][field]; !ok {
			t.Errorf("the answer lacks %q", field)
		}
	}
	for _, field := range []string{"result", "finishTime", "receiveTime", "assignTime"} {
		if _, ok := raw.Value[0][field]; ok {
			t.Errorf("an unassigned request must not carry %q", field)
		}
	}
}

func TestSnapshotDropsFinishedAndOddDemands(t *testing.T) {
	id1, id2, id3 := uint64(1), uint64(2), uint64(3)
	res := taskagent.TaskResult("succeeded")
	demandsList := []interface{}{"docker", 42, "x -bogus y"}
	reqs := []taskagent.TaskAgentJobRequest{
		{RequestId: &id1, Result: &res},
		{RequestId: &id2, Demands: &demandsList, ReceiveTime: &azuredevops.Time{Time: time.Now()}},
		{RequestId: &id3, ReceiveTime: &azuredevops.Time{}}, // Azure DevOps' zero date: not received
	}
	s := NewSnapshot(queue.Pool{Key: queue.Key{Org: "o", ID: 1}, Name: "p"}, reqs, time.Now())
	if len(s.Jobs) != 2 || s.Jobs[0].ID != 2 || !s.Jobs[0].Unparsable || !s.Jobs[0].Received || s.Jobs[1].Received {
		t.Fatalf("jobs = %+v", s.Jobs)
	}
}
