package routing

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/demands"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/queue"
)

// capsTrigger is an exclusive trigger whose template has capabilities caps
// (as trigger.Spec builds it), named after a ScaledJob.
func capsTrigger(t testing.TB, name, caps string) Trigger {
	t.Helper()
	c, err := demands.ParseCapabilities(caps)
	if err != nil {
		t.Fatal(err)
	}
	return Trigger{ID: "ns/" + name + "#x", Namespace: "ns", Name: name, Rank: c.Len(), InFlight: true,
		Accepts:   func(j *queue.Job) bool { return !j.Unparsable && c.SatisfiesAll(j.Demands) },
		OwnsAgent: KEDAPodOwner(name), Filter: "capabilities=" + caps}
}

func waiting(ds ...string) queue.Job {
	var j queue.Job
	for _, s := range ds {
		j.AddDemand(s)
	}
	return j
}

func runningOn(agent string, ds ...string) queue.Job {
	j := waiting(ds...)
	j.Agent, j.Received = agent, true
	return j
}

var (
	plainJob  = []string{"Agent.OS -equals Linux"}
	dockerJob = []string{"Agent.OS -equals Linux", "docker"}
	gpuJob    = []string{"Agent.OS -equals Linux", "docker", "cuda -gtVersion 12.0"}
)

// The example: a plain Linux, a Linux+Docker and a GPU template on
// one pool. Every job counts once, for the least capable template that can
// run it; running jobs count for the ScaledJob whose pod runs them.
func TestOverlappingTemplatesCountEachJobOnce(t *testing.T) {
	linux := capsTrigger(t, "linux", "Agent.OS=Linux")
	docker := capsTrigger(t, "linux-docker", "Agent.OS=Linux,docker")
	gpu := capsTrigger(t, "gpu", "Agent.OS=Linux,docker,cuda=12.4")
	jobs := []queue.Job{
		waiting(plainJob...), waiting(plainJob...), waiting(dockerJob...), waiting(gpuJob...),
		runningOn("linux-docker-x7k2p-abcde", plainJob...), // a plain job a docker pod took
		runningOn("linux-b2c4d-f6g7h", plainJob...),
		runningOn("static-vm-1", dockerJob...), // nobody's pod
		waiting("Agent.OS -equals Windows_NT"), // nobody can run it
	}
	p := Route(jobs, []Trigger{gpu, docker, linux}, Rules{})
	for tr, want := range map[*Trigger]int{&linux: 3, &docker: 2, &gpu: 1} {
		if got := p.Count(tr.ID); got != want {
			t.Errorf("%s counts %d, want %d", tr.Name, got, want)
		}
	}
	reasons := []string{RoutedWaiting, RoutedWaiting, RoutedWaiting, RoutedWaiting, RunningOwn, RunningOwn, RunningStatic, Unroutable}
	for i, a := range p.Assignments {
		if a.Reason != reasons[i] {
			t.Errorf("job %d: %s (%s), want %s", i, a.Reason, p.Explain(a), reasons[i])
		}
	}
	if u := p.Unroutable(); len(u) != 1 || !strings.Contains(p.Explain(u[0]), "Windows_NT") {
		t.Errorf("unroutable = %v", u)
	}
	if got := p.Explain(p.Assignments[4]); !strings.Contains(got, "ns/linux-docker") {
		t.Errorf("explanation %q does not name the owner", got)
	}
}

// Priority wins over rank; rank over name.
func TestPriorityThenRankThenName(t *testing.T) {
	linux := capsTrigger(t, "linux", "Agent.OS=Linux")
	docker := capsTrigger(t, "linux-docker", "Agent.OS=Linux,docker")
	jobs := []queue.Job{waiting(plainJob...)}
	if p := Route(jobs, []Trigger{docker, linux}, Rules{}); p.Count(linux.ID) != 1 {
		t.Fatal("the least capable template must win at equal priority")
	}
	docker.Priority = 5
	if p := Route(jobs, []Trigger{docker, linux}, Rules{}); p.Count(docker.ID) != 1 {
		t.Fatal("a higher priority must win over a lower rank")
	}
	a, b := capsTrigger(t, "a", "Agent.OS=Linux"), capsTrigger(t, "b", "Agent.OS=Linux")
	if p := Route(jobs, []Trigger{b, a}, Rules{}); p.Count(a.ID) != 1 {
		t.Fatal("equal priority and rank: the smaller ID wins")
	}
}

