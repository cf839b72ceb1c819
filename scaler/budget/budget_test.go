package budget

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/queue"
)

var t0 = time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)

func waitingJob(id uint64, at time.Duration) queue.Job {
	return queue.Job{ID: id, QueuedAt: t0.Add(at)}
}

func runningJob(id uint64, at time.Duration) queue.Job {
	return queue.Job{ID: id, QueuedAt: t0.Add(at), Agent: "linux-b2c4d-f6g7h", Received: true, AssignedAt: t0.Add(at + time.Second)}
}

// The case: 3 parallel jobs, one in use, five waiting on two pools
// (the pools' jobs interleaved in time): the two oldest waiting jobs may
// start a pod, the other three wait for a parallel job.
func TestAdmitOldestFirstAcrossPools(t *testing.T) {
	jobs := []queue.Job{runningJob(1, 0), waitingJob(5, 5*time.Second), waitingJob(3, 3*time.Second), waitingJob(2, 2*time.Second),
		waitingJob(6, 6*time.Second), waitingJob(4, 4*time.Second)}
	d := Admit(jobs, Usage{Total: 3, Used: 1, Holding: map[uint64]bool{1: true}, At: t0.Add(10 * time.Second)})
	if d.Off != "" || d.Free != 2 || d.InUse != 1 || d.Admitted != 2 {
		t.Fatalf("decision %+v; want 1 in use, 2 free, 2 admitted", d)
	}
	for id, blocked := range map[uint64]bool{2: false, 3: false, 4: true, 5: true, 6: true, 1: false} {
		if d.Blocked[id] != blocked {
			t.Errorf("job %d blocked %v, want %v", id, d.Blocked[id], blocked)
		}
	}
}

// A job that started after the reading is in use although the reading does
// not say so; a waiting job the reading names already has its parallel job.
func TestAdmitReconcilesAnOlderReading(t *testing.T) {
	at := t0.Add(time.Minute)
	jobs := []queue.Job{runningJob(1, 2*time.Minute), waitingJob(2, 0), waitingJob(3, time.Second), waitingJob(4, 2*time.Second)}
	d := Admit(jobs, Usage{Total: 2, Used: 1, Holding: map[uint64]bool{4: true}, At: at})
	if d.Off != "" || d.InUse != 2 || d.Free != 0 {
		t.Fatalf("decision %+v; want 2 in use (the reading's one and job 1, started after it), none free", d)
	}
	if !d.Blocked[2] || !d.Blocked[3] || d.Blocked[4] {
		t.Fatalf("blocked %v; want 2 and 3 (no parallel job left), not 4 (it holds one)", d.Blocked)
	}
}

// Fail open: readings that cannot be right block nothing and say why.
func TestInconsistentReadingsBlockNothing(t *testing.T) {
	at := t0.Add(10 * time.Minute)
	jobs := []queue.Job{runningJob(1, 0), waitingJob(2, time.Minute), waitingJob(3, 2*time.Minute)}
	for name, c := range map[string]struct {
		u    Usage
		want string
	}{
		"no parallel jobs":             {Usage{Total: 0, Holding: map[uint64]bool{}, At: at}, "has 0 parallel jobs"},
		"used 0 while a job runs":      {Usage{Total: 1, Used: 0, Holding: map[uint64]bool{}, At: at}, "request 1 has run since"},
		"holds more than it uses":      {Usage{Total: 3, Used: 1, Holding: map[uint64]bool{1: true, 9: true}, At: at}, "but 2 requests hold one"},
		"negative use (a bad answer)":  {Usage{Total: 3, Used: -1, At: at}, "-1 parallel jobs in use"},
		"fixed budget of no parallels": {Usage{Total: 0, Fixed: true, At: at}, "has 0 parallel jobs"},
	} {
		d := Admit(jobs, c.u)
		if len(d.Blocked) != 0 || !strings.Contains(d.Off, c.want) {
			t.Errorf("%s: decision %+v; want nothing blocked, Off saying %q", name, d, c.want)
		}
	}
}

// A fixed budget (Azure DevOps Server, or slots reserved for hosted
// agents): the running private jobs of the polled pools are the ones in
// use.
func TestFixedBudget(t *testing.T) {
	jobs := []queue.Job{runningJob(1, 0), waitingJob(2, time.Second), waitingJob(3, 2*time.Second)}
	jobs[0].AssignedAt = t0.Add(-time.Hour) // long before: fine, a fixed budget names no requests
	d := Admit(jobs, Usage{Total: 2, Fixed: true, At: t0.Add(time.Hour)})
	if d.Off != "" || d.InUse != 1 || d.Free != 1 || d.Blocked[2] || !d.Blocked[3] {
		t.Fatalf("decision %+v; want 1 in use, job 2 admitted, job 3 blocked", d)
	}
}

