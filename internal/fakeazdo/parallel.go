package fakeazdo

import (
	"net/http"
	"sort"
	"strings"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
)

// unlimitedParallelJobs is what resourceusage reports for a tag without a
// limit (public projects' self-hosted jobs, and the fake's default).
const unlimitedParallelJobs = 10000

// SetParallelJobs sets the organization's private self-hosted parallel
// jobs (0: no limit). A private job beyond them stays queued, assigned to
// no agent, until a running one finishes, as Azure DevOps keeps it ("not
// running because you have reached the maximum number of requests that can
// run for parallelism type 'Private'").
func (o *Org) SetParallelJobs(n int) {
	o.server.mu.Lock()
	defer o.server.mu.Unlock()
	o.parallelJobs = n
	for _, p := range o.pools {
		o.dispatchLocked(p)
	}
}

// ResetMostRunning starts MostRunning again from the jobs running now.
func (o *Org) ResetMostRunning() {
	o.server.mu.Lock()
	defer o.server.mu.Unlock()
	o.mostRunning = len(o.runningLocked(false))
}

// MostRunning is the most private jobs that ran at once since the
// organization was made or ResetMostRunning.
func (o *Org) MostRunning() int {
	o.server.mu.Lock()
	defer o.server.mu.Unlock()
	return o.mostRunning
}

func tagOf(public bool) string {
	if public {
		return "Public"
	}
	return "Private"
}

func isPublic(r *taskagent.TaskAgentJobRequest) bool {
	return r.Data != nil && strings.EqualFold((*r.Data)["ParallelismTag"], "Public")
}

// runningLocked lists the requests that hold a parallel job of a tag: in
// this fake, those assigned to an agent and not finished.
func (o *Org) runningLocked(public bool) []taskagent.TaskAgentJobRequest {
	var out []taskagent.TaskAgentJobRequest
	for _, id := range o.poolIDsLocked() {
		for _, r := range o.pools[id].requests {
			if r.Result == nil && r.ReservedAgent != nil && isPublic(r) == public {
				out = append(out, *r)
			}
		}
	}
	return out
}

// parallelJobFreeLocked reports whether r may be assigned an agent now.
func (o *Org) parallelJobFreeLocked(r *taskagent.TaskAgentJobRequest) bool {
	return isPublic(r) || o.parallelJobs <= 0 || len(o.runningLocked(false)) < o.parallelJobs
}

// noteRunningLocked records how many private jobs run, after an assignment.
func (o *Org) noteRunningLocked() {
	o.mostRunning = max(o.mostRunning, len(o.runningLocked(false)))
}

func (o *Org) poolIDsLocked() []int {
	ids := make([]int, 0, len(o.pools))
	for id := range o.pools {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	return ids
}

// resourceUsage answers GET _apis/distributedtask/resourceusage: the
// parallel jobs of a tag, how many are in use, and (includeRunningRequests)
// the requests that use them. Hosted pools are not modelled: their limit is
// 0.
func (o *Org) resourceUsage(q queryValues) (int, []byte) {
	public := strings.EqualFold(q.Get("parallelismtag"), "Public")
	hosted := strings.EqualFold(q.Get("poolishosted"), "true")
	total := o.parallelJobs
	if total == 0 || public {
		total = unlimitedParallelJobs
	}
	if hosted {
		total = 0
	}
	var running []taskagent.TaskAgentJobRequest
	if !hosted {
		running = o.runningLocked(public)
	}
	u := taskagent.ResourceUsage{
		ResourceLimit: &taskagent.ResourceLimit{ParallelismTag: ptr(tagOf(public)), IsHosted: ptr(hosted), IsPremium: ptr(false),
			TotalCount: ptr(total), TotalMinutes: ptr(0), FailedToReachAllProviders: ptr(false),
			ResourceLimitsData: &map[string]string{}},
		UsedCount:   ptr(len(running)),
		UsedMinutes: ptr(0),
	}
	if strings.EqualFold(q.Get("includerunningrequests"), "true") {
		u.RunningRequests = &running
	}
	return marshal(http.StatusOK, u)
}
