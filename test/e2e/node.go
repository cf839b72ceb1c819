//go:build e2e && node

package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The node tier: besides etcd, the API server and KEDA, the controller
// manager (the Job controller makes KEDA's Jobs' pods), the scheduler,
// Debian's containerd and runc, and a kubelet, all on this machine. Pods
// get addresses on a bridge the test creates (azks0, 10.244.7.0/24, no
// route out, no masquerading); the host is 10.244.7.1 there, where the
// fake Azure DevOps listens, so agent pods reach it and nothing else.

const (
	bridgeName = "azks0"
	bridgeMAC  = "02:42:0a:f4:07:01" // locally administered
	bridgeIP   = "10.244.7.1"
	podSubnet  = "10.244.7.0/24"
	nodeName   = "127.0.0.1" // --hostname-override: the node's address stays on loopback
)

// theNode is the running node, for scenarios that act on containers.
var theNode *node

func init() {
	// Short enough for a crashed agent's job to fail, and its agent to go
	// offline, within a scenario.
	fakeazdo.JobLockDuration, fakeazdo.SessionTimeout = 20*time.Second, 10*time.Second
	withNode = true
	fakeListenAddr = bridgeIP + ":0"
	setupNode = startNode
}

// node is what startNode started and changed, for the teardown.
type node struct {
	dir      string
	procs    []*Proc
	sysctls  map[string]string
	sock     string // containerd's socket
	bridge   bool
	logDir   string
	imageDir string
	registry *registry // a container job's image comes from here
	jobImage string    // its reference, host:port/name:tag
}

// sysctlsKubeletSets are the kernel settings the kubelet overwrites at
// start (protectKernelDefaults false): restored at teardown.
var sysctlsKubeletSets = []string{"vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops", "vm/panic_on_oom",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes"}

// startNode starts the controller manager, the scheduler, containerd (with
// the images imported) and a kubelet, and waits for the node to be Ready.
// The returned stop undoes everything, host changes included.
func startNode(ctx context.Context, c *Cluster, binDir, workDir, logDir string) (stop func(), err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the node tier runs a kubelet and containerd: run it as root")
	}
	for _, tool := range []string{"containerd", "ctr", "runc", "ip", "iptables", "ldd", "bash", "curl", "tini", "dockerd", "busybox"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s is missing (.ci/run installs Debian's containerd runc containernetworking-plugins docker.io iptables tini busybox-static curl): %w", tool, err)
		}
	}
	n := &node{dir: filepath.Join(workDir, "node"), logDir: logDir, sysctls: map[string]string{}}
	n.imageDir = filepath.Join(n.dir, "images")
	defer func() {
		if err != nil {
			n.stop(c)
		}
	}()
	if err := os.MkdirAll(n.imageDir, 0o755); err != nil {
		return nil, err
	}
	for _, s := range sysctlsKubeletSets {
		if b, err := os.ReadFile("/proc/sys/" + s); err == nil {
			n.sysctls[s] = strings.TrimSpace(string(b))
		}
	}
	if err := n.makeBridge(); err != nil {
		return nil, err
	}
	kubeconfig := c.Kubeconfig
	ports := make([]int, 4)
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return nil, err
		}
	}
	kcm, err := start(logDir, "kube-controller-manager", nil, filepath.Join(binDir, "kube-controller-manager"),
		"--kubeconfig="+kubeconfig, "--authentication-kubeconfig="+kubeconfig, "--authorization-kubeconfig="+kubeconfig,
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", ports[0]), "--leader-elect=false",
		"--service-account-private-key-file="+filepath.Join(workDir, "pki", "sa.key"),
		"--root-ca-file="+filepath.Join(workDir, "apiserver-certs", "apiserver.crt"),
		"--use-service-account-credentials=false", "--controllers=*", "--cert-dir="+filepath.Join(n.dir, "kcm-certs"))
	if err != nil {
		return nil, err
	}
	n.procs = append(n.procs, kcm)
	sched, err := start(logDir, "kube-scheduler", nil, filepath.Join(binDir, "kube-scheduler"),
		"--kubeconfig="+kubeconfig, "--authentication-kubeconfig="+kubeconfig, "--authorization-kubeconfig="+kubeconfig,
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", ports[1]), "--leader-elect=false",
		"--cert-dir="+filepath.Join(n.dir, "scheduler-certs"))
	if err != nil {
		return nil, err
	}
	n.procs = append(n.procs, sched)

	if err := n.startContainerd(); err != nil {
		return nil, err
	}
	if n.registry, err = startRegistry(bridgeIP); err != nil {
		return nil, err
	}
	started := time.Now()
	if err := n.buildImages(); err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	fmt.Printf("e2e node: images built and imported in %s\n", time.Since(started).Round(100*time.Millisecond))
	if err := n.startKubelet(binDir, kubeconfig, ports[2], ports[3]); err != nil {
		return nil, err
	}
	if err := waitUntil(ctx, 2*time.Minute, "node Ready", func() bool {
		nd, err := c.Kube.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, cond := range nd.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				return true
			}
		}
		return false
	}); err != nil {
		return nil, fmt.Errorf("%w (see %s)", err, filepath.Join(logDir, "kubelet.log"))
	}
	// The ServiceAccount admission refuses pods until the namespace's
	// default ServiceAccount exists.
	if err := waitUntil(ctx, time.Minute, "ServiceAccount default/default", func() bool {
		_, err := c.Kube.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err == nil
	}); err != nil {
		return nil, err
	}
	theNode = n
	return func() { n.stop(c) }, nil
}

