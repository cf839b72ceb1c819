package agent

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo"
)

// fakeDocker is a docker CLI that records each call and answers as a Docker
// daemon with nothing on it would; `docker exec ... bash ... /__w/...`
// runs the file on this side, at the path the create call mounted there.
const fakeDocker = `#!/usr/bin/env bash
printf '%s\n' "$*" >> "$DOCKER_LOG"
case "$1" in
  version) echo 1.41 ;;
  ps) [[ "$*" == *status=running* ]] && echo "c0ffee Up 1 second" ;;
  create) echo c0ffee ;;
  inspect) echo "" ;;
  exec)
    shift
    while [[ "$1" == -* ]]; do
      case "$1" in -i) shift ;; *) shift 2 ;; esac
    done
    shift # the container
    case "$*" in
      "bash -c getent passwd"*) ;;
      "bash -c cat /etc/group") echo "root:x:0:" ;;
      "bash --noprofile --norc /__w/"*)
        file=${!#}
        cd "$AZP_WORK/1/s" && exec bash --noprofile --norc "$AZP_WORK/${file#/__w/}" ;;
    esac ;;
esac
exit 0
`

// containerStandin is a stand-in agent whose docker is fakeDocker and whose
// stat answers statOut for the Docker socket (or fails when it is empty).
func containerStandin(t *testing.T, statOut string) (*standin, string) {
	t.Helper()
	s := newStandin(t)
	bin := t.TempDir()
	log := filepath.Join(bin, "docker.log")
	must(t, os.WriteFile(filepath.Join(bin, "docker"), []byte(fakeDocker), 0o755))
	stat := "#!/usr/bin/env bash\nexit 1\n"
	if statOut != "" {
		stat = "#!/usr/bin/env bash\n[[ \"$*\" == '-c %g /var/run/docker.sock' ]] && echo " + statOut + "\n"
	}
	must(t, os.WriteFile(filepath.Join(bin, "stat"), []byte(stat), 0o755))
	for i, kv := range s.env {
		if strings.HasPrefix(kv, "PATH=") {
			s.env[i] = "PATH=" + bin + ":" + strings.TrimPrefix(kv, "PATH=")
		}
	}
	s.env = append(s.env, "DOCKER_LOG="+log)
	return s, log
}

// A container job: the stand-in plays the agent's docker commands, in the
// agent's order, with the agent's mounts, and runs the step in the
// container through docker exec as the agent's UID.
func TestStandinAgentRunsAContainerJob(t *testing.T) {
	s, log := containerStandin(t, "998")
	s.register()
	id := s.org.QueueJob(s.poolID, fakeazdo.Job{Name: "InContainer", Container: "registry.example/build:1",
		Script: `echo "in the container" > proof.txt`})
	if err := s.start("run", "AZP_IDLE_TIMEOUT=30").Wait(); err != nil {
		t.Fatalf("start.sh run: %v\n%s", err, s.out.String())
	}
	if r, ok := s.org.JobResult(id); !ok || r != "succeeded" {
		t.Fatalf("job result %q (%v), want succeeded:\n%s", r, ok, s.out.String())
	}
	work, agentDir := envValue(s.env, "AZP_WORK"), envValue(s.env, "AZP_AGENT_DIR")
	if b, err := os.ReadFile(filepath.Join(work, "1", "s", "proof.txt")); err != nil || strings.TrimSpace(string(b)) != "in the container" {
		t.Errorf("the step wrote %q (%v) in the sources directory", b, err)
	}
	b, err := os.ReadFile(log)
	must(t, err)
	calls := strings.Split(strings.TrimSpace(string(b)), "\n")
	uid := os.Getuid()
	// The order of the agent's ContainerOperationProvider; a call is
	// matched by its start (names and ids are random).
	want := []string{
		"version --format {{.Server.APIVersion}}",
		"version --format {{.Client.APIVersion}}",
		"ps --all --quiet --no-trunc --filter label=",
		"network prune --force --filter label=",
		"pull registry.example/build:1",
		"network create --label ",
		"inspect --format {{index .Config.Labels \"com.azure.dev.pipelines.agent.handler.node.path\"}} registry.example/build:1",
		"create --name build_",
		"start c0ffee",
		"ps --all --filter id=c0ffee --filter status=running",
		"exec c0ffee sh -c command -v bash",
		"exec c0ffee bash -c getent passwd " + strconv.Itoa(uid),
		"exec c0ffee useradd -m -u " + strconv.Itoa(uid) + " ",
		"exec c0ffee groupadd azure_pipelines_sudo",
		"exec c0ffee usermod -a -G azure_pipelines_sudo ",
		"exec c0ffee su -c echo '%azure_pipelines_sudo ALL=(ALL:ALL) NOPASSWD:ALL' >> /etc/sudoers",
		"exec c0ffee bash -c cat /etc/group",
		"exec c0ffee groupadd -g 998 azure_pipelines_docker",
		"exec c0ffee usermod -a -G azure_pipelines_docker ",
		"exec -i -u " + strconv.Itoa(uid) + " -w /__w/1/s c0ffee bash --noprofile --norc /__w/_temp/",
		"rm --force c0ffee",
		"network rm vsts_network_",
	}
	if len(calls) != len(want) {
		t.Fatalf("%d docker calls, want %d:\n%s", len(calls), len(want), b)
	}
	for i, w := range want {
		if !strings.HasPrefix(calls[i], w) {
			t.Errorf("docker call %d: %q, want it to start with %q", i+1, calls[i], w)
		}
	}
	// The mounts: the agent's directories at the container's fixed paths,
	// the externals read-only, node from the externals as the command.
	for _, m := range []string{
		"-v " + work + "/1:/__w/1 ", "-v " + work + "/_temp:/__w/_temp ", "-v " + work + "/_tasks:/__w/_tasks ",
		"-v " + work + "/_tool:/__t ", "-v " + agentDir + "/externals:/__e:ro ", "-v " + work + "/.taskkey:/__w/.taskkey ",
		"registry.example/build:1 /__e/node/bin/node -e setInterval(",
	} {
		if !strings.Contains(calls[7], m) {
			t.Errorf("docker create lacks %q:\n%s", m, calls[7])
		}
	}
}

// The agent gives the container's user the group of /var/run/docker.sock;
// without that socket the container job fails, unless
// VSTS_SETUP_DOCKERGROUP=false (what the pool chart sets: its socket is
// elsewhere).
func TestStandinAgentContainerJobNeedsTheDockerSocketOrTheKnob(t *testing.T) {
	for _, c := range []struct {
		knob, want string
	}{{"VSTS_SETUP_DOCKERGROUP=true", "failed"}, {"VSTS_SETUP_DOCKERGROUP=false", "succeeded"}} {
		s, log := containerStandin(t, "")
		s.register()
		id := s.org.QueueJob(s.poolID, fakeazdo.Job{Name: "InContainer", Container: "registry.example/build:1", Script: "true"})
		if err := s.start("run", "AZP_IDLE_TIMEOUT=30", c.knob).Wait(); err != nil {
			t.Fatalf("start.sh run: %v\n%s", err, s.out.String())
		}
		if r, ok := s.org.JobResult(id); !ok || r != c.want {
			t.Errorf("with %q: job result %q (%v), want %s:\n%s", c.knob, r, ok, c.want, s.out.String())
		}
		b, _ := os.ReadFile(log)
		// Whatever the result, the container and its network are gone.
		if !strings.Contains(string(b), "rm --force c0ffee") || !strings.Contains(string(b), "network rm vsts_network_") {
			t.Errorf("with %q: the container or its network was left:\n%s", c.knob, b)
		}
	}
}
