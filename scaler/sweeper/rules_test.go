package sweeper

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

var rules = Rules{OfflineFor: 15 * time.Minute, FinishedFor: 30 * time.Second, Pattern: "agents-*", Protect: []string{"*-template", "keep-me"}, MaxDeletions: 50}

func decideOne(a Agent, parents ...string) Decision {
	p := map[string]bool{}
	for _, n := range parents {
		p[n] = true
	}
	return Decide([]Agent{a}, now, rules, p)[0]
}

func TestEveryRule(t *testing.T) {
	old := now.Add(-time.Hour)
	cases := []struct {
		name    string
		agent   Agent
		parents []string
		reason  string
	}{
		{"stale", Agent{Name: "agents-1", StatusChangedOn: old}, nil, ReasonStale},
		{"online", Agent{Name: "agents-1", Online: true, StatusChangedOn: old}, nil, KeptOnline},
		{"busy", Agent{Name: "agents-1", Assigned: true, StatusChangedOn: old}, nil, KeptBusy},
		{"recently offline", Agent{Name: "agents-1", StatusChangedOn: now.Add(-14 * time.Minute)}, nil, KeptRecent},
		{"exactly the threshold", Agent{Name: "agents-1", StatusChangedOn: now.Add(-15 * time.Minute)}, nil, ReasonStale},
		{"creation time when status never changed", Agent{Name: "agents-1", StatusChangedOn: time.Time{}.AddDate(0, 0, 0), CreatedOn: old}, nil, ReasonStale},
		{"young by creation time", Agent{Name: "agents-1", CreatedOn: now.Add(-time.Minute)}, nil, KeptRecent},
		{"no times at all", Agent{Name: "agents-1"}, nil, KeptUnknownAge},
		{"outside the pattern", Agent{Name: "laptop-of-bob", StatusChangedOn: old}, nil, KeptPattern},
		{"protected by glob", Agent{Name: "agents-template", StatusChangedOn: old}, nil, KeptProtected},
		{"parent", Agent{Name: "agents-7", StatusChangedOn: old}, []string{"agents-7"}, KeptParent},
		{"parent, other case", Agent{Name: "Agents-7", StatusChangedOn: old}, []string{"agents-7"}, KeptParent},
		{"placeholder", Agent{Name: "agents-1", Placeholder: true, StatusChangedOn: old}, nil, KeptPlaceholder},
		{"finished single-run agent", Agent{Name: "agents-1", Finished: true, StatusChangedOn: now.Add(-31 * time.Second)}, nil, ReasonFinished},
		{"finished, just offline", Agent{Name: "agents-1", Finished: true, StatusChangedOn: now.Add(-10 * time.Second)}, nil, KeptRecent},
		{"finished, no status change recorded", Agent{Name: "agents-1", Finished: true, CreatedOn: now.Add(-time.Minute)}, nil, KeptRecent},
		{"finished but outside the pattern", Agent{Name: "vm-1", Finished: true, StatusChangedOn: old}, nil, KeptPattern},
	}
	for _, c := range cases {
		d := decideOne(c.agent, c.parents...)
		if d.Reason != c.reason || d.Delete != (c.reason == ReasonStale || c.reason == ReasonFinished) {
			t.Errorf("%s: %+v, want %s", c.name, d, c.reason)
		}
	}
	// A status-change time, when present, wins over an older creation time.
	if d := decideOne(Agent{Name: "agents-1", CreatedOn: old, StatusChangedOn: now.Add(-time.Minute)}); d.Delete {
		t.Error("an agent that went offline a minute ago must be kept, however old it is")
	}
	// A bad glob matches nothing.
	if d := Decide([]Agent{{Name: "agents-1", StatusChangedOn: old}}, now, Rules{Pattern: "[", OfflineFor: time.Minute, MaxDeletions: 5}, nil)[0]; d.Delete {
		t.Error("a bad pattern must delete nothing")
	}
}

func TestDeletionCapKeepsOldestFirst(t *testing.T) {
	var agents []Agent
	for i := 0; i < 10; i++ {
		agents = append(agents, Agent{ID: i, Name: "agents-x", StatusChangedOn: now.Add(-time.Duration(20+i) * time.Minute)})
	}
	r := rules
	r.MaxDeletions = 3
	deleted := map[int]bool{}
	for _, d := range Decide(agents, now, r, nil) {
		if d.Delete {
			deleted[d.Agent.ID] = true
		} else if d.Reason != KeptDeletionLimit {
			t.Errorf("agent %d kept for %s", d.Agent.ID, d.Reason)
		}
	}
	if len(deleted) != 3 || !deleted[9] || !deleted[8] || !deleted[7] {
		t.Fatalf("deleted %v, want the three oldest (7, 8, 9)", deleted)
	}
	r.MaxDeletions = 0
	for _, d := range Decide(agents, now, r, nil) {
		if d.Delete {
			t.Fatal("MaxDeletions 0 must delete nothing")
		}
	}
}

// Exact (--read-cluster), over random agents: an agent is deleted only when
// it is offline, idle, not a placeholder, parent or protected, and its pod
// is gone; whatever its name's shape, an agent named after no pod (a static
// VM agent called like a pod, rebooted for patching) is never deleted.
func TestExactDeletesOnlyAgentsOfGonePods(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	exact := Rules{Exact: true, OfflineFor: time.Hour, FinishedFor: time.Hour, Pattern: "nothing-matches", Protect: []string{"keep-*"}, MaxDeletions: 1000}
	names := []string{"prod-agent-win10", "linux-agents-x7k2p-b4c6d", "keep-linux-q9w8e-r5t6y", "build-vm-1", "gpu-aaaaa-bbbbb"}
	deleted := 0
	for round := range 2000 {
		var agents []Agent
		for i := range 1 + r.IntN(8) {
			agents = append(agents, Agent{ID: i, Name: names[r.IntN(len(names))], Online: r.IntN(3) == 0, Assigned: r.IntN(4) == 0,
				Placeholder: r.IntN(8) == 0, Finished: r.IntN(2) == 0, Pod: PodState(r.IntN(4)),
				StatusChangedOn: now.Add(-time.Duration(r.IntN(120)) * time.Minute)})
		}
		parents := map[string]bool{}
		if r.IntN(3) == 0 {
			parents[names[r.IntN(len(names))]] = true
		}
		for _, d := range Decide(agents, now, exact, parents) {
			a := d.Agent
			may := !a.Online && !a.Assigned && !a.Placeholder && !parents[a.Name] && !strings.HasPrefix(a.Name, "keep-") && a.Pod == PodGone
			if d.Delete != may {
				t.Fatalf("round %d: %+v: delete=%v (%s), want %v", round, a, d.Delete, d.Reason, may)
			}
			if d.Delete {
				deleted++
			}
			onlyThePodDecides := !a.Online && !a.Assigned && !a.Placeholder && !parents[a.Name] && !strings.HasPrefix(a.Name, "keep-")
			if onlyThePodDecides && a.Pod == PodNone && d.Reason != KeptNotAPod {
				t.Fatalf("round %d: a static agent kept for %q, want %q", round, d.Reason, KeptNotAPod)
			}
		}
	}
	if deleted == 0 {
		t.Fatal("nothing was ever deleted: the generator does not exercise the rule")
	}
}
