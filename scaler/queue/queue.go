// Package queue is the scaler's ground floor: the plain data every other
// package talks about, namely which pool (Key, Pool) and which of its jobs
// (Job, Snapshot). It holds no behaviour beyond reading that data, calls
// nothing, and imports no other package of the scaler except demands (the
// parsed form of a job's demands), so that the pure rules above it
// (routing, placeholders, budgets) stay free of Azure DevOps' SDK,
// Kubernetes and gRPC.
package queue

import (
	"strconv"
	"time"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/demands"
)

// Key identifies an agent pool: the configured organization's name and the
// pool's id in it. It is comparable and used as a map key everywhere.
type Key struct {
	Org string
	ID  int
}

// String is "org/id", for logs.
func (k Key) String() string { return k.Org + "/" + strconv.Itoa(k.ID) }

// Pool is a pool's identity and its name as Azure DevOps spells it.
type Pool struct {
	Key
	Name string
}

// Job is one unfinished job request of a pool, reduced to what the scaler
// decides on.
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
	FinishedAt    time.Time // zero until the job has a result (finished jobs: the standby history)
	// Public: the request's parallelism tag is "Public" (a public
	// project's job), which has parallel jobs of its own and uses none of
	// the organization's private ones.
	Public bool
	// What a person recognises the job by: its pipeline (the request's
	// definition), its run (the owner: a build number or release name),
	// the job's name, and a link to the run ("" when Azure DevOps gave
	// none).
	Pipeline, Run, JobName, RunURL string
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

// Older reports whether j comes before o in Azure DevOps' queue order: by
// queue time, then request id. A free agent gets the oldest job it can
// run, and parallel jobs are handed out in that order too.
func (j *Job) Older(o *Job) bool {
	if !j.QueuedAt.Equal(o.QueuedAt) {
		return j.QueuedAt.Before(o.QueuedAt)
	}
	return j.ID < o.ID
}

// Waiting reports whether the job still waits for an agent: none is
// assigned and none received it.
func (j *Job) Waiting() bool { return j.Agent == "" && !j.Received }

// Snapshot is a pool's unfinished jobs at one moment. It is immutable once
// made: readers share it without locks.
type Snapshot struct {
	Pool      Pool
	Jobs      []Job
	FetchedAt time.Time
}

// Age is how old the snapshot is.
func (s *Snapshot) Age(now time.Time) time.Duration { return now.Sub(s.FetchedAt) }
