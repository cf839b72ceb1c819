// Package pools keeps, for every pool that triggers use, a snapshot of the
// pool's unfinished job requests, refreshed by one poller per pool whatever
// the number of triggers. Triggers are answered from the snapshot: a call
// reads it, and waits (at most Options.DemandWait, --refresh-wait) only when
// the snapshot is older than Options.MinRefresh and a refresh is under way.
// It turns Azure DevOps' answers into the plain data of package queue and
// never decides what a job counts for (package routing does).
package pools

import (
	"net/url"
	"strings"
	"time"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/queue"
)

// NewSnapshot reduces the job requests Azure DevOps returned. Finished
// requests are dropped even if the answer holds some.
func NewSnapshot(pool queue.Pool, requests []taskagent.TaskAgentJobRequest, at time.Time) *queue.Snapshot {
	s := &queue.Snapshot{Pool: pool, FetchedAt: at, Jobs: make([]queue.Job, 0, len(requests))}
	for i := range requests {
		if j, ok := jobOf(&requests[i]); ok && j.FinishedAt.IsZero() {
			s.Jobs = append(s.Jobs, j)
		}
	}
	return s
}

// FinishedJobs reduces the finished job requests of an answer (those with
// a result), for the standby history.
func FinishedJobs(requests []taskagent.TaskAgentJobRequest) []queue.Job {
	var out []queue.Job
	for i := range requests {
		if j, ok := jobOf(&requests[i]); ok && !j.FinishedAt.IsZero() {
			out = append(out, j)
		}
	}
	return out
}

// jobOf is a request as plain data; false without a request id. A
// finished request (a result, or a finish time) has FinishedAt set.
func jobOf(r *taskagent.TaskAgentJobRequest) (queue.Job, bool) {
	if r.RequestId == nil {
		return queue.Job{}, false
	}
	j := queue.Job{ID: *r.RequestId, Received: r.ReceiveTime != nil && !r.ReceiveTime.Time.IsZero()}
	if r.FinishTime != nil && !r.FinishTime.Time.IsZero() {
		j.FinishedAt = r.FinishTime.Time
	} else if r.Result != nil {
		j.FinishedAt = time.Unix(0, 0) // a result without a finish time: finished, when unknown
	}
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
	if r.Definition != nil && r.Definition.Name != nil {
		j.Pipeline = *r.Definition.Name
	}
	if r.Owner != nil {
		if r.Owner.Name != nil {
			j.Run = *r.Owner.Name
		}
		j.RunURL = webLink(r.Owner.Links)
	}
	if r.JobName != nil {
		j.JobName = *r.JobName
	}
	if r.Data != nil {
		j.Public = strings.EqualFold((*r.Data)["ParallelismTag"], "Public")
	}
	if r.MatchedAgents != nil {
		for _, a := range *r.MatchedAgents {
			if a.Name != nil {
				j.MatchedAgents = append(j.MatchedAgents, *a.Name)
			}
		}
	}
	return j, true
}

// webLink is the "web" link of an Azure DevOps _links object (the run's
// page), "" when there is none or it is not an http(s) URL.
func webLink(links any) string {
	m, _ := links.(map[string]any)
	web, _ := m["web"].(map[string]any)
	href, _ := web["href"].(string)
	if u, err := url.Parse(href); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return ""
	}
	return href
}
