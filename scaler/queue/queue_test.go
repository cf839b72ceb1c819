package queue

import (
	"testing"
	"time"
)

func TestJobDemandsAndState(t *testing.T) {
	var j Job
	j.AddDemand("Agent.OS -equals Linux")
	j.AddDemand("docker")
	if j.Unparsable || len(j.Demands) != 2 || len(j.RawDemands) != 2 {
		t.Fatalf("two good demands: %+v", j)
	}
	j.AddDemand("java -gtVersion") // an operator without a value does not parse
	if !j.Unparsable || len(j.RawDemands) != 3 || len(j.Demands) != 2 {
		t.Fatalf("a bad demand must mark the job unparsable and keep its text: %+v", j)
	}
	if !j.Waiting() {
		t.Fatal("a job with no agent that nobody received waits")
	}
	if (&Job{Agent: "a"}).Waiting() || (&Job{Received: true}).Waiting() {
		t.Fatal("an assigned or received job does not wait")
	}
}

func TestKeyIdentifiesAPool(t *testing.T) {
	a := Pool{Key: Key{Org: "contoso", ID: 7}, Name: "linux"}
	b := Pool{Key: Key{Org: "contoso", ID: 7}, Name: "Linux"} // renamed pool: same key
	if a.Key != b.Key || a.Key.String() != "contoso/7" {
		t.Fatalf("keys %v and %v", a.Key, b.Key)
	}
	if (Key{Org: "fabrikam", ID: 7}) == a.Key {
		t.Fatal("the same id in another organization is another pool")
	}
}

// Queue order: queue time first, then request id for jobs queued together.
func TestOlder(t *testing.T) {
	at := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	a, b, c := &Job{ID: 9, QueuedAt: at}, &Job{ID: 3, QueuedAt: at.Add(time.Second)}, &Job{ID: 10, QueuedAt: at}
	if !a.Older(b) || b.Older(a) || !a.Older(c) || c.Older(a) || a.Older(a) {
		t.Fatal("Older: want queue time, then request id, strictly")
	}
}
