package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/standby"
)

// The standby benchmark replays a synthetic trace of one agent template's
// jobs, second by second, against KEDA's default scaling strategy and
// single-run pods as the pool chart makes them, with the scaler's own
// standby rules (package standby: Want, Forecast, Keep).
const (
	standbyPodStart   = 45 * time.Second // a pod is scheduled, pulls, starts Docker and registers
	standbyPoll       = 10 * time.Second // the pool chart's pollingInterval
	standbyIdle       = 300 * time.Second
	standbyCheck      = 30 * time.Second // AZP_STANDBY_CHECK
	standbyWarmWeeks  = 3                // weeks before the measured ones: auto's history
	standbyWeeks      = 3                // measured weeks
	standbyFixedMin   = 12               // minReplicaCount sized for the peak
	standbyAutoMax    = 20               // standbyMax
	standbyBurstSpan  = 30 * time.Minute // a job queued this close to 09:00 or 14:00 on a weekday is a burst job
	standbySchedule   = "Mon-Fri 08:00-18:00=2; Mon-Fri 08:45-09:30=18; Mon-Fri 13:45-14:30=13"
	standbyBurst9     = 12 // mean jobs of the 09:00 burst
	standbyBurst14    = 8  // and of the 14:00 one
	standbyDayRate    = 10 // jobs per hour on weekdays 08:00-18:00, besides the bursts
	standbyNightRate  = 1  // per hour on weekday nights
	standbyWeekend    = 0.5
	standbyJobMinutes = 8 // mean job length (exponential, at least 1 minute)
)

// standbyStart is a Monday 00:00 UTC: the trace's first day.
var standbyStart = time.Date(2026, 10, 5, 0, 0, 0, 0, time.UTC)

type standbyConfig struct {
	name     string
	settings string // as printed
	min      int    // KEDA minReplicaCount
	standby  *standby.Settings
}

func standbyConfigs() []standbyConfig {
	sched, err := standby.ParseSchedule(standbySchedule, "UTC")
	if err != nil {
		panic(err)
	}
	return []standbyConfig{
		{name: "no standby", settings: "ours, `standby` unset (`minReplicaCount: 0`)"},
		{name: "fixed minimum", settings: fmt.Sprintf("ours, `minReplicaCount: %d` (KEDA's only tool: sized for the 09:00 peak)", standbyFixedMin), min: standbyFixedMin},
		{name: "schedule", settings: fmt.Sprintf("`standbySchedule: %q` (by hand: 2 through the working day, about the bursts' 95th percentile around them)", standbySchedule),
			standby: &standby.Settings{Schedule: sched}},
		{name: "auto p50", settings: fmt.Sprintf("`standby: auto`, `standbyPercentile: 50`, `standbyMax: %d`", standbyAutoMax),
			standby: &standby.Settings{Auto: true, Percentile: 50, Max: standbyAutoMax}},
		{name: "auto p90", settings: fmt.Sprintf("`standby: auto`, `standbyPercentile: 90`, `standbyMax: %d`", standbyAutoMax),
			standby: &standby.Settings{Auto: true, Percentile: 90, Max: standbyAutoMax}},
	}
}

type standbyJob struct {
	queued, length time.Duration // since standbyStart
	wait           time.Duration
	started        bool
}

// standbyTrace draws the weeks' jobs: weekday bursts around 09:00 and
// 14:00 (normal around the hour, 4 and 5 minutes wide), a steady daytime
// rate, quiet nights and weekends.
func standbyTrace(seed uint64) []*standbyJob {
	r := rand.New(rand.NewPCG(seed, 27))
	var jobs []*standbyJob
	add := func(at time.Duration) {
		length := time.Duration(math.Max(1, r.ExpFloat64()*standbyJobMinutes) * float64(time.Minute))
		jobs = append(jobs, &standbyJob{queued: at, length: length.Round(time.Second)})
	}
	poisson := func(mean float64) int { // Knuth's, small means
		l, k, p := math.Exp(-mean), 0, 1.0
		for {
			p *= r.Float64()
			if p <= l {
				return k
			}
			k++
		}
	}
	for d := range 7 * (standbyWarmWeeks + standbyWeeks) {
		day := time.Duration(d) * 24 * time.Hour
		weekday := (d % 7) < 5 // the trace starts on a Monday
		for h := range 24 {
			rate := standbyWeekend
			if weekday {
				rate = standbyNightRate
				if h >= 8 && h < 18 {
					rate = standbyDayRate
				}
			}
			for range poisson(rate) {
				add(day + time.Duration(h)*time.Hour + time.Duration(r.Float64()*float64(time.Hour)))
			}
		}
		if weekday {
			for _, b := range []struct {
				hour  int
				mean  float64
				width time.Duration
			}{{9, standbyBurst9, 4 * time.Minute}, {14, standbyBurst14, 5 * time.Minute}} {
				for range poisson(b.mean) {
					add(day + time.Duration(b.hour)*time.Hour + time.Duration(r.NormFloat64()*float64(b.width)))
				}
			}
		}
	}
	slices.SortFunc(jobs, func(a, b *standbyJob) int { return int(a.queued - b.queued) })
	return jobs
}

