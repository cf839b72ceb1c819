// Package demo runs a simulated Azure DevOps organization on loopback, so a
// newcomer can watch the scaler work without an Azure account: jobs with
// Linux, Windows, Docker and GPU demands arrive, single-run agent pods of
// the sample ScaledJobs take them, and they finish. It also knows the
// sample triggers the demo prints.
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

	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/demands"
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

// gpuCapabilities are the GPU template's: its offline placeholder agent
// (the parent of the gpu trigger) and its pods have them.
var gpuCapabilities = map[string]string{"Agent.OS": "Linux", "docker": "", "cuda": "12.4"}

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
	o.org.AddAgent(o.pools["gpu"], fakeazdo.Agent{Name: "gpu-template", Capabilities: gpuCapabilities})
	return o, nil
}

// Close stops the server.
func (o *Org) Close() { o.Server.Close() }

// kinds of jobs the simulation queues, with their demands and the
// pipeline they come from.
var kinds = []struct {
	pool, pipeline string
	demands        []string
	weight         int
}{
	{"linux", "api-ci", []string{"Agent.OS -equals Linux", "docker", "Agent.Version -gtVersion 3.220.0"}, 4},
	{"linux", "web-ci", []string{"Agent.OS -equals Linux"}, 4},
	{"gpu", "model-training", []string{"Agent.OS -equals Linux", "cuda -gtVersion 12.0"}, 1},
	{"windows", "desktop-app", []string{"Agent.OS -equals Windows_NT"}, 2},
}

// Sample is a ScaledJob the demo asks the scaler about, and whose
// single-run agent pods the simulation plays.
type Sample struct {
	Name     string
	Metadata map[string]string
	// Capabilities of its agent pods.
	Capabilities map[string]string
}

// Samples are ScaledJob triggers as a platform team would set them up:
// two templates sharing the linux pool (a job either can run counts for
// the less capable one), KEDA-style demand strings, and a parent template.
func Samples() []Sample {
	return []Sample{
		{"linux", map[string]string{"poolName": "linux", "capabilities": "Agent.OS=Linux"}, map[string]string{"Agent.OS": "Linux"}},
		{"linux-docker", map[string]string{"poolName": "linux", "capabilities": "Agent.OS=Linux,docker"},
			map[string]string{"Agent.OS": "Linux", "docker": ""}},
		{"windows", map[string]string{"poolName": "windows", "demands": "Agent.OS -equals Windows_NT"}, map[string]string{"Agent.OS": "Windows_NT"}},
		{"gpu", map[string]string{"poolName": "gpu", "parent": "gpu-template"}, gpuCapabilities},
	}
}

// pod is a simulated single-run agent pod.
type pod struct {
	pool, agent int
	doneAt      int // tick
	job         uint64
}

// Rates of the simulation, per tick: a job arrives with arrivalChance,
// a pool starts pods for at most startsPerPool of its oldest waiting jobs
// (as KEDA, polling, creates Jobs), and a job runs minRun to
// minRun+spreadRun-1 ticks. About 0.5 jobs arrive per tick and about 4 run
// at once: the pools keep up, so the backlog stays small
// (TestSimulationStaysBounded).
const (
	arrivalChance = 2 // in 4
	startsPerPool = 2
	minRun        = 4
	spreadRun     = 8
)

// simulation is the simulated pods and the clock, in ticks.
type simulation struct {
	o        *Org
	rng      *rand.Rand
	pods     []*pod
	tick     int
	finished int
}

// Simulate queues jobs at random and plays the part of the sample
// ScaledJobs' single-run pods until ctx ends, one tick per every: pods of
// the least capable sample that can run each of a pool's oldest waiting
// jobs start, their agents (named after the pods, as KEDA names pods) take
// the jobs Azure DevOps gives them, run them for a few ticks, and leave;
// one pod in four dies without deregistering its agent, which the sweeper
// then removes.
func (o *Org) Simulate(ctx context.Context, every time.Duration) {
	s := &simulation{o: o, rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		s.step()
	}
}