// A shared trigger counts like KEDA's built-in (every accepted job, running
// ones with scaleOnInFlight) and takes no job from the others.
func TestSharedTriggerCountsLikeTheBuiltIn(t *testing.T) {
	linux := capsTrigger(t, "linux", "Agent.OS=Linux")
	shared := capsTrigger(t, "everyone", "Agent.OS=Linux,docker")
	shared.Shared = true
	jobs := []queue.Job{waiting(plainJob...), waiting(dockerJob...), runningOn("linux-b2c4d-f6g7h", plainJob...)}
	p := Route(jobs, []Trigger{shared, linux}, Rules{})
	if p.Count(shared.ID) != 3 || p.Count(linux.ID) != 2 {
		t.Fatalf("shared %d (want 3), linux %d (want 2)", p.Count(shared.ID), p.Count(linux.ID))
	}
	if a := p.Assignments[1]; a.Reason != RoutedWaiting || a.Owner != "" || len(a.Shared) != 1 {
		t.Fatalf("a job only the shared trigger accepts: %+v", a)
	}
	shared.InFlight = false
	if p := Route(jobs, []Trigger{shared, linux}, Rules{}); p.Count(shared.ID) != 2 {
		t.Fatalf("shared without scaleOnInFlight counts %d, want 2", p.Count(shared.ID))
	}
}

func TestHoldWaitingCountsOnlyRunning(t *testing.T) {
	linux := capsTrigger(t, "linux", "Agent.OS=Linux")
	jobs := []queue.Job{waiting(plainJob...), runningOn("linux-b2c4d-f6g7h", plainJob...)}
	p := Route(jobs, []Trigger{linux}, Rules{Warmup: true})
	if p.Count(linux.ID) != 1 || p.Assignments[0].Reason != HeldWaiting || p.Assignments[0].Owner != linux.ID {
		t.Fatalf("held: count %d, %+v", p.Count(linux.ID), p.Assignments[0])
	}
}

func TestRunningWithoutScaleOnInFlight(t *testing.T) {
	linux := capsTrigger(t, "linux", "Agent.OS=Linux")
	linux.InFlight = false
	p := Route([]queue.Job{runningOn("linux-b2c4d-f6g7h", plainJob...), waiting(plainJob...)}, []Trigger{linux}, Rules{})
	if p.Count(linux.ID) != 1 || p.Assignments[0].Reason != RunningNotCounted {
		t.Fatalf("count %d, %+v", p.Count(linux.ID), p.Assignments[0])
	}
}

// randomPool makes jobs and triggers over a small alphabet of demands and
// capabilities, so that filters overlap a lot.
func randomPool(r *rand.Rand, t testing.TB) ([]queue.Job, []Trigger) {
	capNames := []string{"Agent.OS=Linux", "docker", "cuda=12.4", "java=17", "node"}
	demandOf := map[string]string{"Agent.OS=Linux": "Agent.OS -equals Linux", "docker": "docker", "cuda=12.4": "cuda -gtVersion 12.0",
		"java=17": "java -gtVersion 11.0", "node": "node"}
	var triggers []Trigger
	for i := range 1 + r.IntN(6) {
		var caps []string
		for _, c := range capNames {
			if r.IntN(2) == 0 {
				caps = append(caps, c)
			}
		}
		name := fmt.Sprintf("sj-%d", i)
		var tr Trigger
		if len(caps) == 0 {
			tr = Trigger{ID: "ns/" + name + "#x", Namespace: "ns", Name: name, Rank: 1 << 30, InFlight: true, OwnsAgent: KEDAPodOwner(name)}
		} else {
			tr = capsTrigger(t, name, strings.Join(caps, ","))
		}
		tr.Priority = int64(r.IntN(3))
		tr.Shared = r.IntN(5) == 0
		tr.InFlight = r.IntN(4) != 0
		triggers = append(triggers, tr)
	}
	var jobs []queue.Job
	for range r.IntN(40) {
		var ds []string
		for _, c := range capNames {
			if r.IntN(3) == 0 {
				ds = append(ds, demandOf[c])
			}
		}
		switch r.IntN(4) {
		case 0:
			owner := triggers[r.IntN(len(triggers))].Name
			jobs = append(jobs, runningOn(fmt.Sprintf("%s-b2c4d-%05d", owner, r.IntN(99999)), ds...))
		case 1:
			jobs = append(jobs, runningOn("static-agent", ds...))
		default:
			jobs = append(jobs, waiting(ds...))
		}
	}
	return jobs, triggers
}

