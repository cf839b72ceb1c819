//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/test/charts"
	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	"helm.sh/helm/v3/pkg/action"
	helmchart "helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
)

// sweepPool is listed in the scalers' config, so it is swept without a trigger.
var sweepPool int

const (
	pollingInterval = 2 * time.Second     // every ScaledJob's KEDA pollingInterval
	refresh         = time.Second         // the scaler's --refresh-interval and --min-refresh-interval
	staleAfter      = 6 * time.Second     // the scaler's --stale-after
	warmup          = 2 * pollingInterval // the scaler's --routing-warmup
	orgPAT          = "e2e-scaler-pat-3c9a"
)

// env is what every scenario shares: one cluster, one fake Azure DevOps, and
// the scaler every ScaledJob points at.
var env struct {
	cluster  *Cluster
	kube     ctrlclient.Client
	fake     *fakeazdo.Server
	contoso  *fakeazdo.Org
	outage   *fakeazdo.Org
	scaler   *Scaler
	bin      string   // the scaler binary
	tlsArgs  []string // the scaler chart's --grpc-tls-* flags, its files written locally
	work     string
	summary  []string
	summaryM sync.Mutex
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	root := charts.RepoRoot()
	work := filepath.Join(root, "test", "e2e", ".work")
	runDir := filepath.Join(work, "runs", time.Now().Format("20060102-150405"))
	logDir := filepath.Join(runDir, "logs")
	env.work = runDir
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		printLogs(logDir)
		return 1
	}
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return fail(err)
	}
	fmt.Printf("e2e: work and logs in %s\n", runDir)

	env.bin = filepath.Join(work, "bin", "azdo-keda-scaler")
	build := exec.Command("go", "build", "-o", env.bin, "./cmd/azdo-keda-scaler")
	build.Dir, build.Stdout, build.Stderr = root, os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fail(fmt.Errorf("building the scaler: %w", err))
	}
	kedaDir, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/kedacore/keda/v2").Output()
	if err != nil {
		return fail(fmt.Errorf("locating the KEDA module: %w", err))
	}

	ctx := context.Background()
	started := time.Now()
	env.cluster, err = StartCluster(ctx, filepath.Join(work, "bin"), runDir, logDir,
		filepath.Join(strings.TrimSpace(string(kedaDir)), "config", "crd", "bases"))
	if err != nil {
		return fail(err)
	}
	defer env.cluster.Stop()
	fmt.Printf("e2e: etcd, kube-apiserver and KEDA ready in %s\n", time.Since(started).Round(time.Second))

	scheme := runtime.NewScheme()
	_ = batchv1.AddToScheme(scheme)
	_ = appsv1.AddToScheme(scheme)
	_ = corev1.AddToScheme(scheme)
	_ = kedav1alpha1.AddToScheme(scheme)
	_ = coordinationv1.AddToScheme(scheme)
	if env.kube, err = ctrlclient.New(env.cluster.Rest, ctrlclient.Options{Scheme: scheme}); err != nil {
		return fail(err)
	}

	if setupNode != nil {
		started := time.Now()
		stopNode, err := setupNode(ctx, env.cluster, filepath.Join(work, "bin"), runDir, logDir)
		if err != nil {
			return fail(fmt.Errorf("the node: %w", err))
		}
		defer stopNode()
		fmt.Printf("e2e: controller manager, scheduler, containerd and kubelet ready (node Ready) in %s\n", time.Since(started).Round(time.Second))
	}

	env.fake = fakeazdo.New()
	if err := env.fake.StartOn(fakeListenAddr); err != nil {
		return fail(err)
	}
	defer env.fake.Close()
	env.contoso = env.fake.AddOrg("contoso", orgPAT)
	env.outage = env.fake.AddOrg("outage", orgPAT)
	sweepPool = env.contoso.AddPool("sweep") // in the scalers' config

	if env.tlsArgs, err = installScalerChart(ctx); err != nil {
		return fail(fmt.Errorf("the scaler chart's mutual TLS: %w", err))
	}
	env.scaler, err = StartScaler("scaler", logDir)
	if err != nil {
		return fail(err)
	}
	defer func() { env.scaler.Proc.Stop(10 * time.Second) }()

	code := m.Run()
	writeSummary(runDir)
	if code != 0 {
		printLogs(logDir)
	}
	return code
}

