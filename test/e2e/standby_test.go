//go:build e2e

package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo"
)

// Scenario 21 (issue #27): warm standby on a schedule. A window that keeps
// 2 standby agents is open now and closes within about two minutes. While
// it is open and no job waits, exactly 2 idle Jobs run and stay past their
// idle timeout (each asks the scaler and is kept); a job takes one of them
// at once and KEDA starts exactly one replacement; when the window closes
// the standby pods leave and no Job is started again.
func TestStandbySchedule(t *testing.T) {
	ns := "e2e-standby"
	pool := env.contoso.AddPool("standby")
	cs := startClusterScaler(t, "scaler-standby")
	now := time.Now().UTC()
	from := now.Add(-2 * time.Minute)
	until := now.Add(90 * time.Second).Truncate(time.Minute).Add(time.Minute) // 90 to 150 s from now
	window := fmt.Sprintf("Mon-Sun %s-%s=2", from.Format("15:04"), until.Format("15:04"))
	caps := map[string]string{"Agent.OS": "Linux"}
	vals := poolValues("contoso", "standby", map[string]any{"capabilities": "Agent.OS=Linux"})
	vals["scaler"].(map[string]any)["address"] = cs.Addr
	idleTimeout := 3 * time.Second
	vals["azp"].(map[string]any)["idleTimeoutSeconds"] = int(idleTimeout / time.Second)
	vals["standby"] = map[string]any{"schedule": window, "timeZone": "UTC", "checkSeconds": 1,
		"url": "http://" + cs.StandbyAddr + "/api/v1/standby"}
	helmInstall(t, "azdo-agent-pool", ns, "warm", vals)
	waitReconciled(t, ns, "warm")
	sim := &podSim{ns: ns, pods: true, org: env.contoso, pool: pool, caps: map[string]map[string]string{"warm": caps},
		startDelay: time.Second, runFor: 3 * time.Second}
	startPodSim(t, sim)

	// The window is open: exactly 2 idle agents, kept past their idle timeout.
	waitFor(t, "2 standby agents online", time.Minute, func() bool { idle, _ := sim.unfinishedAgents(); return idle == 2 })
	hold := 3*idleTimeout + 2*pollingInterval
	for end := time.Now().Add(hold); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		created, idleExits, _ := sim.counts()
		if idle, busy := sim.unfinishedAgents(); created != 2 || idleExits != 0 || busy != 0 || idle != 2 {
			t.Fatalf("window open, no job: %d Jobs created, %d idle exits, %d idle and %d busy agents; want exactly 2 idle Jobs that stay", created, idleExits, idle, busy)
		}
	}
	sim.mu.Lock()
	kept := sim.standbyStay
	sim.mu.Unlock()
	if kept == 0 {
		t.Fatal("no agent asked the scaler and was kept: the hold proves nothing")
	}

	// A job takes a standby agent at once; KEDA starts one replacement.
	queued := time.Now()
	req := env.contoso.QueueJob(pool, fakeazdo.Job{Demands: []string{"Agent.OS -equals Linux"}})
	var waited time.Duration
	waitFor(t, "a standby agent to take the job", 10*time.Second, func() bool {
		_, _, ranBy := sim.counts()
		if ranBy[req] != "" && waited == 0 {
			waited = time.Since(queued)
		}
		return ranBy[req] != ""
	})
	waitFor(t, "one replacement Job", 30*time.Second, func() bool { created, _, _ := sim.counts(); return created == 3 })
	waitFor(t, "the job to finish and 2 idle agents again", 30*time.Second, func() bool {
		idle, busy := sim.unfinishedAgents()
		return idle == 2 && busy == 0 && len(env.contoso.UnfinishedJobs(pool)) == 0
	})
	holdJobs(t, ns, "warm", 3, 2*pollingInterval) // no more Jobs than the replacement

	// The status page's JSON and the metrics show it: 2 wanted, 2 ready,
	// 1 job that found an agent ready.
	why := ""
	waitFor(t, "the status page to show the standby", 20*time.Second, func() bool {
		page := cs.jobsPage("standby")
		if page == nil || len(page.Pools) != 1 || len(page.Pools[0].Triggers) != 1 {
			return false
		}
		v := page.Pools[0].Triggers[0].Standby
		if v != nil {
			why = v.Why
		}
		return v != nil && v.Wanted == 2 && v.Ready == 2 && v.Used == 1
	})
	if used, err := cs.Metric("azdo_keda_scaler_standby_used_total", `scaledjob="warm"`); err != nil || used != 1 {
		t.Errorf("azdo_keda_scaler_standby_used_total %v (%v), want 1", used, err)
	}

	// The window closes: the standby pods leave, and KEDA starts none.
	waitFor(t, "the window to close and the standby agents to leave", time.Until(until)+30*time.Second, func() bool {
		idle, busy := sim.unfinishedAgents()
		return time.Now().After(until) && idle == 0 && busy == 0
	})
	left := time.Since(until)
	holdJobs(t, ns, "warm", 3, 3*pollingInterval)
	created, idleExits, _ := sim.counts()
	if created != 3 || idleExits != 2 {
		t.Errorf("%d Jobs created and %d idle exits; want 3 (2 standby, 1 replacement) and the 2 standby pods leaving", created, idleExits)
	}
	record("21 standby schedule %q (%s): 2 idle Jobs kept past a %s idle timeout (asked %d times, all kept), the job found an agent in %s, 1 replacement Job, the 2 standby pods left %s after the window closed, %d Jobs in all",
		window, why, idleTimeout, kept, waited.Round(100*time.Millisecond), left.Round(100*time.Millisecond), created)
}
