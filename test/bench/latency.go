package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo"
)

// Queue-to-metric latency: jobs arrive at random times while KEDA polls
// every ScaledJob every tick at its own phase; a job is seen when the
// counts first cover it. Every configuration of both scalers is polled in
// the same run, at the same instants, for the same arrivals.
const (
	latencyJobs   = 150
	latencyCycles = 60 // five simulated minutes
	latencyQuiet  = 8  // no arrivals in the last ticks, so that every job is seen
)

// latencyWorkload is one pool and its ScaledJobs.
type latencyWorkload struct {
	name, title, about string
	pool               int
	jobDemands         []string
	builtinMD          []map[string]string // one per ScaledJob
	oursMD             []map[string]string
	sides              []latencySide // filled by the run
}

// latencySide is one configuration's latencies, simulated, sorted.
type latencySide struct {
	label, settings string
	sim             []time.Duration
}

func latencyWorkloads() []*latencyWorkload {
	one := &latencyWorkload{name: "latency-1", title: "one ScaledJob on the pool",
		about:      "One ScaledJob (`Agent.OS=Linux`), jobs demanding `Agent.OS -equals Linux`. A job is seen when the ScaledJob's count covers it.",
		jobDemands: []string{"Agent.OS -equals Linux"},
		builtinMD:  []map[string]string{{"demands": "Agent.OS -equals Linux"}},
		oursMD:     []map[string]string{{"capabilities": "Agent.OS=Linux"}}}
	three := &latencyWorkload{name: "latency-3", title: "three overlapping ScaledJobs on the pool",
		about: "The three templates of the overlap workload below (plain, docker, gpu), polled at three phases, and jobs demanding " +
			"`Agent.OS -equals Linux`, which all three can run. The built-in counts each job in all three ScaledJobs, so a job is seen " +
			"at the first of the three polls (and starts three pods, see the overlap table); ours routes it to the plain ScaledJob, " +
			"so it is seen at that ScaledJob's poll (and starts one pod). A job is seen when, for the built-in, one ScaledJob's " +
			"count covers it, and for ours, the sum of the three counts does."}
	three.jobDemands = []string{"Agent.OS -equals Linux"}
	for _, t := range overlapTemplates {
		three.builtinMD = append(three.builtinMD, map[string]string{"demands": t.demands})
		three.oursMD = append(three.oursMD, map[string]string{"capabilities": t.caps})
	}
	return []*latencyWorkload{one, three}
}

// sample is one poll's answer.
type sample struct {
	at    time.Time
	value int
}

// latencyRun is one configuration's ScaledJobs in one workload.
type latencyRun struct {
	label, settings string
	sum             bool // ours: the sum of the counts; the built-in: the largest
	probes          []probe
	samples         [][]sample // per probe
}