// The properties the issue asks for, over random organizations and
// readings: the waiting jobs admitted beyond those that hold a parallel job
// never exceed the free ones; they are the oldest; running, public and
// holding jobs are never blocked; an inconsistent reading blocks nothing.
func TestAdmitProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	blockedSeen := 0
	for round := range 5000 {
		var jobs []queue.Job
		holding := map[uint64]bool{}
		at := t0.Add(time.Hour)
		for i := range r.IntN(30) {
			id := uint64(i + 1)
			queued := time.Duration(r.IntN(3600)) * time.Second
			var j queue.Job
			if r.IntN(3) == 0 {
				j = runningJob(id, queued)
				if r.IntN(5) != 0 {
					holding[id] = true // the reading names it
				} else {
					j.AssignedAt = at.Add(time.Duration(r.IntN(60)) * time.Second) // started after the reading
				}
			} else {
				j = waitingJob(id, queued)
				if r.IntN(8) == 0 {
					holding[id] = true
				}
			}
			j.Public = r.IntN(6) == 0
			if j.Public {
				delete(holding, id)
			}
			jobs = append(jobs, j)
		}
		u := Usage{Total: r.IntN(8), Used: len(holding) + r.IntN(3), Holding: holding, At: at}
		if r.IntN(10) == 0 {
			u = Usage{Total: r.IntN(5), Fixed: true, At: at}
		}
		d := Admit(jobs, u)
		if d.Off != "" {
			if len(d.Blocked) != 0 || Consistent(jobs, u) == "" {
				t.Fatalf("round %d: off (%s) but blocked %v", round, d.Off, d.Blocked)
			}
			continue
		}
		admitted := 0
		var oldestBlocked, newestAdmitted *queue.Job
		for i := range jobs {
			j := &jobs[i]
			if d.Blocked[j.ID] && (!j.Waiting() || j.Public || (!u.Fixed && u.Holding[j.ID])) {
				t.Fatalf("round %d: blocked a job that is running, public or holds a parallel job: %+v", round, *j)
			}
			if !j.Waiting() || j.Public || (!u.Fixed && u.Holding[j.ID]) {
				continue
			}
			if d.Blocked[j.ID] {
				blockedSeen++
				if oldestBlocked == nil || j.QueuedAt.Before(oldestBlocked.QueuedAt) {
					oldestBlocked = j
				}
				continue
			}
			admitted++
			if newestAdmitted == nil || j.QueuedAt.After(newestAdmitted.QueuedAt) {
				newestAdmitted = j
			}
		}
		if admitted > d.Free || admitted != d.Admitted || d.Free != max(0, u.Total-d.InUse) {
			t.Fatalf("round %d: admitted %d (decision %d), free %d, total %d, in use %d", round, admitted, d.Admitted, d.Free, u.Total, d.InUse)
		}
		if oldestBlocked != nil && admitted < d.Free {
			t.Fatalf("round %d: job %d blocked with %d of %d free parallel jobs unused", round, oldestBlocked.ID, d.Free-admitted, d.Free)
		}
		if oldestBlocked != nil && newestAdmitted != nil && oldestBlocked.QueuedAt.Before(newestAdmitted.QueuedAt) {
			t.Fatalf("round %d: job %d (queued %s) blocked while the newer job %d was admitted", round, oldestBlocked.ID, oldestBlocked.QueuedAt, newestAdmitted.ID)
		}
	}
	if blockedSeen == 0 {
		t.Fatal("no job was ever blocked: the random organizations do not exercise the budget")
	}
}

// A parallel job freed after the reading is free at the next snapshot of
// its pool: the reading names request 1 in pool 7; a snapshot of pool 7
// fetched after the reading no longer holds it, so it finished. A snapshot
// fetched before the reading says nothing.
func TestFinishedSinceTheReading(t *testing.T) {
	at := t0.Add(time.Minute)
	u := Usage{Total: 1, Used: 1, Holding: map[uint64]bool{1: true}, HoldingPool: map[uint64]int{1: 7}, At: at}
	after := &queue.Snapshot{Pool: queue.Pool{Key: queue.Key{Org: "contoso", ID: 7}}, FetchedAt: at.Add(time.Second), Jobs: []queue.Job{waitingJob(2, time.Second)}}
	before := &queue.Snapshot{Pool: after.Pool, FetchedAt: at.Add(-time.Second), Jobs: after.Jobs}
	other := &queue.Snapshot{Pool: queue.Pool{Key: queue.Key{Org: "contoso", ID: 8}}, FetchedAt: at.Add(time.Second)}

	if done := Finished(u, []*queue.Snapshot{before, other}); len(done) != 0 {
		t.Fatalf("finished %v from a snapshot older than the reading and another pool's", done)
	}
	done := Finished(u, []*queue.Snapshot{after, other})
	if !done[1] || len(done) != 1 {
		t.Fatalf("finished %v, want request 1", done)
	}
	d := Admit(after.Jobs, u.Without(done))
	if d.Off != "" || d.Blocked[2] || d.Free != 1 {
		t.Fatalf("decision %+v: the freed parallel job should go to job 2", d)
	}
	if d := Admit(after.Jobs, u); !d.Blocked[2] {
		t.Fatalf("without it, job 2 waits for the next reading: %+v", d)
	}
}