// The properties the issue asks for, over random pools and trigger sets.
func TestRoutingProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 3000 {
		jobs, triggers := randomPool(r, t)
		p := Route(jobs, triggers, Rules{})
		exclusiveSum := 0
		for _, tr := range triggers {
			if !tr.Shared {
				exclusiveSum += p.Count(tr.ID)
			}
		}
		if exclusiveSum > len(jobs) {
			t.Fatalf("round %d: exclusive counts add up to %d for %d unfinished jobs", round, exclusiveSum, len(jobs))
		}
		counted := 0
		for _, a := range p.Assignments {
			acceptors, owners := 0, 0
			for i := range triggers {
				tr := &triggers[i]
				if tr.Shared {
					continue
				}
				if tr.accepts(a.Job) {
					acceptors++
				}
				if a.Job.Agent != "" && tr.OwnsAgent(a.Job.Agent) {
					owners++
				}
			}
			switch {
			case a.Waiting && acceptors > 0:
				// Counted by exactly one exclusive trigger, one that accepts it.
				if a.Reason != RoutedWaiting || a.Owner == "" || !byID(triggers, a.Owner).accepts(a.Job) {
					t.Fatalf("round %d: a waiting job %d triggers accept: %+v", round, acceptors, a)
				}
				counted++
			case a.Waiting:
				if a.Owner != "" {
					t.Fatalf("round %d: a job no exclusive trigger accepts is owned: %+v", round, a)
				}
			case owners > 0 && byID(triggers, a.Owner).InFlight:
				if a.Reason != RunningOwn {
					t.Fatalf("round %d: a running job on an owned agent: %+v", round, a)
				}
				counted++
			default:
				if a.Reason == RunningOwn {
					t.Fatalf("round %d: counted a running job no in-flight owner has: %+v", round, a)
				}
			}
		}
		if counted != exclusiveSum {
			t.Fatalf("round %d: %d jobs counted once each, but the counts add up to %d", round, counted, exclusiveSum)
		}
		// Whatever order KEDA's calls taught the triggers in, the same counts.
		shuffled := append([]Trigger(nil), triggers...)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		q := Route(jobs, shuffled, Rules{})
		for _, tr := range triggers {
			if p.Count(tr.ID) != q.Count(tr.ID) {
				t.Fatalf("round %d: %s counts %d or %d depending on trigger order", round, tr.ID, p.Count(tr.ID), q.Count(tr.ID))
			}
		}
		for i := range p.Assignments {
			if p.Assignments[i].Owner != q.Assignments[i].Owner {
				t.Fatalf("round %d: job %d goes to %s or %s depending on order", round, i, p.Assignments[i].Owner, q.Assignments[i].Owner)
			}
		}
	}
}

func byID(ts []Trigger, id string) *Trigger {
	for i := range ts {
		if ts[i].ID == id {
			return &ts[i]
		}
	}
	return &Trigger{Accepts: func(*queue.Job) bool { return false }}
}

// Room (a ScaledJob's maxReplicaCount), over random pools: no trigger
// counts more than its room unless its own running jobs alone do; a
// waiting job waits for room only when every exclusive trigger that
// accepts it is full; the jobs that wait are never older than those
// counted; and the result still does not depend on trigger order.
func TestRoomProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	base := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	noRoomSeen := 0
	for round := range 3000 {
		jobs, triggers := randomPool(r, t)
		for i := range jobs {
			jobs[i].ID = uint64(i + 1)
			jobs[i].QueuedAt = base.Add(time.Duration(r.IntN(20)) * time.Minute)
		}
		for i := range triggers {
			triggers[i].Room = int64(r.IntN(5)) // 0: no limit
		}
		p := Route(jobs, triggers, Rules{})
		own := map[string]int{}
		for _, a := range p.Assignments {
			if a.Reason == RunningOwn {
				own[a.Owner]++
			}
		}
		for i := range triggers {
			tr := &triggers[i]
			if !tr.Shared && tr.Room > 0 && int64(p.Count(tr.ID)) > max(tr.Room, int64(own[tr.ID])) {
				t.Fatalf("round %d: %s counts %d with room %d and %d own running", round, tr.ID, p.Count(tr.ID), tr.Room, own[tr.ID])
			}
		}
		for _, a := range p.Assignments {
			if a.Reason != NoRoom {
				continue
			}
			noRoomSeen++
			for i := range triggers {
				tr := &triggers[i]
				if tr.Shared || !tr.accepts(a.Job) {
					continue
				}
				if tr.Room == 0 || int64(p.Count(tr.ID)) < tr.Room {
					t.Fatalf("round %d: job %d waits for room, but %s accepts it and counts %d of %d", round, a.Job.ID, tr.ID, p.Count(tr.ID), tr.Room)
				}
				for _, b := range p.Assignments {
					if b.Waiting && b.Owner == tr.ID && b.Reason == RoutedWaiting && a.Job.Older(b.Job) {
						t.Fatalf("round %d: %s counts job %d (queued %s) while older job %d (queued %s) waits for room",
							round, tr.ID, b.Job.ID, b.Job.QueuedAt, a.Job.ID, a.Job.QueuedAt)
					}
				}
			}
		}
		shuffled := append([]Trigger(nil), triggers...)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		q := Route(jobs, shuffled, Rules{})
		for i := range p.Assignments {
			if p.Assignments[i].Owner != q.Assignments[i].Owner || p.Assignments[i].Reason != q.Assignments[i].Reason {
				t.Fatalf("round %d: job %d routed differently depending on trigger order", round, i)
			}
		}
	}
	if noRoomSeen == 0 {
		t.Fatal("no job ever waited for room: the generator does not exercise the rule")
	}
}