// killContainer kills every process of a container at once, as a crash
// (or the OOM killer) would.
func (n *node) killContainer(id string) error {
	return sh("ctr", "--address", n.sock, "-n", "k8s.io", "tasks", "kill", "-a", "-s", "SIGKILL", id)
}

func sh(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// makeBridge creates the pods' bridge with the host's address on it, so
// that the fake Azure DevOps can listen there before any pod exists.
func (n *node) makeBridge() error {
	_ = sh("ip", "link", "del", bridgeName) // left by a killed run
	// A fixed MAC: a bridge without one takes the lowest MAC of its ports,
	// so it changes as pods come and go, and a pod whose ARP entry still
	// names the old one cannot reach the host until that entry expires
	// (a stand-in agent's sign-in timed out this way, 30 s after its pod's
	// register container had reached the fake).
	if err := sh("ip", "link", "add", bridgeName, "address", bridgeMAC, "type", "bridge"); err != nil {
		return err
	}
	n.bridge = true
	if err := sh("ip", "addr", "add", bridgeIP+"/24", "dev", bridgeName); err != nil {
		return err
	}
	return sh("ip", "link", "set", bridgeName, "up")
}

func (n *node) startContainerd() error {
	cd := filepath.Join(n.dir, "containerd")
	cniConf := filepath.Join(n.dir, "cni", "net.d")
	for _, d := range []string{cd, cniConf} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	n.sock = filepath.Join(cd, "containerd.sock")
	// restrict_oom_score_adj: this machine's root lacks CAP_SYS_RESOURCE, so
	// no sandbox may get a lower OOM score than containerd's own.
	config := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
oom_score = 0
[grpc]
  address = %[3]q
[ttrpc]
  address = ""
[metrics]
  address = ""
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = %[4]q
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "localhost/pause:e2e"
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    enable_selinux = false
    netns_mounts_under_state_dir = true
    restrict_oom_score_adj = true
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          BinaryName = "/usr/sbin/runc"
          Root = %[5]q
          SystemdCgroup = false
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = %[6]q
      max_conf_num = 1
`, filepath.Join(cd, "root"), filepath.Join(cd, "state"), n.sock, filepath.Join(cd, "opt"), filepath.Join(cd, "runc"), cniConf)
	if err := os.WriteFile(filepath.Join(cd, "config.toml"), []byte(config), 0o644); err != nil {
		return err
	}
	// The bridge with the host as gateway: pods reach 10.244.7.1 (the fake
	// Azure DevOps) and each other; no masquerading, no forwarding out.
	cni := fmt.Sprintf(`{"cniVersion": "0.4.0", "name": "azks-e2e", "plugins": [
  {"type": "bridge", "bridge": %q, "isGateway": true, "isDefaultGateway": false, "ipMasq": false, "hairpinMode": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": %q, "gateway": %q}]], "dataDir": %q}},
  {"type": "loopback"}]}`, bridgeName, podSubnet, bridgeIP, filepath.Join(n.dir, "cni", "ipam"))
	if err := os.WriteFile(filepath.Join(cniConf, "10-azks-e2e.conflist"), []byte(cni), 0o644); err != nil {
		return err
	}
	p, err := start(n.logDir, "containerd", nil, "containerd", "--config", filepath.Join(cd, "config.toml"))
	if err != nil {
		return err
	}
	n.procs = append(n.procs, p)
	return waitUntil(context.Background(), 30*time.Second, "containerd socket", func() bool {
		return exec.Command("ctr", "--address", n.sock, "version").Run() == nil
	})
}

// importImage imports an image tarball into the CRI's namespace.
func (n *node) importImage(tarball string) error {
	return sh("ctr", "--address", n.sock, "-n", "k8s.io", "images", "import", "--no-unpack=false", tarball)
}

func (n *node) startKubelet(binDir, kubeconfig string, port, healthzPort int) error {
	kd := filepath.Join(n.dir, "kubelet")
	if err := os.MkdirAll(kd, 0o755); err != nil {
		return err
	}
	config := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: %d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %d
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
  x509: {}
authorization:
  mode: AlwaysAllow
cgroupDriver: cgroupfs
failSwapOn: false
containerRuntimeEndpoint: unix://%s
podLogsDir: %s
registerNode: true
serializeImagePulls: false
maxPods: 50
evictionHard: {memory.available: "100Mi", nodefs.available: "2%%", imagefs.available: "2%%", nodefs.inodesFree: "2%%"}
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
`, port, healthzPort, n.sock, filepath.Join(n.dir, "pod-logs"))
	if err := os.WriteFile(filepath.Join(kd, "config.yaml"), []byte(config), 0o644); err != nil {
		return err
	}
	p, err := start(n.logDir, "kubelet", nil, filepath.Join(binDir, "kubelet"),
		"--config="+filepath.Join(kd, "config.yaml"), "--kubeconfig="+kubeconfig,
		"--root-dir="+filepath.Join(kd, "root"), "--cert-dir="+filepath.Join(kd, "pki"),
		"--hostname-override="+nodeName, "--v=2")
	if err != nil {
		return err
	}
	n.procs = append(n.procs, p)
	return nil
}

// stop tears the node down in the order that leaves the host as it was:
// pods first (their containers outlive the kubelet), then the kubelet,
// containerd's leftovers, the daemons, mounts, sysctls, iptables chains,
// the bridge, cgroups and the files written outside the work directory.
func (n *node) stop(c *Cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if c != nil && c.Kube != nil {
		// KEDA first, so that no new Job appears; then every Job, then the pods.
		for _, p := range c.procs {
			if p.Name == "keda-operator" {
				p.Stop(10 * time.Second)
			}
		}
		background := metav1.DeletePropagationBackground
		grace := int64(5)
		nss, _ := c.Kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		if nss != nil {
			for _, ns := range nss.Items {
				_ = c.Kube.BatchV1().Jobs(ns.Name).DeleteCollection(ctx, metav1.DeleteOptions{PropagationPolicy: &background}, metav1.ListOptions{})
				_ = c.Kube.CoreV1().Pods(ns.Name).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &grace}, metav1.ListOptions{})
			}
		}
		_ = waitUntil(ctx, time.Minute, "no pods", func() bool {
			pods, err := c.Kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
			return err == nil && len(pods.Items) == 0
		})
	}
	// kubelet, then containerd's tasks and containers, then the daemons.
	for i := len(n.procs) - 1; i >= 0; i-- {
		if n.procs[i].Name == "containerd" && n.sock != "" {
			n.clearContainerd()
		}
		n.procs[i].Stop(10 * time.Second)
	}
	if n.registry != nil {
		n.registry.close()
	}
	n.unmountAll()
	n.removeImages()
	for s, v := range n.sysctls {
		_ = os.WriteFile("/proc/sys/"+s, []byte(v), 0o644)
	}
	n.removeKubeletChains()
	if n.bridge {
		_ = sh("ip", "link", "del", bridgeName)
	}
	removeCgroups("kubepods")
	n.removeHostFiles()
}