type standbyPod struct {
	name    string
	created time.Duration
	readyAt time.Duration
	job     *standbyJob
	endAt   time.Duration
	// deadline: an idle agent's idle timeout, then its next standby question
	deadline time.Duration
}

type standbyResult struct {
	config                            standbyConfig
	p50, p95, max, burstP95, quietP95 time.Duration
	jobs                              int
	idleMinutesPerDay                 float64
	podsPerDay                        float64
	readyShare                        float64 // jobs that found an agent ready (waited less than a pod start)
}

// simulateStandby plays one configuration over the trace.
func simulateStandby(c standbyConfig, trace []*standbyJob) standbyResult {
	jobs := make([]*standbyJob, len(trace))
	for i, j := range trace {
		cp := *j
		jobs[i] = &cp
	}
	hist := standby.NewHistory(standbyStart)
	var pods []*standbyPod
	var waiting []*standbyJob
	measureFrom := time.Duration(standbyWarmWeeks) * 7 * 24 * time.Hour
	end := time.Duration(standbyWarmWeeks+standbyWeeks) * 7 * 24 * time.Hour
	var idleSeconds, podsStarted float64
	next, named := 0, 0
	want := func(t time.Duration) int {
		if c.standby == nil {
			return 0
		}
		n, _ := standby.Want(*c.standby, hist, standbyStart.Add(t))
		return n
	}
	for t := time.Duration(0); t < end+2*time.Hour; t += time.Second {
		for next < len(jobs) && jobs[next].queued <= t {
			waiting = append(waiting, jobs[next])
			hist.Add(standbyStart.Add(jobs[next].queued)) // the routed job, as the recorder adds it
			next++
		}
		alive := pods[:0]
		for _, p := range pods {
			if p.job != nil && t >= p.endAt {
				continue // its one job is done: the pod ends
			}
			alive = append(alive, p)
		}
		pods = alive
		// A free agent takes the oldest waiting job (Azure DevOps' order).
		for _, p := range pods {
			if len(waiting) == 0 {
				break
			}
			if p.job == nil && t >= p.readyAt {
				j := waiting[0]
				waiting = waiting[1:]
				j.wait, j.started = t-j.queued, true
				p.job, p.endAt = j, t+j.length
			}
		}
		// Idle agents at their deadline ask whether they stay (standby), or leave.
		var idle []standby.Pod
		due := false
		for _, p := range pods {
			if p.job == nil && t >= p.readyAt {
				idle = append(idle, standby.Pod{Name: p.name, Created: standbyStart.Add(p.created)})
				due = due || t >= p.deadline
				if t >= measureFrom && t < end {
					idleSeconds++
				}
			}
		}
		if due {
			keep := standby.Keep(idle, want(t))
			alive := pods[:0]
			for _, p := range pods {
				if p.job == nil && t >= p.readyAt && t >= p.deadline {
					if !keep[p.name] {
						continue // leaves
					}
					p.deadline = t + standbyCheck
				}
				alive = append(alive, p)
			}
			pods = alive
		}
		// KEDA's poll: default strategy, count - unfinished Jobs.
		if t%standbyPoll == 0 {
			running := 0
			for _, p := range pods {
				if p.job != nil {
					running++
				}
			}
			count := len(waiting) + running + want(t)
			count = max(count, c.min)
			for range count - len(pods) {
				named++
				pods = append(pods, &standbyPod{name: fmt.Sprintf("pod-%07d", named), created: t, readyAt: t + standbyPodStart,
					deadline: t + standbyPodStart + standbyIdle})
				if t >= measureFrom && t < end {
					podsStarted++
				}
			}
		}
	}
	res := standbyResult{config: c}
	var all, burst, quiet []time.Duration
	for _, j := range jobs {
		if j.queued < measureFrom || j.queued >= end {
			continue
		}
		w := j.wait
		if !j.started {
			w = end + 2*time.Hour - j.queued
		}
		all = append(all, w)
		if inBurst(j.queued) {
			burst = append(burst, w)
		} else {
			quiet = append(quiet, w)
		}
		if w < standbyPodStart {
			res.readyShare++
		}
	}
	days := float64(7 * standbyWeeks)
	res.jobs = len(all)
	res.readyShare /= float64(len(all))
	res.p50, res.p95, res.max = quantile(all, 0.5), quantile(all, 0.95), quantile(all, 1)
	res.burstP95, res.quietP95 = quantile(burst, 0.95), quantile(quiet, 0.95)
	res.idleMinutesPerDay = idleSeconds / 60 / days
	res.podsPerDay = podsStarted / days
	return res
}