// printLogs prints the end of every component's log.
func printLogs(dir string) {
	files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) > 80 {
			lines = lines[len(lines)-80:]
		}
		fmt.Fprintf(os.Stderr, "\n===== %s (last %d lines) =====\n%s\n", f, len(lines), strings.Join(lines, "\n"))
	}
}

func record(format string, args ...any) {
	env.summaryM.Lock()
	defer env.summaryM.Unlock()
	env.summary = append(env.summary, fmt.Sprintf(format, args...))
}

func writeSummary(dir string) {
	s := strings.Join(env.summary, "\n") + "\n"
	fmt.Print("\n===== e2e summary =====\n" + s)
	_ = os.WriteFile(filepath.Join(dir, "summary.txt"), []byte(s), 0o644)
}

// Scaler is azdo-keda-scaler running as a local process.
type Scaler struct {
	Name     string
	Addr     string // gRPC, what ScaledJobs use as scalerAddress
	HTTPAddr string
	// StandbyAddr serves /api/v1/standby (with --read-cluster).
	StandbyAddr string
	Proc        *Proc
	logDir      string
	args        []string
}

// StartScaler starts the scaler against both fake organizations.
func StartScaler(name, logDir string, extraArgs ...string) (*Scaler, error) {
	grpcPort, err := freePort()
	if err != nil {
		return nil, err
	}
	httpPort, err := freePort()
	if err != nil {
		return nil, err
	}
	standbyPort, err := freePort()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(env.work, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	patFile := filepath.Join(dir, "pat")
	if err := os.WriteFile(patFile, []byte(orgPAT), 0o600); err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`organizations:
  - {name: contoso, url: %q, patFile: %q, pools: [{name: sweep}]}
  - {name: outage, url: %q, patFile: %q}
`, env.fake.OrgURL("contoso"), patFile, env.fake.OrgURL("outage"), patFile)
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	s := &Scaler{Name: name, Addr: fmt.Sprintf("127.0.0.1:%d", grpcPort), HTTPAddr: fmt.Sprintf("127.0.0.1:%d", httpPort),
		StandbyAddr: fmt.Sprintf("127.0.0.1:%d", standbyPort), logDir: logDir}
	if slices.Contains(extraArgs, "--read-cluster") {
		// ScaledJobs reach this scaler at its loopback address.
		extraArgs = append(extraArgs, "--scaler-address="+s.Addr, "--kubeconfig="+env.cluster.Kubeconfig)
	}
	s.args = append([]string{
		"--config", filepath.Join(dir, "config.yaml"),
		"--grpc-addr", s.Addr, "--http-addr", s.HTTPAddr, "--standby-addr", s.StandbyAddr,
		"--refresh-interval", refresh.String(), "--min-refresh-interval", refresh.String(), "--stale-after", staleAfter.String(), "--azdo-timeout", "2s",
		"--routing-warmup", warmup.String(), "--trigger-forget-min", "10s",
		"--sweep-interval", "0", "--log-format", "json",
	}, append(slices.Clone(env.tlsArgs), extraArgs...)...)
	return s, s.Start()
}

// Start (re)starts the process on the same addresses.
func (s *Scaler) Start() error {
	p, err := start(s.logDir, s.Name, nil, env.bin, s.args...)
	if err != nil {
		return err
	}
	s.Proc = p
	return waitHTTP(context.Background(), p, "http://"+s.HTTPAddr+"/readyz", nil, 30*time.Second)
}

// Metric returns the sum of a Prometheus counter's samples whose labels
// contain every filter (e.g. `grpc_method="GetMetrics"`).
func (s *Scaler) Metric(name string, filters ...string) (float64, error) {
	resp, err := http.Get("http://" + s.HTTPAddr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
next:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		for _, f := range filters {
			if !strings.Contains(line, f) {
				continue next
			}
		}
		var v float64
		if _, err := fmt.Sscanf(line[strings.LastIndexByte(line, ' ')+1:], "%g", &v); err == nil {
			sum += v
		}
	}
	return sum, sc.Err()
}