func (n *node) clearContainerd() {
	ctr := func(args ...string) string {
		out, _ := exec.Command("ctr", append([]string{"--address", n.sock, "-n", "k8s.io"}, args...)...).Output()
		return string(out)
	}
	for _, line := range strings.Split(ctr("tasks", "ls", "-q"), "\n") {
		if id := strings.TrimSpace(line); id != "" {
			ctr("tasks", "kill", "-s", "SIGKILL", id)
			ctr("tasks", "delete", "-f", id)
		}
	}
	for _, line := range strings.Split(ctr("containers", "ls", "-q"), "\n") {
		if id := strings.TrimSpace(line); id != "" {
			ctr("containers", "delete", id)
		}
	}
}

// unmountAll unmounts what is left under the node's directory, deepest
// first (projected tokens, sandbox shm, network namespaces, overlays).
func (n *node) unmountAll() {
	points := n.mounts()
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	for _, p := range points {
		_ = exec.Command("umount", "-l", p).Run()
	}
}

// mounts are the mount points under the node's directory.
func (n *node) mounts() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], n.dir+"/") {
			points = append(points, fields[4])
		}
	}
	return points
}

// removeImages removes containerd's store and the image tarballs (about
// 850 MB a run; the logs stay), only when nothing is mounted there any more.
func (n *node) removeImages() {
	if left := n.mounts(); len(left) > 0 {
		fmt.Printf("e2e node: %d mounts left under %s; its files stay\n", len(left), n.dir)
		return
	}
	for _, d := range []string{"containerd", "images"} {
		_ = os.RemoveAll(filepath.Join(n.dir, d))
	}
}

