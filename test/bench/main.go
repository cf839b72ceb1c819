// Command bench measures azdo-keda-scaler side by side with KEDA's built-in
// azure-pipelines scaler, in one process and one run, against the project's
// fake Azure DevOps, driving both the way KEDA does: the built-in through
// scalers.NewAzurePipelinesScaler, ours through KEDA's own external scaler
// client (scalers.NewExternalScaler). It writes docs/benchmarks.md and a PNG.
//
//	make bench   (or: cd test/bench && go run . -out ../../docs)
//
// Time is simulated: one KEDA polling interval (5 s) is -tick of real time,
// and our --refresh-interval (10 s) is two ticks.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/app"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/config"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/fakeazdo"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/logging"
	"github.com/kedacore/keda/v2/pkg/scalers"
	"github.com/kedacore/keda/v2/pkg/scalers/scalersconfig"
)

const (
	pat        = "bench-pat"
	simPoll    = 5 * time.Second  // KEDA pollingInterval, simulated
	simRefresh = 10 * time.Second // our --refresh-interval, simulated
)

var (
	tick   = flag.Duration("tick", 500*time.Millisecond, "real time of one simulated 5 s KEDA polling interval")
	outDir = flag.String("out", "../../docs", "where benchmarks.md and benchmarks-requests.png go")
	bin    = flag.String("scaler-bin", "../../bin/azdo-keda-scaler", "scaler binary, for the resident-memory measurement")
)

// realRefresh is our refresh interval in real time.
func realRefresh() time.Duration { return *tick * time.Duration(simRefresh/simPoll) }

type env struct {
	fake *fakeazdo.Server
	orgs map[string]*fakeazdo.Org
	ours *app.Instance
}

// A trigger is one ScaledJob's trigger, for both scalers.
type trigger struct {
	org        string
	poolID     int
	builtin    map[string]string // the built-in's metadata (demands...)
	ours       map[string]string // ours (capabilities...)
	bi, ou     scalers.Scaler
	metricName string
}

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx := context.Background()
	e := &env{fake: fakeazdo.New(), orgs: map[string]*fakeazdo.Org{}}
	if err := e.fake.Start(); err != nil {
		return err
	}
	defer e.fake.Close()
	rep := &report{}

	// Every workload gets its own pair of organizations (one per scaler),
	// created before our scaler starts so that its config lists them.
	type load struct{ s, p int }
	var loads []load
	for _, s := range []int{1, 10, 50, 200} {
		for _, p := range []int{1, 5, 20} {
			if p <= s {
				loads = append(loads, load{s, p})
			}
		}
	}
	var orgs []string
	for _, l := range loads {
		orgs = append(orgs, fmt.Sprintf("load-s%d-p%d", l.s, l.p))
	}
	orgs = append(orgs, "mixed", "busy", "latency", "p99", "overlap")
	for _, o := range orgs {
		e.org("bi-" + o)
		e.org("ou-" + o)
	}
	if err := e.startOurs(orgs); err != nil {
		return err
	}
	defer e.ours.Stop()

	for _, l := range loads {
		r, err := e.loadWorkload(ctx, fmt.Sprintf("load-s%d-p%d", l.s, l.p), l.s, l.p)
		if err != nil {
			return err
		}
		rep.loads = append(rep.loads, r)
		fmt.Printf("load S=%d P=%d: built-in %.0f req/min, ours %.0f req/min\n", l.s, l.p, r.biReq, r.ouReq)
	}
	var err error
	if rep.mixed, err = e.accuracy(ctx, "mixed", mixedWorkload); err != nil {
		return err
	}
	if rep.busy, err = e.accuracy(ctx, "busy", busyWorkload); err != nil {
		return err
	}
	if rep.overlap, err = e.overlap(ctx); err != nil {
		return err
	}
	if rep.latency, err = e.latency(ctx); err != nil {
		return err
	}
	if rep.p99, err = e.p99(ctx); err != nil {
		return err
	}
	if rep.rss, err = e.residentMemory(); err != nil {
		return err
	}
	return rep.write(*outDir)
}

