package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo"
	"github.com/kedacore/keda/v2/pkg/scalers"
	"github.com/kedacore/keda/v2/pkg/scalers/scalersconfig"
)

// p99 of our GetMetrics through KEDA's client, 1,000 triggers on 20 pools.
type p99Result struct {
	calls         int
	p50, p99, max time.Duration
}

func (e *env) p99(ctx context.Context) (p99Result, error) {
	const w = "p99"
	ids := e.addPools(w, 20, func(o *fakeazdo.Org, id int) {
		for range 10 {
			o.QueueJob(id, fakeazdo.Job{Demands: []string{"Agent.OS -equals Linux"}})
		}
	})
	// Ours only: the built-in would make 1,000 Azure DevOps calls per cycle.
	var ps []probe
	defer func() { closeAll(ctx, ps) }()
	for i := range 1000 {
		p, err := e.ours(ctx, oursDefault, w, fmt.Sprintf("p99-%d", i), ids[i%20],
			map[string]string{"capabilities": fmt.Sprintf("Agent.OS=Linux,cap%d", i%50)})
		if err != nil {
			return p99Result{}, err
		}
		ps = append(ps, p)
	}
	for _, p := range ps {
		if _, err := p.value(ctx); err != nil {
			return p99Result{}, err
		}
	}
	var lat []time.Duration
	for range 5 {
		for _, p := range ps {
			start := time.Now()
			if _, err := p.value(ctx); err != nil {
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
	dir, err := os.MkdirTemp("", "rss")
	if err != nil {
		return 0, err
	}
	patFile := filepath.Join(dir, "pat")
	if err := os.WriteFile(patFile, []byte(pat), 0o600); err != nil {
		return 0, err
	}
	var ids []int
	for i := range 200 {
		id := o.AddPool(fmt.Sprintf("pool-%d", i))
		for range 5 {
			o.QueueJob(id, fakeazdo.Job{Demands: []string{"Agent.OS -equals Linux"}})
		}
		ids = append(ids, id)
	}
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("organizations:\n  - {name: rss, url: %q, patFile: %q}\n", e.fake.OrgURL("rss"), patFile)), 0o600); err != nil {
		return 0, err
	}
	addr := "127.0.0.1:16999"
	cmd := exec.Command(*bin, "--config", cfg, "--grpc-addr", addr, "--http-addr", "127.0.0.1:0", "--refresh-interval", "1s",
		"--sweep-interval", "0", "--placeholders=false", "--log-level", "error")
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
		_ = s.Close(ctx)
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
