package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A container job, as the agent's ContainerOperationProvider runs one on
// Linux (azure-pipelines-agent, src/Agent.Worker/ContainerOperationProvider.cs
// and Container/DockerCommandManager.cs): the same docker commands in the
// same order, the same mounts at the same container paths, the same user
// set-up. This is what a pod template must serve for container jobs to
// work, so the stand-in does it for real through the pod's docker CLI:
//   - the agent refuses when /proc/1/cgroup says it runs in a Docker
//     container (a Kubernetes pod does not say so);
//   - docker version: server and client API 1.35 or later;
//   - stale containers and networks of this agent (by its label) removed;
//   - docker pull, 3 tries, unless the container resource says localimage;
//   - a network vsts_network_<guid> for the job;
//   - docker create with the agent's work, temp, tasks, tools and
//     externals directories bind-mounted at /__w, /__t and /__e, and the
//     image's node label or externals' node kept running as its command:
//     the Docker daemon (the pod's sidecar) must see those paths with the
//     agent's files in them;
//   - bash in the image; a user with the agent's UID (found or made with
//     useradd), in a passwordless sudo group; and, unless
//     VSTS_SETUP_DOCKERGROUP=false, in a group with the GID of
//     /var/run/docker.sock on the agent's side;
//   - each step: docker exec -i -u <uid> -w /__w/1/s <container>, the
//     step's script written to the temp directory and run with bash (the
//     agent runs its CmdLine task with the externals' node, which runs
//     bash on such a file);
//   - docker rm --force and docker network rm at the end.
// Not played: service containers, port mappings, registry logins,
// options and environment of the resource, Windows containers.

// nodePathLabel is the image label that names the image's own Node.js.
const nodePathLabel = "com.azure.dev.pipelines.agent.handler.node.path"

// containerRoots are the agent's directories as the container sees them.
type containerRoots struct {
	root, work, externals, tools string
}

// jobContainer is a running job container.
type jobContainer struct {
	roots   containerRoots
	id      string
	network string
	uid     string
	label   string
}

// toContainer translates an agent path to its path in the container, as
// the agent's ContainerInfo does on Linux: the tools first, as they may be
// inside the work directory.
func (r containerRoots) toContainer(p string) string {
	for _, m := range [][2]string{{r.tools, "/__t"}, {r.work, "/__w"}, {r.externals, "/__e"}} {
		if p == m[0] {
			return m[1]
		}
		if rest, ok := strings.CutPrefix(p, m[0]+"/"); ok {
			return m[1] + "/" + rest
		}
	}
	return p
}