func (e *env) startOurs(orgs []string) error {
	dir, err := os.MkdirTemp("", "bench")
	if err != nil {
		return err
	}
	patFile := filepath.Join(dir, "pat")
	if err := os.WriteFile(patFile, []byte(pat), 0o600); err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString("organizations:\n")
	for _, o := range orgs {
		fmt.Fprintf(&b, "  - {name: %s, url: %q, patFile: %q}\n", o, e.fake.OrgURL("ou-"+o), patFile)
	}
	cfgFile := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgFile, []byte(b.String()), 0o600); err != nil {
		return err
	}
	flags, err := config.Parse("bench", []string{"--config", cfgFile, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--refresh-interval", realRefresh().String(), "--stale-after", "1m", "--sweep-interval", "0", "--azdo-qps", "1000",
		"--routing-warmup", "0s"},
		func(string) string { return "" }, io.Discard)
	if err != nil {
		return err
	}
	log, red, err := logging.New(io.Discard, "text", "error")
	if err != nil {
		return err
	}
	e.ours, err = app.Start(context.Background(), flags, log, red, io.Discard)
	return err
}

// newScalers builds both scalers for a trigger.
func (e *env) newScalers(ctx context.Context, t *trigger, index int) error {
	biMD := map[string]string{"poolID": strconv.Itoa(t.poolID), "organizationURL": e.fake.OrgURL("bi-" + t.org)}
	for k, v := range t.builtin {
		biMD[k] = v
	}
	var err error
	t.bi, err = scalers.NewAzurePipelinesScaler(ctx, &scalersconfig.ScalerConfig{
		ScalableObjectName: fmt.Sprintf("sj-%d", index), ScalableObjectNamespace: "bench", ScalableObjectType: "ScaledJob",
		TriggerMetadata: biMD, AuthParams: map[string]string{"personalAccessToken": pat},
		GlobalHTTPTimeout: 10 * time.Second, TriggerIndex: 0,
	})
	if err != nil {
		return fmt.Errorf("built-in scaler: %w", err)
	}
	ouMD := map[string]string{"scalerAddress": e.ours.GRPCAddr, "organization": t.org, "poolID": strconv.Itoa(t.poolID)}
	for k, v := range t.ours {
		ouMD[k] = v
	}
	t.ou, err = scalers.NewExternalScaler(&scalersconfig.ScalerConfig{
		ScalableObjectName: fmt.Sprintf("sj-%d", index), ScalableObjectNamespace: "bench", ScalableObjectType: "ScaledJob",
		TriggerMetadata: ouMD, GlobalHTTPTimeout: 10 * time.Second, TriggerIndex: 0,
	})
	if err != nil {
		return fmt.Errorf("external scaler: %w", err)
	}
	specs := t.ou.GetMetricSpecForScaling(ctx)
	if len(specs) != 1 {
		return fmt.Errorf("our scaler gave %d metric specs for %v", len(specs), ouMD)
	}
	t.metricName = specs[0].External.Metric.Name
	return nil
}

func value(ctx context.Context, s scalers.Scaler, metric string) (int, error) {
	m, _, err := s.GetMetricsAndActivity(ctx, metric)
	if err != nil {
		return 0, err
	}
	if len(m) != 1 {
		return 0, fmt.Errorf("%d metrics", len(m))
	}
	return int(m[0].Value.Value()), nil
}

// addPools adds the same pools and jobs to both organizations of a workload.
func (e *env) addPools(org string, n int, fill func(o *fakeazdo.Org, id int)) []int {
	var ids []int
	for i := range n {
		var id int
		for _, side := range []string{"bi-", "ou-"} {
			o := e.org(side + org)
			id = o.AddPool(fmt.Sprintf("pool-%d", i))
			fill(o, id)
		}
		ids = append(ids, id)
	}
	return ids
}