// helmSetup is Helm's action configuration for a namespace of the e2e API
// server, and the chart loaded from charts/.
func helmSetup(t *testing.T, chart, namespace string) (*action.Configuration, *helmchart.Chart) {
	t.Helper()
	cfg, ch, err := helmAction(chart, namespace)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, ch
}

func helmAction(chart, namespace string) (*action.Configuration, *helmchart.Chart, error) {
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig, flags.Namespace = &env.cluster.Kubeconfig, &namespace
	cfg := new(action.Configuration)
	if err := cfg.Init(flags, namespace, "secret", func(string, ...any) {}); err != nil {
		return nil, nil, err
	}
	ch, err := loader.Load(charts.ChartDir(chart))
	return cfg, ch, err
}

// helmInstall is a real `helm install` into the e2e API server.
func helmInstall(t *testing.T, chart, namespace, release string, values map[string]any) {
	t.Helper()
	ctx := context.Background()
	if err := env.cluster.CreateNamespace(ctx, namespace); err != nil {
		t.Fatal(err)
	}
	cfg, ch := helmSetup(t, chart, namespace)
	install := action.NewInstall(cfg)
	install.ReleaseName, install.Namespace = release, namespace
	install.Timeout = time.Minute
	if _, err := install.Run(ch, values); err != nil {
		t.Fatalf("helm install %s %s -n %s: %v", release, chart, namespace, err)
	}
}

// poolValues are azdo-agent-pool values pointing at the fake organization
// and the e2e scaler; trigger holds the trigger's own values.
func poolValues(org, pool string, trigger map[string]any) map[string]any {
	return map[string]any{
		"azp":     map[string]any{"url": env.fake.OrgURL(org), "pool": pool, "pat": "e2e-agent-pat"},
		"scaler":  map[string]any{"address": env.scaler.Addr, "organization": org},
		"trigger": trigger,
		"scaledJob": map[string]any{
			"pollingInterval": int(pollingInterval / time.Second),
			"maxReplicaCount": 20,
		},
	}
}

// installPool installs one azdo-agent-pool release and returns its
// ScaledJob's name. Callers wait with waitReconciled before queueing jobs.
func installPool(t *testing.T, namespace, release, org, pool string, trigger map[string]any) string {
	t.Helper()
	helmInstall(t, "azdo-agent-pool", namespace, release, poolValues(org, pool, trigger))
	return release // the chart names its ScaledJob after the release
}

// jobs lists the Jobs KEDA created for a ScaledJob.
func jobs(t *testing.T, namespace, scaledJob string) []batchv1.Job {
	t.Helper()
	var l batchv1.JobList
	listOfScaledJob(t, namespace, scaledJob, &l)
	return l.Items
}

// listOfScaledJob lists the objects (Jobs, their pods) KEDA labelled as
// a ScaledJob's.
func listOfScaledJob(t *testing.T, namespace, scaledJob string, l ctrlclient.ObjectList) {
	t.Helper()
	if err := env.kube.List(context.Background(), l, ctrlclient.InNamespace(namespace),
		ctrlclient.MatchingLabels{"scaledjob.keda.sh/name": scaledJob}); err != nil {
		t.Fatal(err)
	}
}

// running counts the Jobs that are not finished.
func running(t *testing.T, namespace, scaledJob string) int {
	n := 0
	for _, j := range jobs(t, namespace, scaledJob) {
		if !finished(j) {
			n++
		}
	}
	return n
}