// step is one tick.
func (s *simulation) step() {
	s.tick++
	o := s.o
	total := 0
	for _, k := range kinds {
		total += k.weight
	}
	if s.rng.IntN(4) < arrivalChance {
		pick := s.rng.IntN(total)
		for _, k := range kinds {
			if pick -= k.weight; pick < 0 {
				o.org.QueueJob(o.pools[k.pool], fakeazdo.Job{Pipeline: k.pipeline, Name: "build", Demands: k.demands})
				break
			}
		}
	}
	for _, name := range []string{"linux", "windows", "gpu"} {
		for range startsPerPool {
			if p := s.startPod(o.pools[name]); p != nil {
				s.pods = append(s.pods, p)
			}
		}
	}
	kept := s.pods[:0]
	for _, p := range s.pods {
		if s.tick < p.doneAt {
			kept = append(kept, p)
			continue
		}
		_ = o.org.FinishJob(p.job, "succeeded")
		s.finished++
		if s.rng.IntN(4) == 0 {
			// A pod killed before its agent deregistered: the agent
			// stays, offline, until the sweeper removes it.
			o.org.SetAgentStatus(p.pool, p.agent, false, time.Now())
			continue
		}
		_ = o.org.RemoveAgent(p.pool, p.agent) // the single-run agent deregisters
	}
	s.pods = kept
}

// startPod starts a pod for the pool's oldest waiting job, nil when none
// waits (or no sample can run it).
func (s *simulation) startPod(pool int) *pod {
	o := s.o
	for _, id := range o.org.UnfinishedJobs(pool) {
		if _, busy := o.org.JobAgent(id); busy {
			continue
		}
		smp, ok := cheapestSample(pool, o.org.JobDemands(id), o.pools)
		if !ok {
			return nil
		}
		agent := o.org.AddAgent(pool, fakeazdo.Agent{Name: podName(smp.Name), Online: true, Capabilities: smp.Capabilities})
		for job, a := range o.org.Dispatch(pool) {
			if a == agent {
				return &pod{pool: pool, agent: agent, job: job, doneAt: s.tick + minRun + s.rng.IntN(spreadRun)}
			}
		}
		_ = o.org.RemoveAgent(pool, agent)
		return nil
	}
	return nil
}

// cheapestSample is the sample with the fewest capabilities, on the pool,
// that can run a job with these demands.
func cheapestSample(pool int, jobDemands []string, pools map[string]int) (Sample, bool) {
	var best Sample
	found := false
	for _, s := range Samples() {
		if pools[s.Metadata["poolName"]] != pool {
			continue
		}
		caps := demands.FromMap(s.Capabilities)
		ok := true
		for _, text := range jobDemands {
			d, err := demands.Parse(text)
			if err != nil || (!d.IsAgentVersion() && !caps.Satisfies(d)) {
				ok = false
			}
		}
		if ok && (!found || len(s.Capabilities) < len(best.Capabilities)) {
			best, found = s, true
		}
	}
	return best, found
}

// podName is a name of the shape Kubernetes gives a pod of a Job KEDA
// created: <scaledjob>-<5>-<5>.
func podName(scaledJob string) string {
	const alphabet = "bcdfghjklmnpqrstvwxz2456789"
	r := func() string {
		b := make([]byte, 5)
		for i := range b {
			b[i] = alphabet[rand.IntN(len(alphabet))]
		}
		return string(b)
	}
	return scaledJob + "-" + r() + "-" + r()
}

// Report asks the scaler, over gRPC as KEDA does, what each sample trigger
// would scale to, and writes a table; then, per pool, the unfinished jobs
// in the scaler's latest snapshot (unfinished tells them) beside the sum of
// the counts, which routing makes equal.
func Report(ctx context.Context, client pb.ExternalScalerClient, unfinished func(ctx context.Context, pool string) (int, error), w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "%s\nSCALEDJOB\tPOOL\tFILTER\tJOBS (GetMetrics)\tACTIVE (IsActive)\n", time.Now().Format("15:04:05"))
	sums := map[string]float64{}
	for _, s := range Samples() {
		ref := &pb.ScaledObjectRef{Name: s.Name, Namespace: "demo", ScalerMetadata: s.Metadata}
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
		jobs, active := "?", "?"
		m, err := client.GetMetrics(ctx, &pb.GetMetricsRequest{ScaledObjectRef: ref})
		if err != nil {
			jobs = "error: " + err.Error()
		} else if len(m.MetricValues) == 1 {
			jobs = fmt.Sprint(m.MetricValues[0].MetricValueFloat)
			sums[s.Metadata["poolName"]] += m.MetricValues[0].MetricValueFloat
		}
		if a, err := client.IsActive(ctx, ref); err == nil {
			active = fmt.Sprint(a.Result)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Name, s.Metadata["poolName"], strings.Join(parts, " "), jobs, active)
	}
	fmt.Fprintf(tw, "\nPOOL\tUNFINISHED JOBS (last refresh)\tSUM OF COUNTS\n")
	for _, name := range []string{"linux", "windows", "gpu"} {
		n := "?"
		if u, err := unfinished(ctx, name); err == nil {
			n = fmt.Sprint(u)
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\n", name, n, sums[name])
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
}
