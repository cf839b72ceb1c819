package routing

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/queue"
)

var t0 = time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)

// queuedAt makes a waiting job with an id, queued at t0+at.
func queuedAt(id uint64, at time.Duration, ds ...string) queue.Job {
	j := waiting(ds...)
	j.ID, j.QueuedAt = id, t0.Add(at)
	return j
}

// freeAgentTakes plays Azure DevOps handing a free agent of template tr a
// job: the oldest waiting one it can run. It marks the job assigned and
// returns its index (-1: none).
func freeAgentTakes(jobs []queue.Job, tr *Trigger, agent string) int {
	best := -1
	for i := range jobs {
		if jobs[i].Waiting() && tr.accepts(&jobs[i]) && (best < 0 || jobs[i].Older(&jobs[best])) {
			best = i
		}
	}
	if best >= 0 {
		jobs[best].Agent = agent
	}
	return best
}

// The case the end-to-end burst showed on a real node: a plain job, then a
// GPU job. Without rule 3 both templates count one; if the GPU pod asks
// first, Azure DevOps gives it the plain job, the plain pod finds nothing
// and the GPU job needs a second GPU pod. With it, the GPU job is held
// until the plain job has an agent, and then counted.
func TestHoldBehindOlderJob(t *testing.T) {
	plain := capsTrigger(t, "plain", "Agent.OS=Linux")
	gpu := capsTrigger(t, "gpu", "Agent.OS=Linux,docker,cuda=12.4")
	triggers := []Trigger{plain, gpu}
	jobs := []queue.Job{queuedAt(1, 0, plainJob...), queuedAt(2, time.Second, gpuJob...)}
	at := t0.Add(10 * time.Second)

	// Without the rule: the GPU pod, free first, takes the plain job.
	p := Route(jobs, triggers, Rules{At: at})
	if p.Count(plain.ID) != 1 || p.Count(gpu.ID) != 1 {
		t.Fatalf("without the hold: plain %d, gpu %d; want 1 and 1", p.Count(plain.ID), p.Count(gpu.ID))
	}
	race := slices.Clone(jobs)
	if took := freeAgentTakes(race, &gpu, "gpu-b2c4d-aaaaa"); took != 0 {
		t.Fatalf("the GPU agent took job index %d, want the older plain job (0): the case this rule is for did not happen", took)
	}

	rules := Rules{HoldBehindOlder: time.Minute, At: at}
	p = Route(jobs, triggers, rules)
	if p.Count(plain.ID) != 1 || p.Count(gpu.ID) != 0 {
		t.Fatalf("with the hold: plain %d, gpu %d; want 1 and 0", p.Count(plain.ID), p.Count(gpu.ID))
	}
	a := p.Assignments[1]
	if a.Reason != HeldBehindOlder || a.Owner != gpu.ID || a.Behind != 1 || a.CountedByOwner() {
		t.Fatalf("the GPU job: %+v; want held behind job 1 for %s", a, gpu.ID)
	}
	if s := p.Explain(a); !strings.Contains(s, "held until job 1") || !strings.Contains(s, "ns/gpu") {
		t.Fatalf("explanation %q names neither the older job nor the trigger", s)
	}

	// The plain pod takes the plain job: now the GPU job counts.
	jobs[0].Agent = "plain-b2c4d-bbbbb"
	if p := Route(jobs, triggers, rules); p.Count(gpu.ID) != 1 || p.Count(plain.ID) != 1 {
		t.Fatalf("after the plain job has its agent: plain %d, gpu %d; want 1 (running) and 1", p.Count(plain.ID), p.Count(gpu.ID))
	}

	// A plain job that has waited longer than the hold no longer holds the
	// GPU job back (its pod is not coming).
	jobs[0].Agent = ""
	late := Rules{HoldBehindOlder: time.Minute, At: t0.Add(time.Minute)}
	if p := Route(jobs, triggers, late); p.Count(gpu.ID) != 1 {
		t.Fatalf("after the hold ran out: gpu %d, want 1", p.Count(gpu.ID))
	}

	// A GPU job queued first is never held: the GPU pod takes it.
	first := []queue.Job{queuedAt(1, 0, gpuJob...), queuedAt(2, time.Second, plainJob...)}
	if p := Route(first, triggers, rules); p.Count(gpu.ID) != 1 || p.Count(plain.ID) != 1 {
		t.Fatalf("GPU job first: plain %d, gpu %d; want 1 and 1", p.Count(plain.ID), p.Count(gpu.ID))
	}
}