// org returns the fake organization, adding it on first use.
func (e *env) org(name string) *fakeazdo.Org {
	if o, ok := e.orgs[name]; ok {
		return o
	}
	e.orgs[name] = e.fake.AddOrg(name, pat)
	return e.orgs[name]
}

type loadResult struct {
	s, p                     int
	biReq, ouReq, biKB, ouKB float64
	biCPU, ouCPU             time.Duration // per poll cycle
	biAllocs, ouAllocs       uint64        // per poll cycle
}

// loadWorkload: S ScaledJobs over P pools, polled for one simulated minute
// (12 cycles) by each scaler in turn.
func (e *env) loadWorkload(ctx context.Context, org string, s, p int) (loadResult, error) {
	ids := e.addPools(org, p, func(o *fakeazdo.Org, id int) {
		for range 5 {
			o.QueueJob(id, fakeazdo.Job{Demands: []string{"Agent.OS -equals Linux"}})
		}
	})
	var ts []*trigger
	for i := range s {
		t := &trigger{org: org, poolID: ids[i%p]}
		if err := e.newScalers(ctx, t, i); err != nil {
			return loadResult{}, err
		}
		ts = append(ts, t)
	}
	r := loadResult{s: s, p: p}
	const cycles = 12 // one simulated minute
	measure := func(side string, call func(t *trigger) error) (req, kb float64, cpu time.Duration, allocs uint64, err error) {
		// Settle: our pollers start on the first call.
		for _, t := range ts {
			if err := call(t); err != nil {
				return 0, 0, 0, 0, err
			}
		}
		time.Sleep(*tick)
		calls0 := e.fake.Calls(side+org, fakeazdo.JobRequests)
		bytes0 := e.fake.BytesServed(side+org, fakeazdo.JobRequests)
		cpu0, m0 := cpuTime(), mallocs()
		start := time.Now()
		for c := range cycles {
			for _, t := range ts {
				if err := call(t); err != nil {
					return 0, 0, 0, 0, err
				}
			}
			// Wait for the next tick, as KEDA's polling loop does.
			if next := start.Add(time.Duration(c+1) * *tick); time.Until(next) > 0 {
				time.Sleep(time.Until(next))
			}
		}
		cpu = (cpuTime() - cpu0) / cycles
		allocs = (mallocs() - m0) / cycles
		// Per simulated minute: 12 cycles when they kept to time; if they
		// overran, our pollers ran longer too, which counts against us.
		req = float64(e.fake.Calls(side+org, fakeazdo.JobRequests) - calls0)
		kb = float64(e.fake.BytesServed(side+org, fakeazdo.JobRequests)-bytes0) / 1024
		return req, kb, cpu, allocs, nil
	}
	var err error
	if r.biReq, r.biKB, r.biCPU, r.biAllocs, err = measure("bi-", func(t *trigger) error {
		_, err := value(ctx, t.bi, "s0-azure-pipelines")
		return err
	}); err != nil {
		return r, err
	}
	if r.ouReq, r.ouKB, r.ouCPU, r.ouAllocs, err = measure("ou-", func(t *trigger) error {
		_, err := value(ctx, t.ou, t.metricName)
		return err
	}); err != nil {
		return r, err
	}
	for _, t := range ts {
		_ = t.bi.Close(ctx)
		_ = t.ou.Close(ctx)
	}
	return r, nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func mallocs() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.Mallocs
}

// accuracyRow is one ScaledJob's count against the ground truth.
type accuracyRow struct {
	name         string
	filter       string
	truth        int
	builtin, our int
}

type workload func(e *env, org string) []accuracyCase

type accuracyCase struct {
	name    string
	poolID  int
	builtin map[string]string
	ours    map[string]string
	truth   int
}

