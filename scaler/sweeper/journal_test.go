package sweeper

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/queue"
)

// The journal holds each pool's last sweep: every agent's decision and
// reason, and why a sweep deleted nothing.
func TestJournalKeepsTheLastSweep(t *testing.T) {
	f := newFixture(t)
	pool := f.org.AddPool("p")
	f.org.AddAgent(pool, fakeazdo.Agent{Name: "agents-1", StatusChangedOn: time.Now().Add(-time.Hour)})
	f.org.AddAgent(pool, fakeazdo.Agent{Name: "agents-2", Online: true})
	j := NewJournal()
	sweep := func(dryRun bool) PoolSweep {
		s := f.sweeper([]queue.Pool{{Key: queue.Key{Org: "contoso", ID: pool}, Name: "p"}}, rules, dryRun, nil)
		s.o.Journal = j
		s.SweepOnce(context.Background())
		last := j.LastSweeps()
		if len(last) != 1 || last[0].Pool.Name != "p" || last[0].Pool.ID != pool {
			t.Fatalf("journal %+v: want one sweep of pool p", last)
		}
		return last[0]
	}
	actions := func(s PoolSweep) map[string]string {
		out := map[string]string{}
		for _, e := range s.Entries {
			out[e.Agent] = e.Action + ": " + e.Reason
		}
		return out
	}
	got := actions(sweep(true))
	if !strings.HasPrefix(got["agents-1"], ActionWouldDelete) || !strings.HasPrefix(got["agents-2"], ActionKept+": online") {
		t.Fatalf("dry run: %v", got)
	}
	f.fake.InjectFault(fakeazdo.Fault{Endpoint: fakeazdo.Agents, Body: `{"count":1,"value":[{"id":`})
	if s := sweep(false); !strings.Contains(s.Error, "nothing was deleted") || len(s.Entries) != 0 {
		t.Fatalf("a failed listing: %+v", s)
	}
	f.fake.ClearFaults()
	if got := actions(sweep(false)); !strings.HasPrefix(got["agents-1"], ActionDeleted) {
		t.Fatalf("for real: %v (the journal holds the latest sweep only)", got)
	}
}

func TestJournalIsBounded(t *testing.T) {
	var s PoolSweep
	for range MaxJournalEntries + 7 {
		s.add(JournalEntry{Agent: "a"})
	}
	if len(s.Entries) != MaxJournalEntries || s.Truncated != 7 {
		t.Fatalf("%d entries, %d truncated", len(s.Entries), s.Truncated)
	}
}
