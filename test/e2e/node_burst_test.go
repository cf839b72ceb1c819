//go:build e2e && node

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo"
)

// Node scenario 6: three overlapping templates (plain, docker, gpu) and a
// burst of mixed jobs. Every job finishes, each on a pod of its own
// template, with one pod per queued job, and every pod ends. Azure DevOps
// hands a free agent the oldest job it can run, so without the scaler's
// hold (--hold-behind-older) a docker or gpu pod free first would take an
// older plain job and leave a plain pod without one.
func TestNodeBurstOverThreeTemplates(t *testing.T) {
	ns := "e2e-node-burst"
	pool := env.contoso.AddPool("node-burst")
	scaler := nodeScaler(t, "node-burst-scaler", ns)
	templates := map[string]string{
		"plain":  "Agent.OS=Linux",
		"docker": "Agent.OS=Linux,docker",
		"gpu":    "Agent.OS=Linux,docker,gpu",
	}
	for name, caps := range templates {
		values := nodePoolValues(scaler, "node-burst", map[string]any{"capabilities": caps})
		values["azp"].(map[string]any)["idleTimeoutSeconds"] = 20
		if name == "plain" {
			values["dind"].(map[string]any)["enabled"] = false
		}
		helmInstall(t, "azdo-agent-pool", ns, name, values)
	}
	waitReconciled(t, ns, "plain", "docker", "gpu")

	demands := map[string][]string{
		"plain":  {"Agent.OS -equals Linux"},
		"docker": {"Agent.OS -equals Linux", "docker"},
		"gpu":    {"Agent.OS -equals Linux", "docker", "gpu"},
	}
	// Mixed, as pipelines queue them.
	order := []string{"plain", "docker", "plain", "gpu", "docker", "plain"}
	ids := map[uint64]string{}
	for i, kind := range order {
		id := env.contoso.QueueJob(pool, fakeazdo.Job{Name: fmt.Sprintf("%s-%d", kind, i), Demands: demands[kind], Script: "sleep 3"})
		ids[id] = kind
	}
	waitFor(t, "every job to finish", 3*time.Minute, func() bool {
		for id := range ids {
			if _, ok := env.contoso.JobResult(id); !ok {
				return false
			}
		}
		return true
	})
	// Who ran what, and how long each kind waited for its agent.
	var crossTakes []string
	waits := map[string]time.Duration{}
	for id, kind := range ids {
		if r, _ := env.contoso.JobResult(id); r != "succeeded" {
			t.Fatalf("job %d (%s) ended %q", id, kind, r)
		}
		agent, _ := env.contoso.JobAgent(id)
		if !strings.HasPrefix(agent, kind+"-") {
			crossTakes = append(crossTakes, fmt.Sprintf("job %d (%s) by %s", id, kind, agent))
		}
		if w, ok := env.contoso.JobWait(id); ok {
			waits[kind] = max(waits[kind], w.Round(100*time.Millisecond))
		}
	}
	// Pods that found no job leave at the idle timeout (20 s).
	waitFor(t, "every pod to end", 2*time.Minute, func() bool {
		for name := range templates {
			for _, p := range podsOf(t, ns, name) {
				if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
					return false
				}
			}
		}
		return true
	})
	holdFor := 3 * pollingInterval
	time.Sleep(holdFor) // no late Job for jobs that are done
	pods, perTemplate := 0, map[string]int{}
	for name := range templates {
		n := len(podsOf(t, ns, name))
		perTemplate[name] = n
		pods += n
	}
	if pods != len(order) || len(crossTakes) > 0 {
		t.Fatalf("%d pods for %d jobs (per template %v), want one per job; jobs taken by another template's pod: %v",
			pods, len(order), perTemplate, crossTakes)
	}
	record("N6 burst of 6 mixed jobs over 3 templates (plain, docker, gpu): all succeeded, each on a pod of its own template; %d pods (%v), %.2f per queued job; longest wait for an agent: plain %s, docker %s, gpu %s; every pod ended",
		pods, perTemplate, float64(pods)/float64(len(order)), waits["plain"], waits["docker"], waits["gpu"])
}