// mixedWorkload: one pool with Linux, Linux+Docker, Windows and GPU jobs and
// four ScaledJobs, each configured as its user would: the built-in with
// `demands` (KEDA's documented way), ours with the agent's capabilities.
func mixedWorkload(e *env, org string) []accuracyCase {
	linux := []string{"Agent.OS -equals Linux"}
	docker := []string{"Agent.OS -equals Linux", "docker"}
	windows := []string{"Agent.OS -equals Windows_NT"}
	gpu := []string{"Agent.OS -equals Linux", "gpu", "cuda -gtVersion 11.0"}
	ids := e.addPools(org, 1, func(o *fakeazdo.Org, id int) {
		for _, j := range []struct {
			d []string
			n int
		}{{linux, 4}, {docker, 3}, {windows, 2}, {gpu, 1}} {
			for range j.n {
				o.QueueJob(id, fakeazdo.Job{Demands: j.d})
			}
		}
	})
	id := ids[0]
	return []accuracyCase{
		// A Docker-capable Linux agent runs Linux jobs and Docker jobs: 4+3.
		{"linux-docker", id, map[string]string{"demands": "Agent.OS -equals Linux,docker"}, map[string]string{"capabilities": "Agent.OS=Linux,docker"}, 7},
		{"linux", id, map[string]string{"demands": "Agent.OS -equals Linux"}, map[string]string{"capabilities": "Agent.OS=Linux"}, 4},
		{"windows", id, map[string]string{"demands": "Agent.OS -equals Windows_NT"}, map[string]string{"capabilities": "Agent.OS=Windows_NT"}, 2},
		// A GPU agent (Linux, gpu, CUDA 12.2) runs Linux jobs and the GPU job: 4+1.
		{"gpu", id, map[string]string{"demands": "Agent.OS -equals Linux,gpu,cuda -gtVersion 11.0", "requireAllDemands": "true"},
			map[string]string{"capabilities": "Agent.OS=Linux,gpu,cuda=12.2"}, 5},
	}
}

// busyWorkload: a busy pool whose newest 250 requests are finished while 20
// older ones still wait.
func busyWorkload(e *env, org string) []accuracyCase {
	ids := e.addPools(org, 1, func(o *fakeazdo.Org, id int) {
		for range 20 {
			o.QueueJob(id, fakeazdo.Job{})
		}
		for range 250 {
			r := o.QueueJob(id, fakeazdo.Job{})
			_ = o.FinishJob(r, "succeeded")
		}
	})
	return []accuracyCase{{"busy-pool", ids[0], map[string]string{}, map[string]string{}, 20}}
}

func (e *env) accuracy(ctx context.Context, org string, w workload) ([]accuracyRow, error) {
	var rows []accuracyRow
	for i, c := range w(e, org) {
		// Each ScaledJob on its own, as the built-in counts: routing shared.
		ours := map[string]string{"routing": "shared"}
		for k, v := range c.ours {
			ours[k] = v
		}
		t := &trigger{org: org, poolID: c.poolID, builtin: c.builtin, ours: ours}
		if err := e.newScalers(ctx, t, 1000+i); err != nil {
			return nil, err
		}
		_, _ = value(ctx, t.ou, t.metricName)
		time.Sleep(2 * realRefresh())
		bi, err := value(ctx, t.bi, "s0-azure-pipelines")
		if err != nil {
			return nil, err
		}
		ou, err := value(ctx, t.ou, t.metricName)
		if err != nil {
			return nil, err
		}
		filter := c.builtin["demands"]
		if filter == "" {
			filter = "(none)"
		}
		rows = append(rows, accuracyRow{name: c.name, filter: fmt.Sprintf("built-in demands %q; ours capabilities %q", filter, c.ours["capabilities"]), truth: c.truth, builtin: bi, our: ou})
	}
	return rows, nil
}

// overlapKinds are the jobs of the overlap workload: demands and how many.
var overlapKinds = []struct {
	name    string
	demands []string
	n       int
}{
	{"plain", []string{"Agent.OS -equals Linux"}, 4},
	{"docker", []string{"Agent.OS -equals Linux", "docker"}, 3},
	{"gpu", []string{"Agent.OS -equals Linux", "docker", "cuda -gtVersion 12.0"}, 2},
	{"docker-only", []string{"docker"}, 1},
}

