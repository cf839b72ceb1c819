//go:build e2e && node

package e2e

import (
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo"
)

// Node scenario 7: a container job (YAML `container:`). The stand-in agent
// plays the agent's container flow through the pod's docker CLI and the
// pool chart's Docker-in-Docker sidecar: the sidecar's daemon pulls the
// job's image from a private registry (HTTPS, its CA in the daemon's
// certs.d), makes the job's network, starts the container with the agent's
// work directory and externals bind-mounted from the daemon's side (so the
// sidecar must see them at the agent's paths), runs the user set-up, and
// runs the step in the container as the agent's UID. The step's file lands
// in the agent's sources directory, owned by the agent.
func TestNodeContainerJob(t *testing.T) {
	ns, pool, _ := nodePool(t, "container", nil)
	tl := &timeline{start: time.Now()}
	id := env.contoso.QueueJob(pool, fakeazdo.Job{Name: "InContainer", Demands: linuxJob.Demands, Container: theNode.jobImage,
		Script: `set -e; echo "image: $(cat /etc/e2e-job-image)"; echo "uid $(id -u) in $(pwd)"; echo built > out.txt; ls -ln out.txt`})
	agent := takenBy(t, id, 2*time.Minute)
	tl.mark("job taken by " + agent)
	result := awaitJob(t, "the container job's result", 2*time.Minute, func() (string, bool) { return env.contoso.JobResult(id) })
	tl.mark("job " + result)
	waitFor(t, "the pod to complete", time.Minute, func() bool {
		p, ok := getPod(t, ns, agent)
		return ok && p.Status.Phase == corev1.PodSucceeded
	})
	tl.mark("pod Completed")
	logs := podLogs(t, ns, agent, "agent")
	if result != "succeeded" {
		t.Fatalf("container job %s, want succeeded; timeline: %s; the agent's log:\n%s", result, tl, logs)
	}
	if !slices.Contains(theNode.registry.pulled(), jobImageName) {
		t.Errorf("the registry served no pull of %s (pulls: %v)", jobImageName, theNode.registry.pulled())
	}
	for _, want := range []string{
		"docker pull " + theNode.jobImage,                  // the daemon pulled it
		"docker network create --label ",                   // the job's network
		":/__e:ro ",                                        // the externals, read-only
		"image: " + jobImageName,                           // the step ran in the job's image
		"uid 1000 in /__w/1/s",                             // as the agent's UID, in the sources directory
		"Stop and remove container: ",                      // and the container removed at the end
		"docker network rm vsts_network_",                  //
		"Job InContainer completed with result: succeeded", //
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("the agent's log lacks %q:\n%s", want, logs)
		}
	}
	// What the step wrote is the agent's (UID and GID 1000), where the agent
	// sees its work directory.
	if !regexp.MustCompile(`(?m)^-\S+ +\d+ +1000 +1000 .*out\.txt$`).MatchString(logs) {
		t.Errorf("out.txt is not owned by the agent's UID and GID 1000:\n%s", logs)
	}
	record("N7 container job on a real node: %s; image pulled from the registry by the dind sidecar, step ran in it as UID 1000 in /__w/1/s", tl)
}
