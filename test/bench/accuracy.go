package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo"
)

// accuracyRow is one ScaledJob's count, in one configuration, against the
// ground truth.
type accuracyRow struct {
	sj, side, settings string
	truth, count       int
}

// accuracyCase is one ScaledJob: the built-in configurations to run it in
// (default first, then the documented alternatives) and ours.
type accuracyCase struct {
	name    string
	poolID  int
	truth   int
	builtin []builtinConfig
	ours    map[string]string
}

type workload func(e *env, name string) []accuracyCase

// oursShared labels our rows of the accuracy tables: defaults but for
// `routing: shared`.
const oursShared = "ours, routing: shared"

// demandsConfig is a built-in configuration with `demands` and optional
// settings, named by what differs from the default.
func demandsConfig(label, demands string, extra ...string) builtinConfig {
	md := map[string]string{"demands": demands}
	settings := []string{fmt.Sprintf("`demands: %q`", demands)}
	for i := 0; i+1 < len(extra); i += 2 {
		md[extra[i]] = extra[i+1]
		settings = append(settings, fmt.Sprintf("`%s: %q`", extra[i], extra[i+1]))
	}
	return builtinConfig{label: label, settings: strings.Join(settings, ", ") + ", other settings default", metadata: md}
}

// mixedWorkload: one pool with Linux, Linux+Docker, Windows and GPU jobs and
// four ScaledJobs, each configured as its user would: the built-in with
// `demands` (KEDA's documented way), ours with the agent's capabilities.
func mixedWorkload(e *env, w string) []accuracyCase {
	linux := []string{"Agent.OS -equals Linux"}
	docker := []string{"Agent.OS -equals Linux", "docker"}
	windows := []string{"Agent.OS -equals Windows_NT"}
	gpu11 := []string{"Agent.OS -equals Linux", "gpu", "cuda -gtVersion 11.0"}
	gpu12 := []string{"Agent.OS -equals Linux", "gpu", "cuda -gtVersion 12.0"}
	id := e.addPools(w, 1, func(o *fakeazdo.Org, id int) {
		for _, j := range []struct {
			d []string
			n int
		}{{linux, 4}, {docker, 3}, {windows, 2}, {gpu11, 1}, {gpu12, 1}} {
			for range j.n {
				o.QueueJob(id, fakeazdo.Job{Demands: j.d})
			}
		}
	})[0]
	variants := func(demands string) []builtinConfig {
		return []builtinConfig{
			demandsConfig("built-in, defaults", demands),
			demandsConfig("built-in, requireAllDemands", demands, "requireAllDemands", "true"),
		}
	}
	gpu := append(variants("Agent.OS -equals Linux,gpu,cuda -gtVersion 11.0"),
		demandsConfig("built-in, both CUDA demand strings", "Agent.OS -equals Linux,gpu,cuda -gtVersion 11.0,cuda -gtVersion 12.0"))
	return []accuracyCase{
		// A Docker-capable Linux agent runs Linux jobs and Docker jobs: 4+3.
		{"linux-docker", id, 7, variants("Agent.OS -equals Linux,docker"), map[string]string{"capabilities": "Agent.OS=Linux,docker"}},
		{"linux", id, 4, variants("Agent.OS -equals Linux"), map[string]string{"capabilities": "Agent.OS=Linux"}},
		{"windows", id, 2, variants("Agent.OS -equals Windows_NT"), map[string]string{"capabilities": "Agent.OS=Windows_NT"}},
		// A GPU agent (Linux, gpu, CUDA 12.2) runs Linux jobs and both GPU jobs: 4+1+1.
		{"gpu", id, 6, gpu, map[string]string{"capabilities": "Agent.OS=Linux,gpu,cuda=12.2"}},
	}
}

// busyWorkload: a busy pool whose newest 250 requests are finished while 20
// older ones still wait.
func busyWorkload(e *env, w string) []accuracyCase {
	id := e.addPools(w, 1, func(o *fakeazdo.Org, id int) {
		for range 20 {
			o.QueueJob(id, fakeazdo.Job{})
		}
		for range 250 {
			_ = o.FinishJob(o.QueueJob(id, fakeazdo.Job{}), "succeeded")
		}
	})[0]
	return []accuracyCase{{"busy-pool", id, 20, []builtinConfig{builtinDefault, builtinUnfinished}, map[string]string{}}}
}