// overlapTemplates are the three agent templates sharing the pool: their
// capabilities (ours), the demand strings a built-in user writes for them,
// and the placeholder agent a parent trigger names.
var overlapTemplates = []struct {
	name, caps, demands string
	agentCaps           map[string]string
}{
	{"plain", "Agent.OS=Linux", "Agent.OS -equals Linux", map[string]string{"Agent.OS": "Linux"}},
	{"docker", "Agent.OS=Linux,docker", "Agent.OS -equals Linux,docker", map[string]string{"Agent.OS": "Linux", "docker": ""}},
	{"gpu", "Agent.OS=Linux,docker,cuda=12.4", "Agent.OS -equals Linux,docker,cuda -gtVersion 12.0", map[string]string{"Agent.OS": "Linux", "docker": "", "cuda": "12.4"}},
}

// overlapConfig is one way to configure the three ScaledJobs.
type overlapConfig struct {
	side     string // "built-in" or "ours"
	settings string // every setting, for the table
	metadata func(tpl int) map[string]string
}

var overlapConfigs = []overlapConfig{
	{"built-in", "`demands` = the template's demand strings; defaults otherwise (`requireAllDemands: false`, `scaleOnInFlight: true`, `jobsToFetch: 250`)",
		func(i int) map[string]string { return map[string]string{"demands": overlapTemplates[i].demands} }},
	{"built-in", "`demands` = the template's demand strings, `requireAllDemands: \"true\"` (KEDA's documented way to keep templates apart), `fetchUnfinishedJobsOnly: \"true\"`",
		func(i int) map[string]string {
			return map[string]string{"demands": overlapTemplates[i].demands, "requireAllDemands": "true", "fetchUnfinishedJobsOnly": "true"}
		}},
	{"built-in", "`parent` = the template's registered, offline placeholder agent, `fetchUnfinishedJobsOnly: \"true\"`",
		func(i int) map[string]string {
			return map[string]string{"parent": overlapTemplates[i].name + "-template", "fetchUnfinishedJobsOnly": "true"}
		}},
	{"ours", "`capabilities` = the template's capabilities; defaults otherwise (`routing: exclusive`)",
		func(i int) map[string]string { return map[string]string{"capabilities": overlapTemplates[i].caps} }},
	{"ours", "`capabilities` = the template's capabilities, `routing: shared` (counts like the built-in)",
		func(i int) map[string]string {
			return map[string]string{"capabilities": overlapTemplates[i].caps, "routing": "shared"}
		}},
}

// overlapRow is one configuration's pods requested for the workload.
type overlapRow struct {
	cfg      overlapConfig
	perSJ    []int
	total    int
	jobs     int
	unserved []string // kinds of job no ScaledJob counts
}