func (e *env) latency(ctx context.Context) ([]*latencyWorkload, error) {
	ws := latencyWorkloads()
	type job struct {
		w  *latencyWorkload
		at []time.Time // arrivals, sorted
	}
	runs := map[*latencyWorkload][]*latencyRun{}
	phases := map[*latencyWorkload][]time.Duration{}
	var all []probe
	for _, w := range ws {
		w.pool = e.addPools(w.name, 1, func(*fakeazdo.Org, int) {})[0]
		pool := w.pool
		phases[w] = e.phases(len(w.builtinMD))
		for _, cfg := range []builtinConfig{builtinDefault, builtinUnfinished} {
			r := &latencyRun{label: cfg.label, settings: cfg.settings}
			for i, md := range w.builtinMD {
				p, err := e.builtin(ctx, w.name, fmt.Sprintf("%s-%d", w.name, i), pool, cfg, md)
				if err != nil {
					return nil, err
				}
				r.probes = append(r.probes, p)
			}
			runs[w] = append(runs[w], r)
		}
		for _, c := range oursConfigs {
			r := &latencyRun{label: c.label, settings: c.settings(), sum: true}
			for i, md := range w.oursMD {
				p, err := e.ours(ctx, c, w.name, fmt.Sprintf("%s-%d", w.name, i), pool, md)
				if err != nil {
					return nil, err
				}
				r.probes = append(r.probes, p)
			}
			runs[w] = append(runs[w], r)
		}
		for _, r := range runs[w] {
			all = append(all, r.probes...)
			r.samples = make([][]sample, len(r.probes))
		}
	}
	defer closeAll(ctx, all)
	// Settle: our scalers learn every trigger and their pollers start.
	for range 2 {
		for _, p := range all {
			if _, err := p.value(ctx); err != nil {
				return nil, err
			}
		}
		time.Sleep(*tick)
	}

	start := time.Now()
	var arrivals []job
	for _, w := range ws {
		span := int64((latencyCycles - latencyQuiet) * *tick)
		var at []time.Duration
		for range latencyJobs {
			at = append(at, time.Duration(e.rng.Int64N(span)))
		}
		slices.Sort(at)
		j := job{w: w}
		for _, d := range at {
			j.at = append(j.at, start.Add(d))
		}
		arrivals = append(arrivals, j)
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(all)+len(ws))
	for _, j := range arrivals {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, t := range j.at {
				sleepUntil(t)
				// The arrival is the instant before the first organization
				// has the job: no answer can show it earlier.
				j.at[i] = time.Now()
				e.queueEverywhere(j.w.name, j.w.pool, fakeazdo.Job{Demands: j.w.jobDemands})
			}
		}()
	}
	for _, w := range ws {
		for _, r := range runs[w] {
			for i, p := range r.probes {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for c := range latencyCycles {
						sleepUntil(start.Add(phases[w][i] + time.Duration(c)**tick))
						v, err := p.value(ctx)
						if err != nil {
							errs <- fmt.Errorf("%s, %s: %w", w.name, r.label, err)
							return
						}
						r.samples[i] = append(r.samples[i], sample{time.Now(), v})
					}
				}()
			}
		}
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	for _, j := range arrivals {
		for _, r := range runs[j.w] {
			sim, err := r.latencies(j.at)
			if err != nil {
				return nil, fmt.Errorf("%s, %s: %w", j.w.name, r.label, err)
			}
			j.w.sides = append(j.w.sides, latencySide{label: r.label, settings: r.settings, sim: sim})
			fmt.Printf("latency %s %s: mean %s p95 %s max %s\n", j.w.name, r.label, mean(sim), percentile(sim, 95), sim[len(sim)-1])
		}
	}
	return ws, nil
}

// latencies walks the run's answers in time order and finds, for the k-th
// job, the first answer whose counts cover k jobs.
func (r *latencyRun) latencies(arrivals []time.Time) ([]time.Duration, error) {
	type answer struct {
		sample
		probe int
	}
	var answers []answer
	for i, ss := range r.samples {
		for _, s := range ss {
			answers = append(answers, answer{s, i})
		}
	}
	slices.SortFunc(answers, func(a, b answer) int { return a.at.Compare(b.at) })
	last := make([]int, len(r.probes))
	var out []time.Duration
	for _, a := range answers {
		last[a.probe] = a.value
		covered := slices.Max(last)
		if r.sum {
			covered = 0
			for _, v := range last {
				covered += v
			}
		}
		for len(out) < len(arrivals) && covered > len(out) {
			k := len(out)
			if a.at.Before(arrivals[k]) {
				return nil, fmt.Errorf("counted %d jobs at %s, before job %d arrived: the counts are not what they seem", covered, a.at, k+1)
			}
			out = append(out, toSim(a.at.Sub(arrivals[k])))
		}
	}
	if len(out) < len(arrivals) {
		return nil, fmt.Errorf("only %d of %d jobs ever showed", len(out), len(arrivals))
	}
	slices.Sort(out)
	return out, nil
}

func mean(ds []time.Duration) time.Duration {
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(len(ds))
}

// percentile of sorted durations (nearest rank).
func percentile(ds []time.Duration, p int) time.Duration {
	i := (len(ds)*p + 99) / 100
	return ds[max(i, 1)-1]
}
