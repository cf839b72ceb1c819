// Command bench measures azdo-keda-scaler side by side with KEDA's built-in
// azure-pipelines scaler, in one process and one run, against the project's
// fake Azure DevOps, driving both the way KEDA does: the built-in through
// scalers.NewAzurePipelinesScaler, ours through KEDA's own external scaler
// client (scalers.NewExternalScaler). It writes docs/benchmarks.md and PNGs.
//
//	make bench   (or: cd test/bench && go run . -out ../../docs)
//
// Time is simulated: one KEDA polling interval (5 s) is -tick of real
// time, and every duration of our scaler is scaled the same way, so that a
// simulated minute takes 6 s. Each side is run in every configuration the
// tables name: the built-in in its default and in its best documented
// configuration for the workload, ours in its defaults and with the
// settings that trade freshness for fewer calls.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/app"
	"github.com/go-logr/logr"
	"github.com/kedacore/keda/v2/pkg/scalers"
	"github.com/kedacore/keda/v2/pkg/scalers/scalersconfig"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

const (
	pat     = "bench-pat"
	simPoll = 5 * time.Second // KEDA's pollingInterval, simulated
)

var (
	tick   = flag.Duration("tick", 500*time.Millisecond, "real time of one simulated 5 s KEDA polling interval (at least 500ms: our --refresh-interval must stay at least 1s)")
	outDir = flag.String("out", "../../docs", "where benchmarks.md and the PNGs go")
	bin    = flag.String("scaler-bin", "../../bin/azdo-keda-scaler", "scaler binary, for the resident-memory measurement")
	seed   = flag.Uint64("seed", 1, "seed of the polling phases and job arrival times")
	only   = flag.String("only", "", "run one section and print it instead of writing the report (budget, overlap, p99, standby)")
)

// toReal turns a simulated duration into real time; toSim does the reverse.
func toReal(d time.Duration) time.Duration { return d * *tick / simPoll }
func toSim(d time.Duration) time.Duration  { return d * simPoll / *tick }

// builtinConfig is one configuration of KEDA's built-in scaler: its
// metadata on top of the trigger's own (pool, organization, demands...).
type builtinConfig struct {
	label    string
	settings string
	metadata map[string]string
}

var (
	builtinDefault = builtinConfig{"built-in, defaults",
		"`jobsToFetch: 250`, `fetchUnfinishedJobsOnly: false`, `scaleOnInFlight: true` (all defaults)", map[string]string{}}
	builtinUnfinished = builtinConfig{"built-in, fetchUnfinishedJobsOnly",
		"`fetchUnfinishedJobsOnly: \"true\"` (asks for unfinished requests only, as ours does), other settings default",
		map[string]string{"fetchUnfinishedJobsOnly": "true"}}
)

// oursConfig is one configuration of our scaler: an instance of its own,
// with organizations of its own in the fake (prefix), so that the requests
// each configuration makes are counted apart.
type oursConfig struct {
	label      string
	prefix     string
	minRefresh time.Duration // simulated
	inst       *app.Instance
}

// Our background refresh and the wait for a demand refresh, simulated; both
// are the defaults.
const (
	oursRefresh = 10 * time.Second
	oursWait    = 2 * time.Second
)

var (
	oursDefault = &oursConfig{label: "ours, defaults", prefix: "ou-", minRefresh: 2 * time.Second}
	oursConfigs = []*oursConfig{
		oursDefault,
		{label: "ours, --min-refresh-interval 5s", prefix: "o5-", minRefresh: 5 * time.Second},
		{label: "ours, --min-refresh-interval 10s", prefix: "o10-", minRefresh: 10 * time.Second},
	}
)

func (c *oursConfig) settings() string {
	return fmt.Sprintf("`--refresh-interval %s --min-refresh-interval %s --refresh-wait %s --azdo-qps 0` (automatic), `routing: exclusive`",
		oursRefresh, c.minRefresh, oursWait)
}

type env struct {
	fake *fakeazdo.Server
	orgs map[string]*fakeazdo.Org
	rng  *rand.Rand
}

// prefixes are the fake organizations of one workload: the built-in's,
// and one per configuration of ours.
func prefixes() []string {
	p := []string{"bi-"}
	for _, c := range oursConfigs {
		p = append(p, c.prefix)
	}
	return p
}