// docker runs a docker command as the agent does: the command line printed
// as ##[command], its output to the job's log (and returned).
func docker(args ...string) (string, error) {
	fmt.Printf("##[command]/usr/bin/docker %s\n", strings.Join(args, " "))
	var out bytes.Buffer
	cmd := exec.Command("docker", args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	os.Stdout.Write(out.Bytes())
	if err != nil {
		return out.String(), fmt.Errorf("docker %s: %w", args[0], err)
	}
	return out.String(), nil
}

// local runs a command on the agent's side, as the agent's
// ExecuteCommandAsync does (exit code 0 required).
func local(name string, args ...string) (string, error) {
	fmt.Printf("##[command]%s %s\n", name, strings.Join(args, " "))
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(line)
}

var apiVersionPattern = regexp.MustCompile(`(\d+)\.(\d+)`)

// atLeast135 says whether a Docker API version is 1.35 or later.
func atLeast135(v string) bool {
	m := apiVersionPattern.FindStringSubmatch(v)
	if m == nil {
		return false
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	return major > 1 || (major == 1 && minor >= 35)
}

func newGUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// startJobContainer makes the job's container ready for its steps.
func startJobContainer(roots containerRoots, image string, localImage bool) (*jobContainer, error) {
	if cg, err := os.ReadFile("/proc/1/cgroup"); err == nil && strings.Contains(string(cg), ":/docker/") {
		return nil, errors.New("the agent runs inside a Docker container: container jobs are not supported there")
	}
	for _, side := range []string{"Server", "Client"} {
		out, err := docker("version", "--format", "{{."+side+".APIVersion}}")
		if err != nil {
			return nil, err
		}
		if v := firstLine(out); !atLeast135(v) {
			return nil, fmt.Errorf("docker %s API version %q: 1.35 or later required", strings.ToLower(side), v)
		}
	}
	sum := sha256.Sum256([]byte(strings.ToLower(roots.root))) // the agent's IOUtil.GetPathHash
	c := &jobContainer{roots: roots, label: hex.EncodeToString(sum[:])[:6], network: "vsts_network_" + newGUID()}
	stale, err := docker("ps", "--all", "--quiet", "--no-trunc", "--filter", "label="+c.label)
	if err != nil {
		return nil, err
	}
	for _, id := range strings.Fields(stale) {
		_, _ = docker("rm", "--force", id)
	}
	_, _ = docker("network", "prune", "--force", "--filter", "label="+c.label)
	if !localImage {
		var pullErr error
		for try := 1; try <= 3; try++ {
			if _, pullErr = docker("pull", image); pullErr == nil {
				break
			}
			if try < 3 {
				fmt.Printf("##[warning]Docker pull failed (%v), retrying\n", pullErr)
				time.Sleep(time.Duration(try) * time.Second)
			}
		}
		if pullErr != nil {
			return nil, pullErr
		}
	}
	if _, err := docker("network", "create", "--label", c.label, c.network); err != nil {
		return nil, err
	}
	for _, d := range []string{filepath.Join(roots.work, "1", "s"), filepath.Join(roots.work, "_temp"), filepath.Join(roots.work, "_tasks"), roots.tools} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return c, err
		}
	}
	taskKey := filepath.Join(roots.work, ".taskkey")
	if _, err := os.Stat(taskKey); err != nil {
		if err := os.WriteFile(taskKey, nil, 0o600); err != nil {
			return c, err
		}
	}
	node, _ := docker("inspect", "--format", fmt.Sprintf("{{index .Config.Labels %q}}", nodePathLabel), image)
	node = firstLine(node)
	if node == "" || strings.Contains(node, "no value") {
		node = roots.toContainer(filepath.Join(roots.externals, "node", "bin", "node"))
	}
	args := []string{"create", "--name", "build_" + newGUID()[:6], "--label", c.label, "--network", c.network}
	for _, m := range []struct {
		host     string
		readOnly bool
	}{
		{filepath.Join(roots.work, "1"), false},
		{filepath.Join(roots.work, "_temp"), false},
		{filepath.Join(roots.work, "_tasks"), false},
		{roots.tools, false},
		{roots.externals, true},
		{taskKey, false},
	} {
		v := m.host + ":" + roots.toContainer(m.host)
		if m.readOnly {
			v += ":ro"
		}
		args = append(args, "-v", v)
	}
	args = append(args, image, node, "-e", "setInterval(function(){}, 24 * 60 * 60 * 1000);")
	out, err := docker(args...)
	if err != nil {
		return c, err
	}
	c.id = firstLine(out)
	if _, err := docker("start", c.id); err != nil {
		return c, err
	}
	if ps, _ := docker("ps", "--all", "--filter", "id="+c.id, "--filter", "status=running", "--no-trunc", "--format", "{{.ID}} {{.Status}}"); !strings.HasPrefix(firstLine(ps), c.id) {
		_, _ = docker("logs", "--details", c.id)
		fmt.Printf("##[warning]Docker container %s is not in running state.\n", c.id)
	}
	return c, c.setUpUser()
}

