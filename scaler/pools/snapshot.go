// Package pools keeps, for every (organization, pool) that triggers use, a
// snapshot of the pool's unfinished job requests, refreshed by one poller
// per pool whatever the number of triggers. Triggers are answered from the
// snapshot; nothing here is called per KEDA request except reads.
package pools

import (
	"sync"
	"time"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/demands"
)

// Job is one unfinished job request, reduced to what triggers look at.
type Job struct {
	ID            uint64
	RawDemands    []string         // as Azure DevOps sent them
	Demands       []demands.Demand // parsed; valid only when !Unparsable
	Unparsable    bool             // a demand did not parse: no template can be sure to run it
	MatchedAgents []string         // names of the agents Azure DevOps matched
	Received      bool             // an agent received the job (in flight)
	QueuedAt      time.Time
}

// Snapshot is a pool's unfinished jobs at one moment. It is immutable but
// for its count cache.
type Snapshot struct {
	Organization string
	PoolID       int
	PoolName     string
	Jobs         []Job
	FetchedAt    time.Time

	counts sync.Map // CountKey -> int
}

// NewSnapshot reduces the job requests Azure DevOps returned. Finished
// requests are dropped even if the answer holds some.
func NewSnapshot(org string, poolID int, poolName string, requests []taskagent.TaskAgentJobRequest, at time.Time) *Snapshot {
	s := &Snapshot{Organization: org, PoolID: poolID, PoolName: poolName, FetchedAt: at, Jobs: make([]Job, 0, len(requests))}
	for i := range requests {
		r := &requests[i]
		if r.Result != nil || (r.FinishTime != nil && !r.FinishTime.Time.IsZero()) || r.RequestId == nil {
			continue
		}
		j := Job{ID: *r.RequestId, Received: r.ReceiveTime != nil && !r.ReceiveTime.Time.IsZero()}
		if r.QueueTime != nil {
			j.QueuedAt = r.QueueTime.Time
		}
		if r.Demands != nil {
			for _, d := range *r.Demands {
				text, ok := d.(string)
				if !ok {
					j.Unparsable = true
					continue
				}
				j.RawDemands = append(j.RawDemands, text)
				parsed, err := demands.Parse(text)
				if err != nil {
					j.Unparsable = true
					continue
				}
				j.Demands = append(j.Demands, parsed)
			}
		}
		if r.MatchedAgents != nil {
			for _, a := range *r.MatchedAgents {
				if a.Name != nil {
					j.MatchedAgents = append(j.MatchedAgents, *a.Name)
				}
			}
		}
		s.Jobs = append(s.Jobs, j)
	}
	return s
}

// Count counts the jobs for which counts is true. Results are cached by
// key: callers must give the same key only for the same predicate.
func (s *Snapshot) Count(key string, counts func(*Job) bool) int {
	if v, ok := s.counts.Load(key); ok {
		return v.(int)
	}
	n := 0
	for i := range s.Jobs {
		if counts(&s.Jobs[i]) {
			n++
		}
	}
	s.counts.Store(key, n)
	return n
}

// Age is how old the snapshot is.
func (s *Snapshot) Age(now time.Time) time.Duration { return now.Sub(s.FetchedAt) }
