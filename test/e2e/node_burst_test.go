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
// burst of mixed jobs. Every job finishes; the pods are one per queued job
// unless an agent of another template took a job first (Azure DevOps hands
// a job to whichever capable agent asks first; the scaler counts jobs, it
// cannot choose agents), each such job costing at most one more pod; and
// every pod that found no job leaves at its idle timeout.
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
	// Who ran what: a job run by a pod of another template than its own.
	crossTakes := 0
	for id, kind := range ids {
		if r, _ := env.contoso.JobResult(id); r != "succeeded" {
			t.Fatalf("job %d (%s) ended %q", id, kind, r)
		}
		agent, _ := env.contoso.JobAgent(id)
		if !strings.HasPrefix(agent, kind+"-") {
			crossTakes++
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
	// One pod per job; a job taken by another template's pod leaves one
	// pod without a job (it leaves at its idle timeout) and may cost one
	// more for the job that pod was started for.
	if (crossTakes == 0 && pods != len(order)) || pods > len(order)+crossTakes {
		t.Fatalf("%d pods for %d jobs, %d taken by another template's pod: want %d plus at most one per such job (per template %v)",
			pods, len(order), crossTakes, len(order), perTemplate)
	}
	record("N6 burst of 6 mixed jobs over 3 templates (plain, docker, gpu): all succeeded; %d pods (%v), %.2f per queued job, %d jobs taken first by another template's pod; every pod ended (idle ones at the 20s idle timeout)",
		pods, perTemplate, float64(pods)/float64(len(order)), crossTakes)
}