// setUpUser gives the job's steps a user with the agent's UID, as the agent
// does, so that what they write in the work directory is the agent's.
func (c *jobContainer) setUpUser() error {
	if _, err := docker("exec", c.id, "sh", "-c", "command -v bash"); err != nil {
		return fmt.Errorf("the job container has no bash: %w", err)
	}
	name, err := local("whoami")
	if err != nil {
		return err
	}
	if c.uid, err = local("id", "-u", name); err != nil {
		return err
	}
	user := ""
	out, err := docker("exec", c.id, "bash", "-c", "getent passwd "+c.uid+" | cut -d: -f1 ")
	if err != nil {
		return err
	}
	for _, candidate := range strings.Fields(out) {
		if _, err := docker("exec", c.id, "id", "-u", candidate); err == nil {
			user = candidate
			break
		}
	}
	if user == "" {
		user = name
		if len(user) > 32-len("_azpcontainer") {
			user = user[:32-len("_azpcontainer")]
		}
		user += "_azpcontainer"
		if _, err := docker("exec", c.id, "useradd", "-m", "-u", c.uid, user); err != nil {
			return err
		}
	}
	for _, cmd := range [][]string{
		{"groupadd", "azure_pipelines_sudo"},
		{"usermod", "-a", "-G", "azure_pipelines_sudo", user},
		{"su", "-c", "echo '%azure_pipelines_sudo ALL=(ALL:ALL) NOPASSWD:ALL' >> /etc/sudoers"},
	} {
		if _, err := docker(append([]string{"exec", c.id}, cmd...)...); err != nil {
			return err
		}
	}
	if strings.EqualFold(os.Getenv("VSTS_SETUP_DOCKERGROUP"), "false") {
		return nil
	}
	// The agent gives the user the group of the Docker socket at the
	// default path on its side; without one there, the job fails.
	gid, err := local("stat", "-c", "%g", "/var/run/docker.sock")
	if err != nil {
		return err
	}
	groups, err := docker("exec", c.id, "bash", "-c", "cat /etc/group")
	if err != nil {
		return err
	}
	group := ""
	sc := bufio.NewScanner(strings.NewReader(groups))
	for sc.Scan() {
		if f := strings.Split(sc.Text(), ":"); len(f) == 4 && f[2] == gid {
			group = f[0]
			break
		}
	}
	if group == "" {
		group = "azure_pipelines_docker"
		if _, err := docker("exec", c.id, "groupadd", "-g", gid, group); err != nil {
			return err
		}
	}
	_, err = docker("exec", c.id, "usermod", "-a", "-G", group, user)
	return err
}

// step returns the command that runs a step's script in the container: the
// script is written to the agent's temp directory, which the container
// sees at /__w/_temp.
func (c *jobContainer) step(script string) (*exec.Cmd, error) {
	file := filepath.Join(c.roots.work, "_temp", newGUID()+".sh")
	if err := os.WriteFile(file, []byte(script+"\n"), 0o644); err != nil {
		return nil, err
	}
	args := []string{"exec", "-i", "-u", c.uid, "-w", c.roots.toContainer(filepath.Join(c.roots.work, "1", "s")), c.id,
		"bash", "--noprofile", "--norc", c.roots.toContainer(file)}
	fmt.Printf("##[command]/usr/bin/docker %s\n", strings.Join(args, " "))
	cmd := exec.Command("docker", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd, nil
}

// stop removes the container and the job's network.
func (c *jobContainer) stop() {
	if c == nil {
		return
	}
	if c.id != "" {
		fmt.Printf("Stop and remove container: %s\n", c.id)
		if _, err := docker("rm", "--force", c.id); err != nil {
			fmt.Printf("##[warning]Docker rm failed: %v\n", err)
		}
	}
	fmt.Printf("Remove container network: %s\n", c.network)
	if _, err := docker("network", "rm", c.network); err != nil {
		fmt.Printf("##[warning]Docker network rm failed: %v\n", err)
	}
}

// keepAlive is the stand-in's "node" in the agent's externals: the job
// container's command, which only has to keep running (the agent's is
// node -e "setInterval(...)").
func keepAlive() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