func main() {
	flag.Parse()
	ctrllog.SetLogger(logr.Discard()) // KEDA's scalers log through controller-runtime
	if *tick < 500*time.Millisecond {
		fmt.Fprintln(os.Stderr, "bench: -tick must be at least 500ms")
		os.Exit(2)
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx := context.Background()
	e := &env{fake: fakeazdo.New(), orgs: map[string]*fakeazdo.Org{}, rng: rand.New(rand.NewPCG(*seed, 0))}
	if err := e.fake.Start(); err != nil {
		return err
	}
	defer e.fake.Close()

	// Every workload's organizations exist before our scalers start, so
	// that their configuration files list them.
	workloads := []string{"mixed", "busy", "overlap", "latency-1", "latency-3", "p99", "budget"}
	for _, s := range loadSizes {
		workloads = append(workloads, loadOrg(s))
	}
	for _, w := range workloads {
		for _, p := range prefixes() {
			e.org(p + w)
		}
	}
	for _, c := range oursConfigs {
		if err := e.startOurs(c, workloads); err != nil {
			return err
		}
		defer c.inst.Stop()
	}

	rep := &report{}
	var err error
	printf := func(format string, a ...any) { fmt.Printf(format, a...) }
	switch *only {
	case "budget":
		if rep.budget, err = e.budget(ctx); err != nil {
			return err
		}
		rep.writeBudget(printf)
		return nil
	case "overlap":
		if rep.overlap, err = e.overlap(ctx); err != nil {
			return err
		}
		rep.writeOverlap(printf)
		return nil
	case "standby":
		rep.standby = e.standby()
		rep.writeStandby(printf)
		return nil
	case "p99":
		r, err := e.p99(ctx)
		if err != nil {
			return err
		}
		printf("GetMetrics, 1,000 triggers on 20 pools, %d calls: p50 %s, p99 %s, max %s\n", r.calls, r.p50, r.p99, r.max)
		return nil
	}
	for _, s := range loadSizes {
		row, err := e.load(ctx, s)
		if err != nil {
			return err
		}
		rep.loads = append(rep.loads, row)
	}
	if rep.latency, err = e.latency(ctx); err != nil {
		return err
	}
	if rep.mixed, err = e.accuracy(ctx, "mixed", mixedWorkload); err != nil {
		return err
	}
	if rep.busy, err = e.accuracy(ctx, "busy", busyWorkload); err != nil {
		return err
	}
	if rep.overlap, err = e.overlap(ctx); err != nil {
		return err
	}
	if rep.budget, err = e.budget(ctx); err != nil {
		return err
	}
	rep.standby = e.standby()
	if rep.p99, err = e.p99(ctx); err != nil {
		return err
	}
	if rep.rss, err = e.residentMemory(); err != nil {
		return err
	}
	return rep.write(*outDir)
}

// startOurs starts one configuration of our scaler, in process.
func (e *env) startOurs(c *oursConfig, workloads []string) error {
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
	for _, w := range workloads {
		fmt.Fprintf(&b, "  - {name: %s, url: %q, patFile: %q}\n", w, e.fake.OrgURL(c.prefix+w), patFile)
	}
	cfgFile := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgFile, []byte(b.String()), 0o600); err != nil {
		return err
	}
	c.inst, err = app.StartArgs(context.Background(), []string{"--config", cfgFile, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--refresh-interval", toReal(oursRefresh).String(), "--min-refresh-interval", toReal(c.minRefresh).String(),
		"--refresh-wait", toReal(oursWait).String(), "--stale-after", "1m", "--sweep-interval", "0", "--placeholders=false",
		"--routing-warmup", "0s",
		// Pools of a finished workload stop soon, not to run under the next one's measurements.
		"--poller-idle-timeout", "3s", "--log-level", "error"},
		func(string) string { return "" }, io.Discard)
	return err
}

// org returns the fake organization, adding it on first use.
func (e *env) org(name string) *fakeazdo.Org {
	if o, ok := e.orgs[name]; ok {
		return o
	}
	e.orgs[name] = e.fake.AddOrg(name, pat)
	return e.orgs[name]
}