// A chain: a plain job, a Docker job, a GPU job. Docker waits for plain,
// GPU for Docker, whose own job is held: a held job holds back too.
func TestHoldBehindOlderChains(t *testing.T) {
	plain := capsTrigger(t, "plain", "Agent.OS=Linux")
	docker := capsTrigger(t, "docker", "Agent.OS=Linux,docker")
	gpu := capsTrigger(t, "gpu", "Agent.OS=Linux,docker,cuda=12.4")
	triggers := []Trigger{gpu, docker, plain}
	jobs := []queue.Job{queuedAt(1, 0, plainJob...), queuedAt(2, time.Second, dockerJob...), queuedAt(3, 2*time.Second, gpuJob...)}
	rules := Rules{HoldBehindOlder: time.Minute, At: t0.Add(5 * time.Second)}
	want := func(step string, plainN, dockerN, gpuN int) {
		t.Helper()
		p := Route(jobs, triggers, rules)
		if p.Count(plain.ID) != plainN || p.Count(docker.ID) != dockerN || p.Count(gpu.ID) != gpuN {
			t.Fatalf("%s: plain %d, docker %d, gpu %d; want %d, %d, %d", step, p.Count(plain.ID), p.Count(docker.ID), p.Count(gpu.ID), plainN, dockerN, gpuN)
		}
	}
	want("queued", 1, 0, 0)
	jobs[0].Agent = "plain-b2c4d-aaaaa"
	want("plain job taken", 1, 1, 0)
	jobs[1].Agent = "docker-b2c4d-bbbbb"
	want("docker job taken", 1, 1, 1)
}

// Rule 3 over random pools and any order in which the new pods ask: every
// pod started for the waiting jobs a trigger counts gets, from Azure DevOps
// (the oldest job its agent can run), one of the jobs its own trigger
// counts. No pod finds nothing, so no job needs a second pod. Without the
// rule the same pools lose pods that way (the test checks it happens, so
// that it tests something).
func TestHoldBehindOlderGivesEachPodItsOwnJob(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	lostWithout := 0
	for round := range 3000 {
		jobs, triggers := randomPool(r, t)
		for i := range triggers {
			triggers[i].Shared = false // shared triggers start a pod for every job: not this rule's business
			triggers[i].Room = int64(r.IntN(4))
		}
		for i := range jobs {
			jobs[i].ID = uint64(i + 1)
			jobs[i].QueuedAt = t0.Add(time.Duration(r.IntN(30)) * time.Second)
		}
		at := t0.Add(time.Minute)
		for _, rules := range []Rules{{HoldBehindOlder: time.Hour, At: at}, {At: at}} {
			p := Route(jobs, triggers, rules)
			// The pods the counts start: one per counted waiting job.
			var pods []*Trigger
			for _, a := range p.Assignments {
				if a.Waiting && a.CountedByOwner() {
					pods = append(pods, byID(triggers, a.Owner))
				}
			}
			r.Shuffle(len(pods), func(i, j int) { pods[i], pods[j] = pods[j], pods[i] })
			sim := slices.Clone(jobs)
			lost := 0
			for n, tr := range pods {
				took := freeAgentTakes(sim, tr, tr.Name+"-b2c4d-"+string(rune('a'+n%26)))
				if took < 0 || p.Assignments[took].Owner != tr.ID || !p.Assignments[took].CountedByOwner() {
					lost++
				}
			}
			if rules.HoldBehindOlder == 0 {
				lostWithout += lost
				continue
			}
			if lost > 0 {
				t.Fatalf("round %d: %d of %d pods took no job of their own trigger", round, lost, len(pods))
			}
			// Every waiting job is counted, held, or waits for room or a trigger.
			for _, a := range p.Assignments {
				if a.Waiting && !a.CountedByOwner() && a.Reason != HeldBehindOlder && a.Reason != NoRoom && a.Reason != Unroutable {
					t.Fatalf("round %d: waiting job neither counted nor held: %+v", round, a)
				}
				if a.Reason == HeldBehindOlder && (a.Owner == "" || !byID(triggers, a.Owner).accepts(a.Job)) {
					t.Fatalf("round %d: held for a trigger that does not accept it: %+v", round, a)
				}
			}
			// Still independent of the order of the triggers.
			shuffled := slices.Clone(triggers)
			r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			q := Route(jobs, shuffled, rules)
			for i := range p.Assignments {
				if p.Assignments[i].Owner != q.Assignments[i].Owner || p.Assignments[i].Reason != q.Assignments[i].Reason {
					t.Fatalf("round %d: job %d: %+v or %+v depending on trigger order", round, i, p.Assignments[i], q.Assignments[i])
				}
			}
		}
	}
	if lostWithout == 0 {
		t.Fatal("without the hold no pod ever lost its job: the random pools do not exercise the rule")
	}
	t.Logf("without the hold, %d pods over 3000 random pools took no job of their own trigger", lostWithout)
}