func finished(j batchv1.Job) bool {
	for _, c := range j.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// completeJob does what the job controller would when the agent pod exits 0.
func completeJob(t *testing.T, j batchv1.Job) {
	t.Helper()
	now := metav1.Now()
	if j.Status.StartTime == nil {
		j.Status.StartTime = &now
	}
	j.Status.CompletionTime = &now
	j.Status.Succeeded = 1
	j.Status.Active = 0
	j.Status.Conditions = append(j.Status.Conditions,
		batchv1.JobCondition{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, LastTransitionTime: now, LastProbeTime: now, Reason: "CompletionsReached", Message: "Reached expected number of succeeded pods"},
		batchv1.JobCondition{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: now, LastProbeTime: now, Reason: "CompletionsReached", Message: "Reached expected number of succeeded pods"})
	if err := env.kube.Status().Update(context.Background(), &j); err != nil {
		t.Fatalf("completing Job %s: %v", j.Name, err)
	}
}

// waitJobs waits until the ScaledJob has exactly want Jobs in all, and
// returns how long it took.
func waitJobs(t *testing.T, namespace, scaledJob string, want int, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		n := len(jobs(t, namespace, scaledJob))
		if n == want {
			return time.Since(start)
		}
		if n > want {
			t.Fatalf("%s/%s: %d Jobs, want %d", namespace, scaledJob, n, want)
		}
		if time.Since(start) > limit {
			t.Fatalf("%s/%s: %d Jobs after %s, want %d", namespace, scaledJob, n, limit, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// holdJobs asserts the ScaledJob keeps exactly want Jobs for d.
func holdJobs(t *testing.T, namespace, scaledJob string, want int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if n := len(jobs(t, namespace, scaledJob)); n != want {
			t.Fatalf("%s/%s: %d Jobs, want %d to hold for %s", namespace, scaledJob, n, want, d)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func scaledJobStatus(t *testing.T, namespace, name string) kedav1alpha1.ScaledJob {
	t.Helper()
	var sj kedav1alpha1.ScaledJob
	if err := env.kube.Get(context.Background(), ctrlclient.ObjectKey{Namespace: namespace, Name: name}, &sj); err != nil {
		t.Fatal(err)
	}
	return sj
}

// events returns the notes of the events about an object.
func events(t *testing.T, namespace, name string) []string {
	t.Helper()
	l, err := env.cluster.Kube.CoreV1().Events(namespace).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range l.Items {
		out = append(out, e.Reason+": "+e.Message)
	}
	return out
}

func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	if err := waitUntil(context.Background(), limit, what, cond); err != nil {
		t.Fatalf("timed out after %s waiting for %s", limit, what)
	}
	return time.Since(start)
}

// lineWith returns the first line of a log file holding every part.
func lineWith(path string, parts ...string) string {
	b, _ := os.ReadFile(path)
	return lineIn(string(b), parts...)
}

// lineIn returns the first line of text holding every part.
func lineIn(text string, parts ...string) string {
next:
	for _, l := range strings.Split(text, "\n") {
		for _, p := range parts {
			if !strings.Contains(l, p) {
				continue next
			}
		}
		return l
	}
	return ""
}

// waitReconciled waits until KEDA has reconciled a new ScaledJob (its
// finalizer set, Ready=True) and one polling interval more. KEDA v2.21
// reconciles a new ScaledJob twice (adding the finalizer is an update) and
// restarts its scale loop each time; a Job POST of the first loop can be
// cancelled client-side after the API server created it, and the next loop
// then creates one Job too many. Jobs queued after this wait meet one loop.
func waitReconciled(t *testing.T, namespace string, names ...string) {
	t.Helper()
	for _, name := range names {
		waitFor(t, namespace+"/"+name+" reconciled by KEDA", time.Minute, func() bool {
			sj := scaledJobStatus(t, namespace, name)
			ready := sj.Status.Conditions.GetReadyCondition()
			return slices.Contains(sj.Finalizers, "finalizer.keda.sh") && ready.IsTrue()
		})
	}
	time.Sleep(pollingInterval)
}

// podSim plays the kubelet and the agent for the Jobs KEDA creates in a
// namespace (the tier has no kubelet): each Job's pod starts after
// startDelay, its agent, named after the pod as the chart names it and
// with its ScaledJob's capabilities, comes online in the pool and takes the
// job the fake Azure DevOps dispatches to it (the oldest it can run, as
// Azure DevOps does), runs it for runFor, deregisters, and the Job
// completes. An agent no job reaches within the pod's AZP_IDLE_TIMEOUT
// leaves, and its Job completes too, as start.sh does.
type podSim struct {
	ns         string
	more       []string // further namespaces it plays the pods of
	pods       bool     // create each Job's Pod object, labelled as KEDA and the Job controller label it, and delete it when it ends
	org        *fakeazdo.Org
	pool       int
	caps       map[string]map[string]string // by ScaledJob
	startDelay time.Duration
	runFor     time.Duration

	mu        sync.Mutex
	seen      map[string]time.Time // Job name -> when KEDA created it
	agents    map[int]*simAgent
	created   int
	idleExits int
	// standbyAnswers counts the standby endpoint's answers: stay, leave.
	standbyStay, standbyLeave int
	// mostUnfinished is the most Jobs of its ScaledJobs unfinished at once.
	mostUnfinished int
	refused        []string          // pods the API server refused to create
	ranBy          map[uint64]string // job request -> ScaledJob whose pod ran it
}

type simAgent struct {
	ns         string
	pod        string
	job        string // the Kubernetes Job
	scaledJob  string
	idle       time.Duration
	online     time.Time
	request    uint64
	assignedAt time.Time
	// As start.sh does: at the idle deadline an agent with a standby URL
	// asks the scaler whether it stays, and asks again every check.
	deadline   time.Time
	standbyURL string
	check      time.Duration
}

func startPodSim(t *testing.T, s *podSim) {
	s.seen, s.agents, s.ranBy = map[string]time.Time{}, map[int]*simAgent{}, map[uint64]string{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			s.step(t)
			time.Sleep(100 * time.Millisecond)
		}
	}()
}

func (s *podSim) step(t *testing.T) {
	var l batchv1.JobList
	for _, ns := range append([]string{s.ns}, s.more...) {
		var one batchv1.JobList
		if err := env.kube.List(context.Background(), &one, ctrlclient.InNamespace(ns)); err != nil {
			return
		}
		l.Items = append(l.Items, one.Items...)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	unfinished := 0
	for _, j := range l.Items {
		if !finished(j) && s.caps[j.Labels["scaledjob.keda.sh/name"]] != nil {
			unfinished++
		}
	}
	s.mostUnfinished = max(s.mostUnfinished, unfinished)
	for _, j := range l.Items {
		sj := j.Labels["scaledjob.keda.sh/name"]
		if _, ok := s.seen[j.Namespace+"/"+j.Name]; ok || finished(j) || s.caps[sj] == nil {
			continue
		}
		s.seen[j.Namespace+"/"+j.Name] = now
		s.created++
		go func(j batchv1.Job) { // the pod starts, its agent registers
			time.Sleep(s.startDelay)
			idle, check, standbyURL := 5*time.Minute, 30*time.Second, ""
			for _, c := range j.Spec.Template.Spec.Containers {
				for _, e := range c.Env {
					secs, err := strconv.Atoi(e.Value)
					switch {
					case e.Name == "AZP_IDLE_TIMEOUT" && err == nil:
						idle = time.Duration(secs) * time.Second
					case e.Name == "AZP_STANDBY_CHECK" && err == nil:
						check = time.Duration(secs) * time.Second
					case e.Name == "AZP_STANDBY_URL":
						standbyURL = e.Value
					}
				}
			}
			pod := j.Name + "-" + randomName(5)
			if s.pods {
				p := &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{Namespace: j.Namespace, Name: pod,
						Labels: map[string]string{"scaledjob.keda.sh/name": sj, "batch.kubernetes.io/job-name": j.Name}},
					Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "agent", Image: "localhost/agent:sim"}}},
				}
				if err := env.kube.Create(context.Background(), p); err != nil {
					// Refused (a ResourceQuota, admission): as for the Job
					// controller, no pod, so no agent.
					s.mu.Lock()
					s.refused = append(s.refused, fmt.Sprintf("%s/%s: %v", j.Namespace, pod, err))
					s.mu.Unlock()
					return
				}
			}
			id := s.org.AddAgent(s.pool, fakeazdo.Agent{Name: pod, Online: true, Capabilities: s.caps[sj]})
			s.mu.Lock()
			now := time.Now()
			s.agents[id] = &simAgent{ns: j.Namespace, pod: pod, job: j.Name, scaledJob: sj, idle: idle, online: now,
				deadline: now.Add(idle), standbyURL: standbyURL, check: check}
			s.mu.Unlock()
		}(j)
	}
	for req, agentID := range s.org.Dispatch(s.pool) {
		if a := s.agents[agentID]; a != nil {
			a.request, a.assignedAt = req, now
			s.ranBy[req] = a.scaledJob
		}
	}
	for id, a := range s.agents {
		switch {
		case a.request != 0 && now.Sub(a.assignedAt) >= s.runFor:
			_ = s.org.FinishJob(a.request, "succeeded")
		case a.request == 0 && !now.Before(a.deadline):
			if a.standbyURL != "" && askStandby(a) {
				s.standbyStay++
				a.deadline = now.Add(a.check)
				continue
			}
			if a.standbyURL != "" {
				s.standbyLeave++
			}
			s.idleExits++
		default:
			continue
		}
		if err := s.org.RemoveAgent(s.pool, id); err != nil {
			t.Errorf("agent of %s: %v", a.job, err)
		}
		var j batchv1.Job
		if err := env.kube.Get(context.Background(), ctrlclient.ObjectKey{Namespace: a.ns, Name: a.job}, &j); err == nil {
			completeJob(t, j)
		}
		if s.pods {
			_ = env.kube.Delete(context.Background(), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: a.ns, Name: a.pod}})
		}
		delete(s.agents, id)
	}
}

