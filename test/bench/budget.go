package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo"
)

// The budget workload: an organization with budgetParallel private
// parallel jobs, budgetJobs jobs queued at once on budgetPools pools, two
// ScaledJobs per pool (teams a and b, each with its own capability), played
// for budgetMinutes of simulated time with pods as KEDA and the agent
// make them: KEDA's default scaling strategy creates min(count,
// maxReplicaCount) - unfinished Jobs per poll; a pod's agent is online
// budgetStart after its Job is created, takes the oldest job it can run
// when Azure DevOps (the fake, which holds private jobs beyond the limit
// back) gives it one, runs it for budgetRun, and leaves; an agent with no
// job leaves after budgetIdle (the chart's azp.idleTimeoutSeconds).
const (
	budgetParallel = 3
	budgetPools    = 5
	budgetJobs     = 50
	budgetMinutes  = 10
	budgetStart    = 30 * time.Second
	budgetRun      = 2 * time.Minute
	budgetIdle     = 5 * time.Minute
	budgetMax      = 100 // maxReplicaCount
)

// budgetSide is one side's measurements.
type budgetSide struct {
	label, settings string
	pods            int // Jobs (pods) created within budgetMinutes
	mostAlive       int // most pods alive at once
	idleExits       int // pods that left without a job
	done            int // jobs finished within budgetMinutes
}

type budgetPod struct {
	sj       int
	created  time.Duration // simulated
	agent    int           // 0: not online yet
	online   time.Duration
	request  uint64
	assigned time.Duration
	gone     bool
}

// capLicense models KEDA pull request 7964 (enableLicenseCheck, open, not
// released): each trigger's queue length is capped at the organization's
// free parallel jobs (resourceLimit.totalCount - usedCount of
// resourceusage), read by every trigger at every poll; on a failed read it
// is not capped.
func (e *env) capLicense(ctx context.Context, org string, v int) int {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		e.fake.OrgURL(org)+"/_apis/distributedtask/resourceusage?parallelismTag=Private&poolIsHosted=false&includeRunningRequests=true", nil)
	if err != nil {
		return v
	}
	req.SetBasicAuth("", pat)
	req.Header.Set("X-TFS-FedAuthRedirect", "Suppress")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return v
	}
	defer resp.Body.Close()
	var u struct {
		ResourceLimit struct {
			TotalCount int `json:"totalCount"`
		} `json:"resourceLimit"`
		UsedCount int `json:"usedCount"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&u) != nil {
		return v
	}
	return min(v, max(0, u.ResourceLimit.TotalCount-u.UsedCount))
}

func (e *env) budget(ctx context.Context) ([]budgetSide, error) {
	const w = "budget"
	teams := []string{"teama", "teamb"}
	var pools []int
	// Every side's organization holds the same pools and jobs.
	orgs := map[string]*fakeazdo.Org{"bi-": e.org("bi-" + w), "bc-": e.org("bc-" + w), oursDefault.prefix: e.org(oursDefault.prefix + w)}
	for _, o := range orgs {
		o.SetParallelJobs(budgetParallel)
	}
	for i := range budgetPools {
		for _, prefix := range []string{"bi-", "bc-", oursDefault.prefix} {
			o := orgs[prefix]
			id := o.AddPool(fmt.Sprintf("pool-%d", i))
			if prefix == "bi-" {
				pools = append(pools, id)
			}
			for j := range budgetJobs / budgetPools {
				o.QueueJob(id, fakeazdo.Job{Demands: []string{teams[j%2]}})
			}
		}
	}
	sides := []struct {
		label, settings, prefix string
		capped                  bool
	}{
		{builtinDefault.label, "`demands: teama` or `teamb`, other settings default", "bi-", false},
		{"built-in + PR 7964 (model)", "as above, with each trigger's count capped at the free parallel jobs, read per trigger per poll (`enableLicenseCheck: true`, modelled)", "bc-", true},
		{oursDefault.label, "`capabilities: teama` or `teamb`, `--parallel-jobs auto` (the default)", oursDefault.prefix, false},
	}
	var out []budgetSide
	for _, s := range sides {
		org := orgs[s.prefix]
		var probes []probe
		var sjPool []int
		for i, pool := range pools {
			for _, team := range teams {
				name := fmt.Sprintf("%s-%d-%s", w, i, team)
				var p probe
				var err error
				if s.prefix == oursDefault.prefix {
					p, err = e.ours(ctx, oursDefault, w, name, pool, map[string]string{"capabilities": team})
				} else {
					p, err = e.builtinAt(ctx, s.prefix+w, name, pool, map[string]string{"demands": team})
				}
				if err != nil {
					closeAll(ctx, probes)
					return nil, err
				}
				probes = append(probes, p)
				sjPool = append(sjPool, pool)
			}
		}
		side, err := e.playBudget(ctx, org, s.prefix+w, probes, sjPool, teams, s.capped)
		closeAll(ctx, probes)
		if err != nil {
			return nil, err
		}
		side.label, side.settings = s.label, s.settings
		out = append(out, side)
	}
	return out, nil
}

// playBudget plays budgetMinutes of pods for one side.
func (e *env) playBudget(ctx context.Context, org *fakeazdo.Org, orgName string, probes []probe, sjPool []int, teams []string, capped bool) (budgetSide, error) {
	var s budgetSide
	var pods []*budgetPod
	start := time.Now()
	polls := int(budgetMinutes * time.Minute / simPoll)
	for i := 0; i < polls; i++ {
		now := time.Duration(i) * simPoll
		for n, p := range pods {
			if p.gone || p.agent != 0 || now-p.created < budgetStart {
				continue
			}
			p.agent = org.AddAgent(sjPool[p.sj], fakeazdo.Agent{Name: fmt.Sprintf("pod-%d", n), Online: true,
				Capabilities: map[string]string{teams[p.sj%2]: ""}})
			p.online = now
		}
		for _, pool := range dedupe(sjPool) {
			for req, agent := range org.Dispatch(pool) {
				for _, p := range pods {
					if p.agent == agent && !p.gone {
						p.request, p.assigned = req, now
					}
				}
			}
		}
		alive := 0
		for _, p := range pods {
			switch {
			case p.gone || p.agent == 0:
			case p.request != 0 && now-p.assigned >= budgetRun:
				if err := org.FinishJob(p.request, "succeeded"); err != nil {
					return s, err
				}
				s.done++
				p.gone = true
			case p.request == 0 && now-p.online >= budgetIdle:
				s.idleExits++
				p.gone = true
			}
			if p.gone {
				_ = org.RemoveAgent(sjPool[p.sj], p.agent)
			}
		}
		for sj, pr := range probes {
			v, err := pr.value(ctx)
			if err != nil {
				return s, err
			}
			if capped {
				v = e.capLicense(ctx, orgName, v)
			}
			unfinished := 0
			for _, p := range pods {
				if p.sj == sj && !p.gone {
					unfinished++
				}
			}
			for range min(v, budgetMax) - unfinished {
				pods = append(pods, &budgetPod{sj: sj, created: now})
				s.pods++
			}
		}
		for _, p := range pods {
			if !p.gone {
				alive++
			}
		}
		s.mostAlive = max(s.mostAlive, alive)
		sleepUntil(start.Add(time.Duration(i+1) * *tick))
	}
	return s, nil
}

func dedupe(ids []int) []int {
	var out []int
	seen := map[int]bool{}
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}
