//go:build e2e

package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo"
)

// Scenario 20: one parallel-job budget per organization. The organization
// has 2 private parallel jobs; 6 jobs wait on two ScaledJobs of a pool.
// The scaler reads the budget from Azure DevOps (the fake's resourceusage,
// --parallel-jobs auto) and lets only the oldest jobs that can get a
// parallel job count: never more than 2 Jobs at once, all 6 jobs finish,
// and no pod leaves idle (a pod started for a job beyond the budget would).
func TestParallelJobBudget(t *testing.T) {
	ns := "e2e-budget"
	pool := env.contoso.AddPool("budget")
	env.contoso.SetParallelJobs(2)
	env.contoso.ResetMostRunning()
	t.Cleanup(func() { env.contoso.SetParallelJobs(0) })
	templates := map[string]string{"plain": "Agent.OS=Linux", "docker": "Agent.OS=Linux,docker"}
	caps := map[string]map[string]string{}
	for name, c := range templates {
		vals := poolValues("contoso", "budget", map[string]any{"capabilities": c})
		vals["azp"].(map[string]any)["idleTimeoutSeconds"] = 8
		helmInstall(t, "azdo-agent-pool", ns, name, vals)
		caps[name] = map[string]string{}
		for _, kv := range strings.Split(c, ",") {
			k, v, _ := strings.Cut(kv, "=")
			caps[name][k] = v
		}
	}
	waitReconciled(t, ns, "plain", "docker")
	sim := &podSim{ns: ns, org: env.contoso, pool: pool, caps: caps, startDelay: time.Second, runFor: 3 * time.Second}
	startPodSim(t, sim)

	plain := fakeazdo.Job{Demands: []string{"Agent.OS -equals Linux"}}
	docker := fakeazdo.Job{Demands: []string{"Agent.OS -equals Linux", "docker"}}
	start := time.Now()
	for _, j := range []fakeazdo.Job{plain, docker, plain, docker, plain, docker} {
		env.contoso.QueueJob(pool, j)
	}
	waitFor(t, "all 6 jobs to finish and every pod to end", 3*time.Minute, func() bool {
		return len(env.contoso.UnfinishedJobs(pool)) == 0 && !sim.busy()
	})
	took := time.Since(start)
	created, idle, ranBy := sim.counts()
	sim.mu.Lock()
	most := sim.mostUnfinished
	sim.mu.Unlock()
	if len(ranBy) != 6 || created != 6 || idle != 0 {
		t.Fatalf("%d jobs ran, %d Jobs created, %d pods left idle; want 6, 6 and 0", len(ranBy), created, idle)
	}
	if most > 2 || env.contoso.MostRunning() > 2 {
		t.Fatalf("%d Jobs unfinished at once, %d jobs ran at once; the budget is 2", most, env.contoso.MostRunning())
	}
	record("20 one parallel-job budget per organization: 2 parallel jobs, 6 jobs on two ScaledJobs -> 6 Jobs, at most %d unfinished at once, "+
		"at most %d jobs running at once, 0 idle exits, all done in %s", most, env.contoso.MostRunning(), took.Round(time.Second))
}