// inBurst: queued within standbyBurstSpan of 09:00 or 14:00 on a weekday.
func inBurst(at time.Duration) bool {
	day := int(at / (24 * time.Hour))
	if day%7 >= 5 {
		return false
	}
	of := at % (24 * time.Hour)
	for _, h := range []time.Duration{9 * time.Hour, 14 * time.Hour} {
		if d := of - h; d > -standbyBurstSpan && d < standbyBurstSpan {
			return true
		}
	}
	return false
}

func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(i, 0)]
}

func (e *env) standby() []standbyResult {
	trace := standbyTrace(*seed)
	var out []standbyResult
	for _, c := range standbyConfigs() {
		out = append(out, simulateStandby(c, trace))
	}
	return out
}

func (r *report) writeStandby(w func(string, ...any)) {
	if len(r.standby) == 0 {
		return
	}
	w("## Warm standby\n\n")
	w("One agent template's jobs over %d weeks, replayed second by second: weekday bursts around 09:00 (%d jobs on average,\n", standbyWarmWeeks+standbyWeeks, standbyBurst9)
	w("normal around the hour, 4 minutes wide) and 14:00 (%d, 5 minutes wide), %d jobs an hour on weekdays 08:00-18:00, %d an hour\n", standbyBurst14, standbyDayRate, standbyNightRate)
	w("on weekday nights and %.1f at weekends; a job runs %d minutes on average (exponential, at least 1). KEDA polls every %s\n", standbyWeekend, standbyJobMinutes, standbyPoll)
	w("with its default strategy (`count - unfinished Jobs`, at least `minReplicaCount`); a pod's agent is online %s after its\n", standbyPodStart)
	w("Job and takes the oldest waiting job; an agent without a job leaves after %s unless the scaler keeps it as a standby\n", standbyIdle)
	w("agent (it asks again every %s). The scaler's own rules decide (package `standby`: `Want`, `Forecast`, `Keep`).\n", standbyCheck)
	w("The first %d weeks are every configuration's warm-up and auto's history (what the scaler reads back from Azure DevOps\n", standbyWarmWeeks)
	w("after a restart); the figures are of the last %d weeks. A burst job is one queued within %s of 09:00 or 14:00 on a weekday.\n\n", standbyWeeks, standbyBurstSpan)
	w("| configuration | settings |\n| --- | --- |\n")
	for _, s := range r.standby {
		w("| %s | %s |\n", s.config.name, s.config.settings)
	}
	w("\n| configuration | jobs | wait p50 | wait p95 | wait max | burst jobs' p95 | other jobs' p95 | found an agent ready | idle agent-minutes a day | pods started a day |\n")
	w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, s := range r.standby {
		w("| %s | %d | %s | %s | %s | %s | %s | %.0f%% | %.0f | %.0f |\n", s.config.name, s.jobs, dur(s.p50), dur(s.p95), dur(s.max),
			dur(s.burstP95), dur(s.quietP95), 100*s.readyShare, s.idleMinutesPerDay, s.podsPerDay)
	}
	w("\n")
}

func dur(d time.Duration) string { return fmt.Sprintf("%.0f s", d.Seconds()) }
