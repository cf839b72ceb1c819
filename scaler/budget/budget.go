// Package budget decides which waiting jobs of an organization may start a
// pod, given the organization's self-hosted parallel jobs: Azure DevOps
// runs at most that many private jobs at once, and a pod started for a job
// beyond them only registers, idles and leaves.
//
// Admit is a pure function of the organization's unfinished jobs (across
// all its pools the scaler polls) and one reading of its usage; the shell
// that reads usage from Azure DevOps lives in package app.
package budget

import (
	"fmt"
	"sort"
	"time"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/queue"
)

// Usage is one reading of an organization's private self-hosted parallel
// jobs (Azure DevOps' resourceusage, or a fixed number).
type Usage struct {
	// Total is the number of parallel jobs (resourceLimit.totalCount).
	Total int
	// Used is how many of them are in use (usedCount).
	Used int
	// Holding lists the requests that hold one (runningRequests), nil when
	// unknown (a fixed budget). A waiting job among them already has its
	// parallel job: Azure DevOps gives it the next free agent.
	Holding map[uint64]bool
	// HoldingPool is the pool of each request in Holding, when known.
	HoldingPool map[uint64]int
	// Fixed: Total was set by the operator and Used is unknown; the jobs
	// running in the polled pools are the ones in use.
	Fixed bool
	// At is when the reading was made.
	At time.Time
}

// Skew is how far Azure DevOps' clock (a job's assignTime) and the
// reading's may disagree before a job that ran before the reading and is
// not in it makes the reading inconsistent.
const Skew = time.Minute

// Decision is which waiting jobs may count.
type Decision struct {
	// Blocked are the waiting jobs that wait for a parallel job: no trigger
	// counts them.
	Blocked map[uint64]bool
	// Free is the parallel jobs left for waiting jobs (before admitting).
	Free int
	// InUse is the parallel jobs counted as used: Used, plus the polled
	// pools' running jobs the reading did not know yet.
	InUse int
	// Admitted is how many waiting jobs were admitted.
	Admitted int
	// Off says why no job is blocked ("" when the budget applies): the
	// reading is inconsistent, and the scaler counts as if there were no
	// budget (fail open).
	Off string
	// Pending: a reading is on its way (the keeper's first, or the first
	// after the organization's pools were idle); every waiting private job
	// waits for it.
	Pending bool
}

// Admit applies the rules:
//
//  1. Public jobs (a public project's; their own parallel jobs) and running
//     jobs are never blocked.
//  2. A waiting job that Usage.Holding names already has its parallel job:
//     admitted, using nothing more.
//  3. The parallel jobs in use are Used plus the running private jobs of
//     jobs the reading did not name yet (it is older than the jobs); with a
//     fixed budget, the running private jobs of jobs.
//  4. The rest of Total goes to the other waiting private jobs, oldest
//     first across all pools (Azure DevOps hands parallel jobs out in queue
//     order); the jobs beyond it are blocked.
//
// A reading that cannot be right (Consistent) blocks nothing.
func Admit(jobs []queue.Job, u Usage) Decision {
	if why := Consistent(jobs, u); why != "" {
		return Decision{Off: why}
	}
	inUse := u.Used
	if u.Fixed {
		inUse = 0
	}
	var waiting []*queue.Job
	for i := range jobs {
		j := &jobs[i]
		switch {
		case j.Public:
		case !j.Waiting():
			if u.Fixed || !u.Holding[j.ID] {
				inUse++
			}
		case !u.Holding[j.ID]:
			waiting = append(waiting, j)
		}
	}
	d := Decision{InUse: inUse, Free: max(0, u.Total-inUse), Blocked: map[uint64]bool{}}
	sort.Slice(waiting, func(a, b int) bool { return waiting[a].Older(waiting[b]) })
	for i, j := range waiting {
		if i < d.Free {
			d.Admitted++
			continue
		}
		d.Blocked[j.ID] = true
	}
	return d
}

// Finished lists the requests the reading names that have finished since:
// their pool's snapshot was fetched after the reading and no longer holds
// them (a pool's snapshot holds every unfinished request). Without it a
// parallel job freed after the reading would stay in use until the next
// one; with it, it is free at the next snapshot.
func Finished(u Usage, snaps []*queue.Snapshot) map[uint64]bool {
	out := map[uint64]bool{}
	if u.Fixed {
		return out
	}
	for _, s := range snaps {
		if !s.FetchedAt.After(u.At) {
			continue
		}
		present := make(map[uint64]bool, len(s.Jobs))
		for i := range s.Jobs {
			present[s.Jobs[i].ID] = true
		}
		for id, pool := range u.HoldingPool {
			if pool == s.Pool.ID && u.Holding[id] && !present[id] {
				out[id] = true
			}
		}
	}
	return out
}

// Without is the reading less the requests done: they no longer hold a
// parallel job nor count as used.
func (u Usage) Without(done map[uint64]bool) Usage {
	if len(done) == 0 {
		return u
	}
	out := u
	out.Holding, out.HoldingPool = map[uint64]bool{}, map[uint64]int{}
	for id := range u.Holding {
		if done[id] {
			out.Used--
			continue
		}
		out.Holding[id] = true
		if p, ok := u.HoldingPool[id]; ok {
			out.HoldingPool[id] = p
		}
	}
	return out
}

// Consistent says why a reading cannot be right ("" when it can): no
// parallel jobs at all (every organization has at least its free grant;
// more likely the call answered for another tag), fewer in use than it
// names, or a private job that was running well before the reading
// (Skew) and is not named by it (the usage does not count what the pools
// run, for instance usedCount 0 while jobs run). A job that started after
// the reading is fine: rule 3 counts it.
func Consistent(jobs []queue.Job, u Usage) string {
	switch {
	case u.Total <= 0:
		return fmt.Sprintf("the organization has %d parallel jobs", u.Total)
	case u.Used < 0:
		return fmt.Sprintf("%d parallel jobs in use", u.Used)
	case u.Fixed:
		return ""
	case len(u.Holding) > u.Used:
		return fmt.Sprintf("%d parallel jobs in use, but %d requests hold one", u.Used, len(u.Holding))
	}
	for i := range jobs {
		j := &jobs[i]
		if !j.Public && !j.Waiting() && !j.AssignedAt.IsZero() && j.AssignedAt.Before(u.At.Add(-Skew)) && !u.Holding[j.ID] {
			return fmt.Sprintf("request %d has run since %s, but the usage (%d in use) does not name it",
				j.ID, j.AssignedAt.UTC().Format(time.RFC3339), u.Used)
		}
	}
	return ""
}