// accuracy runs each ScaledJob alone, in every configuration. Ours runs
// with `routing: shared`, so that each ScaledJob counts every job it
// accepts, as the built-in does.
func (e *env) accuracy(ctx context.Context, w string, wl workload) ([]accuracyRow, error) {
	var rows []accuracyRow
	for i, c := range wl(e, w) {
		for j, cfg := range c.builtin {
			p, err := e.builtin(ctx, w, fmt.Sprintf("%s-%d-%d", w, i, j), c.poolID, cfg, nil)
			if err != nil {
				return nil, err
			}
			v, err := p.value(ctx)
			closeAll(ctx, []probe{p})
			if err != nil {
				return nil, err
			}
			rows = append(rows, accuracyRow{c.name, cfg.label, cfg.settings, c.truth, v})
		}
		md := map[string]string{"routing": "shared"}
		settings := "`routing: shared`"
		for k, v := range c.ours {
			md[k] = v
			settings = fmt.Sprintf("`%s: %q`, %s", k, v, settings)
		}
		p, err := e.ours(ctx, oursDefault, w, fmt.Sprintf("%s-%d", w, i), c.poolID, md)
		if err != nil {
			return nil, err
		}
		v, err := settledValue(ctx, p)
		closeAll(ctx, []probe{p})
		if err != nil {
			return nil, err
		}
		rows = append(rows, accuracyRow{c.name, oursShared, settings, c.truth, v})
	}
	return rows, nil
}

// settledValue is a probe's answer at its second poll: the first poll
// makes our scaler learn the trigger and start polling the pool.
func settledValue(ctx context.Context, p probe) (int, error) {
	if _, err := p.value(ctx); err != nil {
		return 0, err
	}
	time.Sleep(*tick)
	return p.value(ctx)
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
	{"built-in", "`demands` = the template's demand strings, `requireAllDemands: \"true\"`, `fetchUnfinishedJobsOnly: \"true\"`",
		func(i int) map[string]string {
			return map[string]string{"demands": overlapTemplates[i].demands, "requireAllDemands": "true", "fetchUnfinishedJobsOnly": "true"}
		}},
	{"built-in", "`demands` = the template's demand strings, `requireAllDemandsAndIgnoreOthers: \"true\"`, `fetchUnfinishedJobsOnly: \"true\"`",
		func(i int) map[string]string {
			return map[string]string{"demands": overlapTemplates[i].demands, "requireAllDemandsAndIgnoreOthers": "true", "fetchUnfinishedJobsOnly": "true"}
		}},
	{"built-in", "`parent` = the template's registered, offline placeholder agent (what KEDA's maintainers recommend for several templates), `fetchUnfinishedJobsOnly: \"true\"`",
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
	const w = "overlap"
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
	pools := e.addPools(w, 1, fill(all))
	var alone []int
	for k := range overlapKinds {
		alone = append(alone, e.addPools(w, 1, fill([]int{k}))[0])
	}
	jobs := 0
	for _, k := range overlapKinds {
		jobs += k.n
	}
	counts := func(cfg overlapConfig, pool, index int) ([]int, error) {
		var probes []probe
		defer func() { closeAll(ctx, probes) }()
		for i := range overlapTemplates {
			name := fmt.Sprintf("%s-%d", w, index+i)
			var p probe
			var err error
			if cfg.side == "built-in" {
				p, err = e.builtin(ctx, w, name, pool, builtinConfig{metadata: cfg.metadata(i)}, nil)
			} else {
				p, err = e.ours(ctx, oursDefault, w, name, pool, cfg.metadata(i))
			}
			if err != nil {
				return nil, err
			}
			// KEDA's first poll: our scaler learns the trigger.
			if _, err := p.value(ctx); err != nil {
				return nil, err
			}
			probes = append(probes, p)
		}
		// KEDA's default strategy, poll after poll: each ScaledJob gets
		// count - its unfinished Jobs new pods; each new pod's agent comes
		// online and Azure DevOps (the fake) hands it the oldest job it can
		// run. Until no ScaledJob asks for more: the pods started until
		// every job has one (a pod that got no job stays, as it would until
		// its idle timeout).
		org := e.org("bi-" + w)
		if cfg.side == "ours" {
			org = e.org(oursDefault.prefix + w)
		}
		pods := make([]int, len(probes))
		for round := 0; round < 8; round++ {
			if cfg.side == "ours" {
				time.Sleep(*tick) // our refresh, at KEDA's next poll
			}
			started := 0
			for i, p := range probes {
				v, err := p.value(ctx)
				if err != nil {
					return nil, err
				}
				for ; pods[i] < v; pods[i]++ {
					org.AddAgent(pool, fakeazdo.Agent{Name: fmt.Sprintf("%s-%d-%05d-%05d", w, index+i, round, pods[i]), Online: true,
						Capabilities: overlapTemplates[i].agentCaps})
					started++
				}
			}
			org.Dispatch(pool)
			if started == 0 {
				break
			}
		}
		return pods, nil
	}
	var rows []overlapRow
	for c, cfg := range overlapConfigs {
		pool := pools[0]
		if c > 0 {
			pool = e.addPools(w, 1, fill(all))[0] // each configuration plays its pods on a pool of its own
		}
		per, err := counts(cfg, pool, 3000+100*c)
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
