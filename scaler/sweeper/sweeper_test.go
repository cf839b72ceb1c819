package sweeper

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo/fakeazdotest"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/azdo"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/placeholders"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/queue"
)

const pat = "sweeper-test-pat-xyz"

func quietLogger() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

type fixture struct {
	fake   *fakeazdo.Server
	org    *fakeazdo.Org
	client *azdo.Client
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	s := fakeazdotest.Start(t)
	org := s.AddOrg("contoso", pat)
	c, err := azdo.New(azdo.Options{Name: "contoso", URL: s.OrgURL("contoso"), PAT: azdo.StaticPAT(pat), Timeout: time.Second,
		BaseBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, QPS: 10000, Burst: 10000, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{fake: s, org: org, client: c}
}

func (f *fixture) sweeper(pools []queue.Pool, r Rules, dryRun bool, parents *Parents) *Sweeper {
	return New(Options{Rules: r, DryRun: dryRun, Sources: map[string]Source{"contoso": f.client},
		Pools: func(context.Context) []queue.Pool { return pools }, Parents: parents, Logger: quietLogger(),
		IsPlaceholder: placeholders.Recognize("keda")})
}

type countingObserver struct {
	mu                    sync.Mutex
	deleted, kept, errors map[string]int
}

func (c *countingObserver) AgentDeleted(_ queue.Pool, dry bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deleted[fmt.Sprint(dry)]++
}
func (c *countingObserver) AgentKept(_ queue.Pool, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.kept[reason]++
}
func (c *countingObserver) SweepError(_ queue.Pool, op string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.errors[op]++
}

func TestDryRunDeletesNothingButCounts(t *testing.T) {
	f := newFixture(t)
	pool := f.org.AddPool("p")
	for i := 0; i < 4; i++ {
		f.org.AddAgent(pool, fakeazdo.Agent{Name: fmt.Sprintf("agents-%d", i), StatusChangedOn: time.Now().Add(-time.Hour)})
	}
	obs := &countingObserver{deleted: map[string]int{}, kept: map[string]int{}, errors: map[string]int{}}
	s := f.sweeper([]queue.Pool{{Key: queue.Key{Org: "contoso", ID: pool}, Name: "p"}}, rules, true, nil)
	s.o.Observer = obs
	res := s.SweepOnce(context.Background())
	if res.Deleted != 4 || len(f.org.AgentNames(pool)) != 4 || f.fake.Calls("contoso", fakeazdo.DeleteAgent) != 0 {
		t.Fatalf("dry run: %+v, agents left %v, delete calls %d", res, f.org.AgentNames(pool), f.fake.Calls("contoso", fakeazdo.DeleteAgent))
	}
	if obs.deleted["true"] != 4 || obs.deleted["false"] != 0 {
		t.Fatalf("metrics: %v", obs.deleted)
	}
}

func TestListFailureDeletesNothing(t *testing.T) {
	f := newFixture(t)
	pool := f.org.AddPool("p")
	f.org.AddAgent(pool, fakeazdo.Agent{Name: "agents-1", StatusChangedOn: time.Now().Add(-time.Hour)})
	for _, fault := range []fakeazdo.Fault{
		{Endpoint: fakeazdo.Agents, Status: 500, Body: `{"message":"x"}`},
		{Endpoint: fakeazdo.Agents, Body: `{"count":1,"value":[{"id":`},
		{Endpoint: fakeazdo.Agents, Body: `{"count":1,"value":[{"id":1,"name":"agents-1","status":"weird"}]}`},
		{Endpoint: fakeazdo.Agents, Body: `{"count":1,"value":[{"name":"agents-1","status":"offline"}]}`},
		{Endpoint: fakeazdo.Agents, Delay: 3 * time.Second},
	} {
		f.fake.ClearFaults()
		f.fake.InjectFault(fault)
		res := f.sweeper([]queue.Pool{{Key: queue.Key{Org: "contoso", ID: pool}, Name: "p"}}, rules, false, nil).SweepOnce(context.Background())
		if res.Deleted != 0 || res.Errors == 0 || f.fake.Calls("contoso", fakeazdo.DeleteAgent) != 0 {
			t.Fatalf("fault %+v: %+v, delete calls %d", fault, res, f.fake.Calls("contoso", fakeazdo.DeleteAgent))
		}
	}
	f.fake.ClearFaults()
	if res := f.sweeper([]queue.Pool{{Key: queue.Key{Org: "contoso", ID: pool}, Name: "p"}}, rules, false, nil).SweepOnce(context.Background()); res.Deleted != 1 {
		t.Fatalf("after the faults: %+v", res)
	}
}

func TestFailedDeleteRetriedNextSweepOnly(t *testing.T) {
	f := newFixture(t)
	pool := f.org.AddPool("p")
	f.org.AddAgent(pool, fakeazdo.Agent{Name: "agents-1", StatusChangedOn: time.Now().Add(-time.Hour)})
	f.fake.InjectFault(fakeazdo.Fault{Endpoint: fakeazdo.DeleteAgent, Status: 503, Body: `{"message":"x"}`, Times: 1})
	s := f.sweeper([]queue.Pool{{Key: queue.Key{Org: "contoso", ID: pool}, Name: "p"}}, rules, false, nil)
	if res := s.SweepOnce(context.Background()); res.Errors != 1 || res.Deleted != 0 {
		t.Fatalf("first sweep: %+v", res)
	}
	if n := f.fake.Calls("contoso", fakeazdo.DeleteAgent); n != 1 {
		t.Fatalf("delete calls in one sweep = %d, want 1 (no tight retry)", n)
	}
	if res := s.SweepOnce(context.Background()); res.Deleted != 1 || len(f.org.AgentNames(pool)) != 0 {
		t.Fatalf("second sweep: %+v", res)
	}
}

func TestDeletionCapPerPoolPerSweep(t *testing.T) {
	f := newFixture(t)
	a, b := f.org.AddPool("a"), f.org.AddPool("b")
	for i := 0; i < 7; i++ {
		f.org.AddAgent(a, fakeazdo.Agent{Name: fmt.Sprintf("agents-a%d", i), StatusChangedOn: time.Now().Add(-time.Hour)})
		f.org.AddAgent(b, fakeazdo.Agent{Name: fmt.Sprintf("agents-b%d", i), StatusChangedOn: time.Now().Add(-time.Hour)})
	}
	r := rules
	r.MaxDeletions = 3
	s := f.sweeper([]queue.Pool{{Key: queue.Key{Org: "contoso", ID: a}, Name: "a"}, {Key: queue.Key{Org: "contoso", ID: b}, Name: "b"}}, r, false, nil)
	for sweep, left := range []int{4, 1, 0} {
		s.SweepOnce(context.Background())
		if got := len(f.org.AgentNames(a)); got != left || len(f.org.AgentNames(b)) != left {
			t.Fatalf("after sweep %d: %d and %d agents left, want %d each", sweep+1, got, len(f.org.AgentNames(b)), left)
		}
	}
}

// TestPropertyNeverAWrongAgent generates many pools of agents of every kind
// and checks, through two sweeps against the fake Azure DevOps, that no
// agent breaking a rule is deleted and that every agent breaking none is
// gone after two sweeps.
func TestPropertyNeverAWrongAgent(t *testing.T) {
	f := newFixture(t)
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	r := Rules{OfflineFor: 15 * time.Minute, FinishedFor: 30 * time.Second, Pattern: "ci-agent-*", Protect: []string{"*-template", "pinned-*"}, MaxDeletions: 6}
	parents := NewParents()
	type expectation struct {
		pool      int
		deletable bool
		why       string
	}
	expect := map[string]expectation{}
	var pools []queue.Pool
	for p := 0; p < 60; p++ {
		id := f.org.AddPool(fmt.Sprintf("pool-%d", p))
		pools = append(pools, queue.Pool{Key: queue.Key{Org: "contoso", ID: id}, Name: fmt.Sprintf("pool-%d", p)})
		eligible := 0
		for i := 0; i < rng.IntN(15); i++ {
			name := fmt.Sprintf("ci-agent-%d-%d", p, i)
			online := rng.IntN(4) == 0
			busy := rng.IntN(5) == 0
			age := time.Duration(rng.IntN(60)) * time.Minute
			if rng.IntN(3) == 0 {
				age = time.Duration(rng.IntN(120)) * time.Second // around FinishedFor
			}
			useCreation := rng.IntN(3) == 0
			placeholder, finished := false, false
			caps := map[string]string{}
			switch rng.IntN(10) {
			case 0:
				name = fmt.Sprintf("laptop-%d-%d", p, i) // outside the pattern
			case 1:
				name = fmt.Sprintf("ci-agent-%d-%d-template", p, i) // protected
			case 2:
				parents.Add("contoso", name) // a trigger's parent
			case 3:
				caps[placeholders.Marker], placeholder = "0123456789", true // a placeholder, by its marker
			case 4:
				name, placeholder = fmt.Sprintf("keda-placeholder-%d%d", p, i), true // by its name (outside the pattern too)
			case 5, 6:
				finished = !busy // a single-run agent that completed its job
			}
			offlineLongEnough := age >= r.OfflineFor || (finished && !useCreation && age >= r.FinishedFor)
			deletable := !online && !busy && !placeholder && offlineLongEnough && matches(r.Pattern, name) &&
				!matchesAny(r.Protect, name) && !parents.Names("contoso")[name]
			if deletable {
				eligible++
				if eligible > 2*r.MaxDeletions { // more than two sweeps can remove: make it young
					age, deletable = time.Minute, false
				}
			}
			spec := fakeazdo.Agent{Name: name, Online: online, Capabilities: caps}
			if useCreation {
				spec.CreatedOn = time.Now().Add(-age)
			} else {
				spec.CreatedOn = time.Now().Add(-100 * time.Hour)
				spec.StatusChangedOn = time.Now().Add(-age)
			}
			agentID := f.org.AddAgent(id, spec)
			if finished {
				job := f.org.QueueJob(id, fakeazdo.Job{})
				if err := f.org.AssignJob(job, agentID); err != nil {
					t.Fatal(err)
				}
				if err := f.org.FinishJob(job, "succeeded"); err != nil {
					t.Fatal(err)
				}
			}
			if busy {
				job := f.org.QueueJob(id, fakeazdo.Job{})
				if err := f.org.AssignJob(job, agentID); err != nil {
					t.Fatal(err)
				}
			}
			expect[name] = expectation{pool: id, deletable: deletable,
				why: fmt.Sprintf("online=%v busy=%v age=%v creation=%v placeholder=%v finished=%v", online, busy, age, useCreation, placeholder, finished)}
		}
	}
	s := f.sweeper(pools, r, false, parents)
	for sweep := 0; sweep < 2; sweep++ {
		s.SweepOnce(context.Background())
		present := map[string]bool{}
		for _, p := range pools {
			for _, n := range f.org.AgentNames(p.ID) {
				present[n] = true
			}
		}
		for name, e := range expect {
			if !e.deletable && !present[name] {
				t.Fatalf("sweep %d deleted %s, which breaks a rule (%s)", sweep+1, name, e.why)
			}
			if sweep == 1 && e.deletable && present[name] {
				t.Fatalf("%s breaks no rule (%s) but survived two sweeps", name, e.why)
			}
		}
	}
	deletable := 0
	for _, e := range expect {
		if e.deletable {
			deletable++
		}
	}
	t.Logf("%d agents in %d pools, %d of them deletable", len(expect), len(pools), deletable)
}

// Exact (--read-cluster) against the fake Azure DevOps: the agent of a
// deleted pod goes at once; the agent of a living pod and a static agent
// named exactly like a KEDA pod stay, however long they have been offline.
func TestExactSweepRemovesOnlyAgentsOfGonePods(t *testing.T) {
	f := newFixture(t)
	pool := f.org.AddPool("p")
	longAgo := time.Now().Add(-48 * time.Hour)
	f.org.AddAgent(pool, fakeazdo.Agent{Name: "linux-agents-x7k2p-b4c6d", StatusChangedOn: time.Now()}) // pod deleted a moment ago
	f.org.AddAgent(pool, fakeazdo.Agent{Name: "linux-agents-q9w8e-r5t6y", StatusChangedOn: longAgo})    // pod still there
	f.org.AddAgent(pool, fakeazdo.Agent{Name: "prod-agent-win10", StatusChangedOn: longAgo})            // a static VM, rebooted
	f.org.AddAgent(pool, fakeazdo.Agent{Name: "build-a1b2c-d3e4f", StatusChangedOn: longAgo})           // a static agent shaped like a pod
	s := f.sweeper([]queue.Pool{{Key: queue.Key{Org: "contoso", ID: pool}, Name: "p"}},
		Rules{Exact: true, OfflineFor: time.Hour, Pattern: "*-?????-?????", MaxDeletions: 10}, false, nil)
	s.o.Pods = func() func(string) PodState {
		return func(agent string) PodState {
			switch agent {
			case "linux-agents-x7k2p-b4c6d":
				return PodGone
			case "linux-agents-q9w8e-r5t6y":
				return PodAlive
			}
			return PodNone
		}
	}
	if res := s.SweepOnce(context.Background()); res.Deleted != 1 {
		t.Fatalf("deleted %d, want 1", res.Deleted)
	}
	if got := fmt.Sprint(f.org.AgentNames(pool)); got != "[build-a1b2c-d3e4f linux-agents-q9w8e-r5t6y prod-agent-win10]" {
		t.Fatalf("agents left: %s", got)
	}
}
