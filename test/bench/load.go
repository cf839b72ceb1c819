package main

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo"
)

// The load workload: S ScaledJobs over loadPools pools, each pool holding
// 5 queued jobs behind 100 finished ones (a pool with some history).
var loadSizes = []int{1, 10, 50, 200}

const (
	loadPools  = 5
	loadCycles = 12 // one simulated minute of KEDA polls
)

func loadOrg(s int) string { return fmt.Sprintf("load-s%d", s) }

// loadSide is one configuration's cost over one simulated minute.
type loadSide struct {
	label    string
	req, kib float64       // job-requests calls and KiB served per minute
	cpu      time.Duration // whole process, per polling cycle
	allocs   uint64        // whole process, per polling cycle
}

type loadRow struct {
	s, p  int
	sides []loadSide
}

func (e *env) load(ctx context.Context, s int) (loadRow, error) {
	w := loadOrg(s)
	linux := []string{"Agent.OS -equals Linux"}
	ids := e.addPools(w, loadPools, func(o *fakeazdo.Org, id int) {
		for range 100 {
			_ = o.FinishJob(o.QueueJob(id, fakeazdo.Job{Demands: linux}), "succeeded")
		}
		for range 5 {
			o.QueueJob(id, fakeazdo.Job{Demands: linux})
		}
	})
	phases := e.phases(s)
	type side struct {
		label, org string
		build      func(i int) (probe, error)
	}
	var sides []side
	for _, cfg := range []builtinConfig{builtinDefault, builtinUnfinished} {
		sides = append(sides, side{cfg.label, "bi-" + w, func(i int) (probe, error) {
			return e.builtin(ctx, w, fmt.Sprintf("%s-%d", w, i), ids[i%loadPools], cfg, map[string]string{"demands": linux[0]})
		}})
	}
	for _, c := range oursConfigs {
		sides = append(sides, side{c.label, c.prefix + w, func(i int) (probe, error) {
			return e.ours(ctx, c, w, fmt.Sprintf("%s-%d", w, i), ids[i%loadPools], map[string]string{"capabilities": "Agent.OS=Linux"})
		}})
	}
	row := loadRow{s: s, p: loadPools}
	for _, sd := range sides {
		var ps []probe
		for i := range s {
			p, err := sd.build(i)
			if err != nil {
				return row, err
			}
			ps = append(ps, p)
		}
		r, err := e.measureLoad(ctx, sd.org, ps, phases)
		closeAll(ctx, ps)
		if err != nil {
			return row, fmt.Errorf("%s, S=%d: %w", sd.label, s, err)
		}
		r.label = sd.label
		row.sides = append(row.sides, r)
		fmt.Printf("load S=%d P=%d %s: %.0f req/min, %.0f KiB/min\n", s, loadPools, sd.label, r.req, r.kib)
	}
	return row, nil
}

// measureLoad polls every probe once per tick at its own phase, each from
// its own goroutine as KEDA's scale loops do, for loadCycles ticks, and
// counts what the organization served meanwhile.
func (e *env) measureLoad(ctx context.Context, org string, ps []probe, phases []time.Duration) (loadSide, error) {
	// Settle: our pollers start and learn the triggers on their first call.
	for _, p := range ps {
		if _, err := p.value(ctx); err != nil {
			return loadSide{}, err
		}
	}
	time.Sleep(*tick)
	start := time.Now()
	calls0, bytes0 := e.fake.Calls(org, fakeazdo.JobRequests), e.fake.BytesServed(org, fakeazdo.JobRequests)
	cpu0, m0 := cpuTime(), mallocs()
	errs := make(chan error, len(ps))
	var wg sync.WaitGroup
	for i, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range loadCycles {
				sleepUntil(start.Add(phases[i] + time.Duration(c)**tick))
				if _, err := p.value(ctx); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	// Every probe's 12 polls fall within these 12 ticks (phases < tick).
	sleepUntil(start.Add(loadCycles * *tick))
	r := loadSide{
		req:    float64(e.fake.Calls(org, fakeazdo.JobRequests) - calls0),
		kib:    float64(e.fake.BytesServed(org, fakeazdo.JobRequests)-bytes0) / 1024,
		cpu:    (cpuTime() - cpu0) / loadCycles,
		allocs: (mallocs() - m0) / loadCycles,
	}
	wg.Wait()
	close(errs)
	return r, <-errs
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
