// Package demo runs a simulated Azure DevOps organization on loopback, so a
// newcomer can watch the scaler work without an Azure account: jobs with
// Linux, Windows, Docker and GPU demands arrive, agents take them, and they
// finish. It also knows the sample triggers the demo prints.
package demo

import (
	"context"
	cryptorand "crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	pb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/fakeazdo"
)

// Organization is the simulated organization's name.
const Organization = "demo"

// Org is a running simulated organization.
type Org struct {
	Server *fakeazdo.Server
	URL    string
	PAT    string
	org    *fakeazdo.Org
	pools  map[string]int
}

// Start serves the simulated organization on a free loopback port.
func Start() (*Org, error) {
	s := fakeazdo.New()
	if err := s.Start(); err != nil {
		return nil, err
	}
	secret := make([]byte, 16)
	if _, err := cryptorand.Read(secret); err != nil {
		return nil, err
	}
	pat := hex.EncodeToString(secret)
	o := &Org{Server: s, URL: s.OrgURL(Organization), PAT: pat, org: s.AddOrg(Organization, pat), pools: map[string]int{}}
	for _, name := range []string{"linux", "windows", "gpu"} {
		o.pools[name] = o.org.AddPool(name)
	}
	// The offline placeholder agent that keeps GPU jobs queued while the
	// pool is at zero, and that the parent trigger refers to.
	o.org.AddAgent(o.pools["gpu"], fakeazdo.Agent{Name: "gpu-template",
		Capabilities: map[string]string{"Agent.OS": "Linux", "cuda": "12.4", "Agent.Version": "4.264.2"}})
	return o, nil
}

// Close stops the server.
func (o *Org) Close() { o.Server.Close() }

// kinds of jobs the simulation queues, with their demands.
var kinds = []struct {
	pool    string
	demands []string
	weight  int
}{
	{"linux", []string{"Agent.OS -equals Linux", "docker", "Agent.Version -gtVersion 3.220.0"}, 5},
	{"linux", []string{"Agent.OS -equals Linux"}, 3},
	{"gpu", []string{"Agent.OS -equals Linux", "cuda -gtVersion 12.0"}, 1},
	{"windows", []string{"Agent.OS -equals Windows_NT"}, 2},
}

// Simulate queues jobs at random and plays the agents' part until ctx ends:
// a job waits a few seconds, runs a few more, and finishes.
func (o *Org) Simulate(ctx context.Context, every time.Duration) {
	type running struct {
		id       uint64
		finishAt time.Time
	}
	var waiting []uint64
	var busy []running
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	total := 0
	for _, k := range kinds {
		total += k.weight
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		for n := rand.IntN(3); n > 0; n-- {
			pick := rand.IntN(total)
			for _, k := range kinds {
				if pick -= k.weight; pick < 0 {
					waiting = append(waiting, o.org.QueueJob(o.pools[k.pool], fakeazdo.Job{Demands: k.demands}))
					break
				}
			}
		}
		// An agent takes the oldest waiting job now and then.
		if len(waiting) > 0 && rand.IntN(2) == 0 {
			_ = o.org.ReceiveJob(waiting[0])
			busy = append(busy, running{waiting[0], time.Now().Add(time.Duration(2+rand.IntN(6)) * every)})
			waiting = waiting[1:]
		}
		kept := busy[:0]
		for _, r := range busy {
			if time.Now().After(r.finishAt) {
				_ = o.org.FinishJob(r.id, "succeeded")
			} else {
				kept = append(kept, r)
			}
		}
		busy = kept
	}
}

// Sample is a trigger the demo asks the scaler about.
type Sample struct {
	Name     string
	Metadata map[string]string
}

// Samples are ScaledJob triggers as a platform team would set them up: by
// capabilities (Azure Pipelines' rules: a Docker-less template does not
// count Docker jobs), by KEDA-style demand strings, by parent template, and
// one without a filter that counts the whole pool.
func Samples() []Sample {
	return []Sample{
		{"linux-docker", map[string]string{"poolName": "linux", "capabilities": "Agent.OS=Linux,docker"}},
		{"linux-no-docker", map[string]string{"poolName": "linux", "capabilities": "Agent.OS=Linux"}},
		{"linux-keda-style", map[string]string{"poolName": "linux", "demands": "Agent.OS -equals Linux,docker"}},
		{"windows", map[string]string{"poolName": "windows", "capabilities": "Agent.OS=Windows_NT"}},
		{"gpu-by-parent", map[string]string{"poolName": "gpu", "parent": "gpu-template"}},
		{"whole-linux-pool", map[string]string{"poolName": "linux"}},
	}
}

// Report asks the scaler, over gRPC as KEDA does, what each sample trigger
// would scale to, and writes a table.
func Report(ctx context.Context, client pb.ExternalScalerClient, w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "%s\nSCALEDJOB\tPOOL\tFILTER\tJOBS (GetMetrics)\tACTIVE (IsActive)\n", time.Now().Format("15:04:05"))
	for _, s := range Samples() {
		ref := &pb.ScaledObjectRef{Name: s.Name, Namespace: "demo", ScalerMetadata: s.Metadata}
		filter := "(none)"
		var keys []string
		for k := range s.Metadata {
			if k != "poolName" {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, k+"="+s.Metadata[k])
		}
		if len(parts) > 0 {
			filter = strings.Join(parts, " ")
		}
		jobs, active := "?", "?"
		m, err := client.GetMetrics(ctx, &pb.GetMetricsRequest{ScaledObjectRef: ref})
		if err != nil {
			jobs = "error: " + err.Error()
		} else if len(m.MetricValues) == 1 {
			jobs = fmt.Sprint(m.MetricValues[0].MetricValueFloat)
		}
		if a, err := client.IsActive(ctx, ref); err == nil {
			active = fmt.Sprint(a.Result)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Name, s.Metadata["poolName"], filter, jobs, active)
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
}
