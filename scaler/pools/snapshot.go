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
		r := &requests[i]
		if r.Result != nil || (r.FinishTime != nil && !r.FinishTime.Time.IsZero()) || r.RequestId == nil {
			continue
		}
		j := queue.Job{ID: *r.RequestId, Received: r.ReceiveTime != nil && !r.ReceiveTime.Time.IsZero()}
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
		s.Jobs = append(s.Jobs, j)
	}
	return s
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