// jobsPage is a scaler's /api/v1/jobs for one pool, as far as the tests
// read it; nil when it does not answer.
type jobsPage struct {
	Pools []struct {
		Triggers []struct {
			Label   string `json:"scaledJob"`
			Standby *struct {
				Wanted int    `json:"wanted"`
				Why    string `json:"why"`
				Ready  int    `json:"ready"`
				Used   int    `json:"used"`
			} `json:"standby"`
		} `json:"triggers"`
		Jobs []struct {
			ID     uint64 `json:"requestId"`
			Reason string `json:"reason"`
			Why    string `json:"why"`
		} `json:"jobs"`
	} `json:"pools"`
}

func (s *Scaler) jobsPage(pool string) *jobsPage {
	resp, err := http.Get("http://" + s.HTTPAddr + "/api/v1/jobs?pool=" + url.QueryEscape(pool))
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var page jobsPage
	if json.NewDecoder(resp.Body).Decode(&page) != nil {
		return nil
	}
	return &page
}

// askStandby asks the scaler's standby endpoint, as start.sh does, whether
// an idle agent stays; any failure is no.
func askStandby(a *simAgent) bool {
	u := a.standbyURL + "?" + url.Values{"namespace": {a.ns}, "pod": {a.pod}}.Encode()
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var answer struct {
		Stay bool `json:"stay"`
	}
	return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&answer) == nil && answer.Stay
}