// addPools adds the same pools and jobs to every organization of a
// workload (the same order gives the same pool IDs) and returns their IDs.
func (e *env) addPools(workload string, n int, fill func(o *fakeazdo.Org, id int)) []int {
	var ids []int
	for i := range n {
		var id int
		for _, p := range prefixes() {
			o := e.org(p + workload)
			id = o.AddPool(fmt.Sprintf("pool-%d", i))
			fill(o, id)
		}
		ids = append(ids, id)
	}
	return ids
}

// queueEverywhere queues the same job in every organization of a workload.
func (e *env) queueEverywhere(workload string, poolID int, j fakeazdo.Job) {
	for _, p := range prefixes() {
		e.org(p+workload).QueueJob(poolID, j)
	}
}

// A probe is one ScaledJob's trigger as KEDA drives it.
type probe struct {
	s      scalers.Scaler
	metric string
}

func (p probe) value(ctx context.Context) (int, error) {
	m, _, err := p.s.GetMetricsAndActivity(ctx, p.metric)
	if err != nil {
		return 0, err
	}
	if len(m) != 1 {
		return 0, fmt.Errorf("%d metrics", len(m))
	}
	return int(m[0].Value.Value()), nil
}

func closeAll(ctx context.Context, ps []probe) {
	for _, p := range ps {
		_ = p.s.Close(ctx)
	}
}

// builtin builds KEDA's built-in scaler for a ScaledJob of a workload.
func (e *env) builtin(ctx context.Context, workload, name string, poolID int, cfg builtinConfig, md map[string]string) (probe, error) {
	all := maps.Clone(cfg.metadata)
	if all == nil {
		all = map[string]string{}
	}
	maps.Copy(all, md)
	return e.builtinAt(ctx, "bi-"+workload, name, poolID, all)
}

// builtinAt builds KEDA's built-in scaler for a ScaledJob on a pool of an
// organization, with its defaults and the given metadata.
func (e *env) builtinAt(ctx context.Context, org, name string, poolID int, md map[string]string) (probe, error) {
	all := map[string]string{"poolID": strconv.Itoa(poolID), "organizationURL": e.fake.OrgURL(org)}
	maps.Copy(all, md)
	sc, err := scalers.NewAzurePipelinesScaler(ctx, &scalersconfig.ScalerConfig{
		ScalableObjectName: name, ScalableObjectNamespace: "bench", ScalableObjectType: "ScaledJob",
		TriggerMetadata: all, AuthParams: map[string]string{"personalAccessToken": pat}, GlobalHTTPTimeout: 10 * time.Second,
	})
	if err != nil {
		return probe{}, fmt.Errorf("built-in scaler %v: %w", all, err)
	}
	return probe{sc, "s0-azure-pipelines"}, nil
}

// ours builds KEDA's external scaler client for a ScaledJob of a workload,
// talking to one configuration of our scaler.
func (e *env) ours(ctx context.Context, c *oursConfig, workload, name string, poolID int, md map[string]string) (probe, error) {
	all := map[string]string{"scalerAddress": c.inst.GRPCAddr, "organization": workload, "poolID": strconv.Itoa(poolID)}
	for k, v := range md {
		all[k] = v
	}
	s, err := scalers.NewExternalScaler(&scalersconfig.ScalerConfig{
		ScalableObjectName: name, ScalableObjectNamespace: "bench", ScalableObjectType: "ScaledJob",
		TriggerMetadata: all, GlobalHTTPTimeout: 10 * time.Second,
	})
	if err != nil {
		return probe{}, fmt.Errorf("external scaler: %w", err)
	}
	specs := s.GetMetricSpecForScaling(ctx)
	if len(specs) != 1 {
		return probe{}, fmt.Errorf("our scaler gave %d metric specs for %v", len(specs), all)
	}
	return probe{s, specs[0].External.Metric.Name}, nil
}

// phases gives n ScaledJobs the random offsets within a polling interval
// at which KEDA polls them: each ScaledJob's loop starts when it is
// reconciled, so their polls are spread, not aligned.
func (e *env) phases(n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = time.Duration(e.rng.Int64N(int64(*tick)))
	}
	return out
}

func sleepUntil(t time.Time) {
	if d := time.Until(t); d > 0 {
		time.Sleep(d)
	}
}