// A template at its maxReplicaCount overflows to the next one that can run
// the job: GPU template full, so a plain job goes to the bigger template
// rather than wait.
func TestOverflowToTheNextCapableTemplate(t *testing.T) {
	plain := capsTrigger(t, "plain", "Agent.OS=Linux")
	docker := capsTrigger(t, "docker", "Agent.OS=Linux,docker")
	plain.Room = 2
	jobs := []queue.Job{
		runningOn("plain-b2c4d-00001", "Agent.OS -equals Linux"),
		waiting("Agent.OS -equals Linux"), waiting("Agent.OS -equals Linux"), waiting("Agent.OS -equals Linux"),
	}
	for i := range jobs {
		jobs[i].ID = uint64(i + 1)
	}
	p := Route(jobs, []Trigger{plain, docker}, Rules{})
	if p.Count(plain.ID) != 2 || p.Count(docker.ID) != 2 {
		t.Fatalf("plain %d (room 2, 1 running), docker %d; want 2 and 2", p.Count(plain.ID), p.Count(docker.ID))
	}
	docker.Room = 1
	p = Route(jobs, []Trigger{plain, docker}, Rules{})
	if p.Count(docker.ID) != 1 || p.Assignments[3].Reason != NoRoom || !strings.Contains(p.Explain(p.Assignments[3]), "maxReplicaCount") {
		t.Fatalf("both full: docker %d, last job %+v", p.Count(docker.ID), p.Assignments[3])
	}
}

// Stalled templates, over random pools: a waiting job that a healthy
// trigger with room accepts is never counted by a stalled one; a job some
// trigger with room accepts is counted by one, stalled or not (a stall
// never leaves a job uncounted); counts stay order-independent.
func TestStalledTemplatesAreRoutedAround(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	around, on := 0, 0
	for round := range 3000 {
		jobs, triggers := randomPool(r, t)
		for i := range triggers {
			if r.IntN(3) == 0 {
				triggers[i].Stalled = "ImagePullBackOff"
			}
			triggers[i].Room = int64(r.IntN(4))
		}
		p := Route(jobs, triggers, Rules{})
		for _, a := range p.Assignments {
			if !a.Waiting {
				continue
			}
			var healthyWithRoom bool
			for i := range triggers {
				tr := &triggers[i]
				if !tr.Shared && tr.Stalled == "" && tr.accepts(a.Job) && !tr.full(p.counts) {
					healthyWithRoom = true
				}
			}
			owner := byID(triggers, a.Owner)
			switch a.Reason {
			case OnStalled:
				on++
				if healthyWithRoom || owner.Stalled == "" {
					t.Fatalf("round %d: counted on a stalled trigger while a healthy one has room: %+v", round, a)
				}
			case AroundStall:
				around++
				if owner.Stalled != "" || byID(triggers, a.Skipped).Stalled == "" || !less(byID(triggers, a.Skipped), owner) {
					t.Fatalf("round %d: around a stall, wrongly: %+v", round, a)
				}
			case RoutedWaiting:
				if a.Owner != "" && owner.Stalled != "" {
					t.Fatalf("round %d: a stalled trigger counts a job as if healthy: %+v", round, a)
				}
			case NoRoom, Unroutable:
				for i := range triggers {
					tr := &triggers[i]
					if !tr.Shared && tr.accepts(a.Job) && !tr.full(p.counts) {
						t.Fatalf("round %d: job %d left uncounted (%s) while %s accepts it and has room", round, a.Job.ID, a.Reason, tr.ID)
					}
				}
			}
		}
		shuffled := append([]Trigger(nil), triggers...)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		q := Route(jobs, shuffled, Rules{})
		for i := range p.Assignments {
			if p.Assignments[i].Owner != q.Assignments[i].Owner {
				t.Fatalf("round %d: job %d routed differently depending on trigger order", round, i)
			}
		}
	}
	if around == 0 || on == 0 {
		t.Fatalf("around %d, on %d: the generator does not exercise both cases", around, on)
	}
}