// overlap: three ScaledJobs share a pool whose jobs several of them can
// run. The sum of their counts is the pods KEDA starts; the need is one
// pod per job. Each kind of job is also probed alone, on a pool of its
// own, to find the jobs no ScaledJob counts (they would wait for ever).
func (e *env) overlap(ctx context.Context) ([]overlapRow, error) {
	fill := func(kinds []int) func(o *fakeazdo.Org, id int) {
		return func(o *fakeazdo.Org, id int) {
			for _, tpl := range overlapTemplates {
				o.AddAgent(id, fakeazdo.Agent{Name: tpl.name + "-template", Capabilities: tpl.agentCaps})
			}
			for _, k := range kinds {
				for range overlapKinds[k].n {
					o.QueueJob(id, fakeazdo.Job{Demands: overlapKinds[k].demands})
				}
			}
		}
	}
	all := make([]int, len(overlapKinds))
	for i := range all {
		all[i] = i
	}
	pools := e.addPools("overlap", 1, fill(all))
	var alone []int
	for k := range overlapKinds {
		alone = append(alone, e.addPools("overlap", 1, fill([]int{k}))[0])
	}
	jobs := 0
	for _, k := range overlapKinds {
		jobs += k.n
	}
	counts := func(cfg overlapConfig, pool, index int) ([]int, error) {
		type probe struct {
			s      scalers.Scaler
			metric string
		}
		var probes []probe
		for i := range overlapTemplates {
			t := &trigger{org: "overlap", poolID: pool}
			if cfg.side == "built-in" {
				t.builtin = cfg.metadata(i)
			} else {
				t.ours = cfg.metadata(i)
			}
			if err := e.newScalers(ctx, t, index+i); err != nil {
				return nil, err
			}
			p := probe{t.bi, "s0-azure-pipelines"}
			if cfg.side == "ours" {
				p = probe{t.ou, t.metricName}
			}
			// KEDA's first poll: our scaler learns the trigger.
			if _, err := value(ctx, p.s, p.metric); err != nil {
				return nil, err
			}
			probes = append(probes, p)
		}
		time.Sleep(2 * realRefresh())
		out := make([]int, len(probes))
		for i, p := range probes {
			v, err := value(ctx, p.s, p.metric)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	}
	var rows []overlapRow
	for c, cfg := range overlapConfigs {
		per, err := counts(cfg, pools[0], 3000+100*c)
		if err != nil {
			return nil, err
		}
		r := overlapRow{cfg: cfg, perSJ: per, jobs: jobs}
		for _, v := range per {
			r.total += v
		}
		for k, pool := range alone {
			one, err := counts(cfg, pool, 3000+100*c+10*(k+1))
			if err != nil {
				return nil, err
			}
			if one[0]+one[1]+one[2] == 0 {
				r.unserved = append(r.unserved, overlapKinds[k].name)
			}
		}
		rows = append(rows, r)
		fmt.Printf("overlap %s %s: %v = %d pods for %d jobs\n", cfg.side, cfg.settings, per, r.total, jobs)
	}
	return rows, nil
}

// latency: simulated seconds from a job entering the queue to the metric
// showing it, with KEDA polling every 5 s, over trials at random offsets.
type latencyResult struct{ biMean, biMax, ouMean, ouMax time.Duration }

func (e *env) latency(ctx context.Context) (latencyResult, error) {
	ids := e.addPools("latency", 1, func(*fakeazdo.Org, int) {})
	t := &trigger{org: "latency", poolID: ids[0]}
	if err := e.newScalers(ctx, t, 2000); err != nil {
		return latencyResult{}, err
	}
	const trials = 12
	var r latencyResult
	sim := func(d time.Duration) time.Duration { return d * simPoll / *tick }
	for i := range trials {
		// KEDA polls on its ticks; the job arrives somewhere in between.
		start := time.Now()
		offset := time.Duration(rand.Int64N(int64(*tick)))
		before := i
		for _, side := range []string{"bi-", "ou-"} {
			e.org(side+"latency").QueueJob(ids[0], fakeazdo.Job{})
		}
		queued := time.Now()
		var biSeen, ouSeen time.Duration
		for c := 1; biSeen == 0 || ouSeen == 0; c++ {
			next := start.Add(offset + time.Duration(c-1)*(*tick))
			time.Sleep(time.Until(next))
			if biSeen == 0 {
				if v, _ := value(ctx, t.bi, "s0-azure-pipelines"); v > before {
					biSeen = time.Since(queued)
				}
			}
			if ouSeen == 0 {
				if v, _ := value(ctx, t.ou, t.metricName); v > before {
					ouSeen = time.Since(queued)
				}
			}
			if c > 40 {
				return r, fmt.Errorf("job never showed")
			}
		}
		r.biMean += sim(biSeen) / trials
		r.ouMean += sim(ouSeen) / trials
		r.biMax = max(r.biMax, sim(biSeen))
		r.ouMax = max(r.ouMax, sim(ouSeen))
	}
	return r, nil
}

// p99 of our GetMetrics through KEDA's client, 1,000 triggers on 20 pools.
type p99Result struct {
	calls         int
	p50, p99, max time.Duration
}

func (e *env) p99(ctx context.Context) (p99Result, error) {
	ids := e.addPools("p99", 20, func(o *fakeazdo.Org, id int) {
		for range 10 {
			o.QueueJob(id, fakeazdo.Job{Demands: []string{"Agent.OS -equals Linux"}})
		}
	})
	var ts []*trigger
	for i := range 1000 {
		t := &trigger{org: "p99", poolID: ids[i%20], ours: map[string]string{"capabilities": fmt.Sprintf("Agent.OS=Linux,cap%d", i%50)}}
		// Ours only: the built-in would make 1,000 Azure DevOps calls per cycle.
		ouMD := map[string]string{"scalerAddress": e.ours.GRPCAddr, "organization": "p99", "poolID": strconv.Itoa(t.poolID), "capabilities": t.ours["capabilities"]}
		s, err := scalers.NewExternalScaler(&scalersconfig.ScalerConfig{ScalableObjectName: fmt.Sprintf("p99-%d", i), ScalableObjectNamespace: "bench",
			ScalableObjectType: "ScaledJob", TriggerMetadata: ouMD, GlobalHTTPTimeout: 10 * time.Second})
		if err != nil {
			return p99Result{}, err
		}
		t.ou = s
		t.metricName = s.GetMetricSpecForScaling(ctx)[0].External.Metric.Name
		ts = append(ts, t)
	}
	time.Sleep(2 * realRefresh())
	var lat []time.Duration
	for range 5 {
		for _, t := range ts {
			start := time.Now()
			if _, err := value(ctx, t.ou, t.metricName); err != nil {
				return p99Result{}, err
			}
			lat = append(lat, time.Since(start))
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return p99Result{calls: len(lat), p50: lat[len(lat)/2], p99: lat[len(lat)*99/100], max: lat[len(lat)-1]}, nil
}

// residentMemory runs the scaler binary with 200 pools in use and reads
// its resident set size.
func (e *env) residentMemory() (int64, error) {
	o := e.org("rss")
	dir, _ := os.MkdirTemp("", "rss")
	patFile := filepath.Join(dir, "pat")
	_ = os.WriteFile(patFile, []byte(pat), 0o600)
	var ids []int
	for i := range 200 {
		id := o.AddPool(fmt.Sprintf("pool-%d", i))
		for range 5 {
			o.QueueJob(id, fakeazdo.Job{Demands: []string{"Agent.OS -equals Linux"}})
		}
		ids = append(ids, id)
	}
	cfg := filepath.Join(dir, "config.yaml")
	_ = os.WriteFile(cfg, []byte(fmt.Sprintf("organizations:\n  - {name: rss, url: %q, patFile: %q}\n", e.fake.OrgURL("rss"), patFile)), 0o600)
	addr := "127.0.0.1:16999"
	cmd := exec.Command(*bin, "--config", cfg, "--grpc-addr", addr, "--http-addr", "127.0.0.1:0", "--refresh-interval", "1s",
		"--sweep-interval", "0", "--log-level", "error", "--azdo-qps", "1000")
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("%w (run make build first)", err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	time.Sleep(time.Second)
	ctx := context.Background()
	for i, id := range ids {
		s, err := scalers.NewExternalScaler(&scalersconfig.ScalerConfig{ScalableObjectName: fmt.Sprintf("rss-%d", i), ScalableObjectNamespace: "bench",
			ScalableObjectType: "ScaledJob", GlobalHTTPTimeout: 10 * time.Second,
			TriggerMetadata: map[string]string{"scalerAddress": addr, "poolID": strconv.Itoa(id), "capabilities": "Agent.OS=Linux"}})
		if err != nil {
			return 0, err
		}
		if len(s.GetMetricSpecForScaling(ctx)) != 1 {
			return 0, fmt.Errorf("pool %d: no metric spec", id)
		}
	}
	time.Sleep(5 * time.Second) // every poller has refreshed a few times
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			kb, _ := strconv.ParseInt(strings.Fields(l)[1], 10, 64)
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS")
}