// removeKubeletChains removes the iptables chains the kubelet creates
// (pkg/kubelet/kubelet_network_linux.go); it re-creates them while it runs,
// so this comes after it stopped.
func (n *node) removeKubeletChains() {
	for _, bin := range []string{"iptables", "ip6tables"} {
		for _, tc := range [][2]string{{"mangle", "KUBE-KUBELET-CANARY"}, {"nat", "KUBE-KUBELET-CANARY"}, {"filter", "KUBE-KUBELET-CANARY"}, {"mangle", "KUBE-IPTABLES-HINT"}} {
			_ = exec.Command(bin, "-t", tc[0], "-F", tc[1]).Run()
			_ = exec.Command(bin, "-t", tc[0], "-X", tc[1]).Run()
		}
		for _, parent := range []string{"INPUT", "OUTPUT"} {
			for exec.Command(bin, "-t", "filter", "-D", parent, "-j", "KUBE-FIREWALL").Run() == nil {
			}
		}
		_ = exec.Command(bin, "-t", "filter", "-F", "KUBE-FIREWALL").Run()
		_ = exec.Command(bin, "-t", "filter", "-X", "KUBE-FIREWALL").Run()
	}
}

// removeCgroups removes a cgroup tree under every v1 controller, deepest
// first (only empty cgroups can go, so the pods must be gone).
func removeCgroups(name string) {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/" + name)
	if unified, err := os.Stat("/sys/fs/cgroup/" + name); err == nil && unified.IsDir() {
		roots = append(roots, "/sys/fs/cgroup/"+name)
	}
	for _, root := range roots {
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			_ = os.Remove(d)
		}
	}
}

// removeHostFiles removes what the kubelet and the CNI library write
// outside any directory they are given: log symlinks into this node's pod
// logs, the device-plugin socket and this network's CNI results.
func (n *node) removeHostFiles() {
	links, _ := filepath.Glob("/var/log/containers/*.log")
	for _, l := range links {
		if target, err := os.Readlink(l); err == nil && strings.HasPrefix(target, n.dir) {
			_ = os.Remove(l)
		}
	}
	_ = os.Remove("/var/lib/kubelet/device-plugins/kubelet.sock")
	results, _ := filepath.Glob("/var/lib/cni/results/azks-e2e-*")
	for _, r := range results {
		_ = os.Remove(r)
	}
}
