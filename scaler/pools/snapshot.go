// Package pools keeps, for every (organization, pool) that triggers use, a
// snapshot of the pool's unfinished job requests, refreshed by one poller
// per pool whatever the number of triggers. Triggers are answered from the
// snapshot; nothing here is called per KEDA request except reads.
package pools

import (
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
	Agent         string           // the agent Azure DevOps assigned the job to ("": none yet)
	Received      bool             // an agent received the job (in flight)
	QueuedAt      time.Time
	AssignedAt    time.Time // zero until an agent is assigned
}

// AddDemand adds a demand as Azure DevOps wrote it, parsed; a demand that
// does not parse makes the job Unparsable.
func (j *Job) AddDemand(text string) {
	j.RawDemands = append(j.RawDemands, text)
	parsed, err := demands.Parse(text)
	if err != nil {
		j.Unparsable = true
		return
	}
	j.Demands = append(j.Demands, parsed)
}

// Waiting reports whether the job still waits for an agent: none is
// assigned and none received it.
func (j *Job) Waiting() bool { return j.Agent == "" && !j.Received }

// Snapshot is a pool's unfinished jobs at one moment. It is immutable.
type Snapshot struct {
	Organization string
	PoolID       int
	PoolName     string
	Jobs         []Job
	FetchedAt    time.Time
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
		if r.AssignTime != nil {
			j.AssignedAt = r.AssignTime.Time
		}
		if r.ReservedAgent != nil && r.ReservedAgent.Name != nil {
			j.Agent = *r.ReservedAgent.Name
		}
		if r.Demands != nil {
			for _, d := range *r.Demands {
				text, ok := d.(string)
				if !ok {
					j.Unparsable = true
					continue
				}
				j.AddDemand(text)
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

// Age is how old the snapshot is.
func (s *Snapshot) Age(now time.Time) time.Duration { return now.Sub(s.FetchedAt) }