// unfinishedAgents returns the simulated agents alive now: idle, and with
// a job.
func (s *podSim) unfinishedAgents() (idle, busy int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.agents {
		if a.request == 0 {
			idle++
		} else {
			busy++
		}
	}
	return idle, busy
}

// counts returns Jobs created, idle exits, and which ScaledJob's pod ran
// each job request.
func (s *podSim) counts() (created, idleExits int, ranBy map[uint64]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ranBy = map[uint64]string{}
	for k, v := range s.ranBy {
		ranBy[k] = v
	}
	return s.created, s.idleExits, ranBy
}

// busy reports whether a pod of the simulation is still running.
func (s *podSim) busy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.agents) > 0 {
		return true
	}
	for _, at := range s.seen {
		if time.Since(at) < s.startDelay+time.Second {
			return true // its agent has not registered yet
		}
	}
	return false
}

func randomName(n int) string {
	const alphabet = "bcdfghjklmnpqrstvwxz2456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rand.IntN(len(alphabet))]
	}
	return string(b)
}

// helmUpgrade is a real `helm upgrade` of a release, with new values.
func helmUpgrade(t *testing.T, chart, namespace, release string, values map[string]any) {
	t.Helper()
	cfg, ch := helmSetup(t, chart, namespace)
	upgrade := action.NewUpgrade(cfg)
	upgrade.Namespace, upgrade.Timeout = namespace, time.Minute
	if _, err := upgrade.Run(release, ch, values); err != nil {
		t.Fatalf("helm upgrade %s %s -n %s: %v", release, chart, namespace, err)
	}
}
