//go:build e2e

// Package e2e runs the project against real components: etcd, a
// kube-apiserver and the KEDA operator (built by `make e2e-tools` from the Go
// modules pinned in tools/), the scaler as a local process, and the project's
// fake Azure DevOps. There is no kubelet: KEDA creates Jobs, nothing runs
// them, and tests finish them by patching their status.
package e2e

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"
)

// Proc is a component running as a child process, its output in a log file.
type Proc struct {
	Name string
	Log  string
	cmd  *exec.Cmd
	done chan struct{}
}

func start(logDir, name string, env []string, bin string, args ...string) (*Proc, error) {
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	// Its own process group, so a stop reaches what it started too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	return p, nil
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM, and SIGKILL after grace.
func (p *Proc) Stop(grace time.Duration) {
	if p.Exited() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// Kill ends the process at once, as a node loss would.
func (p *Proc) Kill() {
	if !p.Exited() {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// The node tier (build tag node, node.go) sets these: a cluster with a
// controller manager, a scheduler and a kubelet, and a fake Azure DevOps
// that pods can reach.
var (
	withNode       bool
	fakeListenAddr = "127.0.0.1:0"
	setupNode      func(ctx context.Context, c *Cluster, binDir, workDir, logDir string) (stop func(), err error)
)

// Cluster is etcd, kube-apiserver and the KEDA operator on loopback.
type Cluster struct {
	Dir        string
	LogDir     string
	Kubeconfig string
	Rest       *rest.Config
	Kube       kubernetes.Interface
	procs      []*Proc
}

// freePort returns a free loopback port below the kernel's ephemeral range.
// A port from listening on :0 is an ephemeral one: between closing it and
// the component binding it, an outgoing connection (KEDA's, the API
// server's) may take it. Ports below the range are never handed out that
// way, so only another listener could take one.
func freePort() (int, error) {
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				low = n
			}
		}
	}
	const base = 10000
	if low <= base+1000 {
		return 0, fmt.Errorf("the ephemeral port range starts at %d: no room below it", low)
	}
	for range 100 {
		port := base + mathrand.IntN(low-base)
		if _, taken := usedPorts.LoadOrStore(port, true); taken {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		l.Close()
		return port, nil
	}
	return 0, errors.New("no free port below the ephemeral range after 100 tries")
}

// usedPorts are the ports this run handed out: never twice.
var usedPorts sync.Map

// StartCluster starts the components from binDir; crdDir holds KEDA's CRDs.
// On error, what was started is stopped.
func StartCluster(ctx context.Context, binDir, workDir, logDir, crdDir string) (c *Cluster, err error) {
	c = &Cluster{Dir: workDir, LogDir: logDir}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	for _, d := range []string{workDir, logDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	ports := make([]int, 7)
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return nil, err
		}
	}
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	etcd, err := start(logDir, "etcd", nil, filepath.Join(binDir, "etcd"),
		"--data-dir", filepath.Join(workDir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", ports[1]),
		"--unsafe-no-fsync")
	if err != nil {
		return nil, err
	}
	c.procs = append(c.procs, etcd)
	if err := waitHTTP(ctx, etcd, etcdURL+"/health", nil, time.Minute); err != nil {
		return nil, err
	}

	// The API server's service-account signing key and its token file.
	pki := filepath.Join(workDir, "pki")
	if err := os.MkdirAll(pki, 0o700); err != nil {
		return nil, err
	}
	if err := writeKeyPair(filepath.Join(pki, "sa.key"), filepath.Join(pki, "sa.pub")); err != nil {
		return nil, err
	}
	const token = "e2e-admin-token"
	if err := os.WriteFile(filepath.Join(pki, "tokens.csv"), []byte(token+",admin,admin,system:masters\n"), 0o600); err != nil {
		return nil, err
	}
	apiURL := fmt.Sprintf("https://127.0.0.1:%d", ports[2])
	// Without a controller manager nothing creates ServiceAccounts, so the
	// admission that requires them is off; the node tier has one.
	admission := "--disable-admission-plugins=ServiceAccount"
	if withNode {
		admission = "--enable-admission-plugins=ServiceAccount"
	}
	api, err := start(logDir, "kube-apiserver", nil, filepath.Join(binDir, "kube-apiserver"),
		"--etcd-servers="+etcdURL,
		"--cert-dir="+filepath.Join(workDir, "apiserver-certs"),
		fmt.Sprintf("--secure-port=%d", ports[2]),
		"--bind-address=127.0.0.1",
		"--token-auth-file="+filepath.Join(pki, "tokens.csv"),
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+filepath.Join(pki, "sa.pub"),
		"--service-account-signing-key-file="+filepath.Join(pki, "sa.key"),
		"--service-cluster-ip-range=10.96.0.0/12",
		"--allow-privileged=true",
		admission)
	if err != nil {
		return nil, err
	}
	c.procs = append(c.procs, api)
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // a throwaway local API server
	if err := waitHTTP(ctx, api, apiURL+"/readyz", map[string]string{"Authorization": "Bearer " + token}, 2*time.Minute, insecure); err != nil {
		return nil, err
	}
	c.Kubeconfig = filepath.Join(workDir, "kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: e2e, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: admin, user: {token: %q}}]
contexts: [{name: e2e, context: {cluster: e2e, user: admin, namespace: default}}]
current-context: e2e
`, apiURL, token)
	if err := os.WriteFile(c.Kubeconfig, []byte(kc), 0o600); err != nil {
		return nil, err
	}
	if c.Rest, err = clientcmd.BuildConfigFromFlags("", c.Kubeconfig); err != nil {
		return nil, err
	}
	c.Rest.QPS, c.Rest.Burst = 100, 200
	if c.Kube, err = kubernetes.NewForConfig(c.Rest); err != nil {
		return nil, err
	}
	if err := c.installCRDs(ctx, crdDir); err != nil {
		return nil, err
	}
	if err := c.CreateNamespace(ctx, "keda"); err != nil {
		return nil, err
	}

	// KEDA's gRPC metrics service wants a certificate directory.
	kedaCerts := filepath.Join(workDir, "keda-certs")
	if err := writeCA(kedaCerts); err != nil {
		return nil, err
	}
	keda, err := start(logDir, "keda-operator",
		[]string{"KEDA_CLUSTER_OBJECT_NAMESPACE=keda", "POD_NAMESPACE=keda", "WATCH_NAMESPACE="},
		filepath.Join(binDir, "keda-operator"),
		"--kubeconfig", c.Kubeconfig,
		"--cert-dir", kedaCerts,
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", ports[3]),
		fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", ports[4]),
		fmt.Sprintf("--metrics-service-bind-address=127.0.0.1:%d", ports[5]),
		"--zap-log-level=info")
	if err != nil {
		return nil, err
	}
	c.procs = append(c.procs, keda)
	if err := waitHTTP(ctx, keda, fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[4]), nil, 2*time.Minute); err != nil {
		return nil, err
	}
	return c, nil
}

// Stop ends every component, newest first.
func (c *Cluster) Stop() {
	for i := len(c.procs) - 1; i >= 0; i-- {
		c.procs[i].Stop(10 * time.Second)
	}
}

// CreateNamespace creates a namespace (no error if it exists).
func (c *Cluster) CreateNamespace(ctx context.Context, name string) error {
	_, err := c.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !strings.Contains(err.Error(), "already exists") {
		return err
	}
	return nil
}

func (c *Cluster) installCRDs(ctx context.Context, dir string) error {
	cs, err := apiextclient.NewForConfig(c.Rest)
	if err != nil {
		return err
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		return fmt.Errorf("no KEDA CRDs in %s: %v", dir, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		var crd apiextv1.CustomResourceDefinition
		if err := yaml.Unmarshal(b, &crd); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		if _, err := cs.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, &crd, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
	}
	deadline := time.Now().Add(time.Minute)
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		group, plural, _ := strings.Cut(name, "_")
		for {
			crd, err := cs.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, plural+"."+group, metav1.GetOptions{})
			if err == nil && established(crd) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("CRD %s.%s not established: %v", plural, group, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return nil
}

func established(crd *apiextv1.CustomResourceDefinition) bool {
	for _, c := range crd.Status.Conditions {
		if c.Type == apiextv1.Established && c.Status == apiextv1.ConditionTrue {
			return true
		}
	}
	return false
}

// waitUntil polls cond every 200 ms until it holds, limit passes or ctx ends.
func waitUntil(ctx context.Context, limit time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("no %s after %s", what, limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil
}

func waitHTTP(ctx context.Context, p *Proc, url string, headers map[string]string, limit time.Duration, client ...*http.Client) error {
	hc := http.DefaultClient
	if len(client) > 0 {
		hc = client[0]
	}
	deadline := time.Now().Add(limit)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		if p.Exited() {
			return fmt.Errorf("%s exited (see %s)", p.Name, p.Log)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready at %s after %s: %v (see %s)", p.Name, url, limit, err, p.Log)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func writeKeyPair(keyPath, pubPath string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644)
}

// writeCA writes a self-signed CA that also serves as the certificate:
// tls.crt, tls.key, ca.crt and ca.key, as KEDA's cert directory expects.
func writeCA(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "keda-e2e"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:              []string{"localhost", "keda-operator", "keda-operator.keda.svc"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	crt := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	k := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	for name, b := range map[string][]byte{"tls.crt": crt, "ca.crt": crt, "tls.key": k, "ca.key": k} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}
