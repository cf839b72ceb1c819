package placeholders

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo/fakeazdotest"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/azdo"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/queue"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/routing"
	testingclock "k8s.io/utils/clock/testing"
)

const pat = "placeholder-test-pat-0123"

type fixture struct {
	fake   *fakeazdo.Server
	org    *fakeazdo.Org
	pool   int
	client *azdo.Client
	router *routing.Router
	clock  *testingclock.FakeClock
	logs   *bytes.Buffer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	s := fakeazdotest.Start(t)
	org := s.AddOrg("contoso", pat)
	c, err := azdo.New(azdo.Options{Name: "contoso", URL: s.OrgURL("contoso"), PAT: azdo.StaticPAT(pat), Timeout: time.Second,
		BaseBackoff: time.Millisecond, QPS: 1000})
	if err != nil {
		t.Fatal(err)
	}
	logs := &bytes.Buffer{}
	log := logrus.New()
	log.SetOutput(logs)
	clk := testingclock.NewFakeClock(time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC))
	r := routing.NewRouter(routing.Options{ForgetMin: time.Minute, ForgetMax: time.Minute, Now: clk.Now, Logger: log})
	return &fixture{fake: s, org: org, pool: org.AddPool("linux"), client: c, router: r, clock: clk, logs: logs}
}

func (f *fixture) keeper(dryRun bool) *Keeper {
	log := logrus.New()
	log.SetOutput(f.logs)
	return New(Options{Sources: map[string]Source{"contoso": f.client}, Router: f.router, Prefix: "keda", AgentVersion: "4.261.0",
		Grace: time.Hour, DryRun: dryRun, Logger: log, Now: f.clock.Now})
}

// ask is a call of a trigger with these capabilities.
func (f *fixture) ask(scaledJob string, caps map[string]string) {
	f.router.Table(queue.Key{Org: "contoso", ID: f.pool}).Observe(routing.Trigger{ID: "ns/" + scaledJob, Namespace: "ns",
		Name: scaledJob, Capabilities: caps})
}

var linuxDocker = map[string]string{"Agent.OS": "Linux", "docker": ""}

// Without an agent that satisfies its demands Azure DevOps fails a job at
// once; the keeper's placeholder makes it queue. It is offline, reports
// the template's capabilities, Agent.Version and the marker.
func TestPlaceholderMakesJobsQueue(t *testing.T) {
	f := newFixture(t)
	job := fakeazdo.Job{Demands: []string{"Agent.OS -equals Linux", "docker", "Agent.Version -gtVersion 3.220.0"}}
	var none *fakeazdo.ErrNoAgentSatisfies
	if _, err := f.org.Submit(f.pool, job); !errors.As(err, &none) {
		t.Fatalf("an empty pool accepted the job: %v", err)
	}
	f.ask("linux-docker", linuxDocker)
	f.keeper(false).Once(context.Background())
	name := Name("keda", Key(linuxDocker))
	a, ok := f.org.Agent(f.pool, name)
	if !ok {
		t.Fatalf("no placeholder %s; agents %v", name, f.org.AgentNames(f.pool))
	}
	caps := *a.SystemCapabilities
	if *a.Status != "offline" || caps["Agent.OS"] != "Linux" || caps["Agent.Version"] != "4.261.0" || caps[Marker] != Key(linuxDocker) ||
		a.Authorization == nil || a.Authorization.PublicKey == nil {
		t.Fatalf("placeholder %+v with capabilities %v", a, caps)
	}
	if _, err := f.org.Submit(f.pool, job); err != nil {
		t.Fatalf("with the placeholder the job must queue: %v", err)
	}
	// A job the template cannot run still fails at once.
	if _, err := f.org.Submit(f.pool, fakeazdo.Job{Demands: []string{"Agent.OS -equals Windows_NT"}}); !errors.As(err, &none) {
		t.Fatalf("a Windows job was accepted: %v", err)
	}
}

func TestDryRunRegistersNothing(t *testing.T) {
	f := newFixture(t)
	f.ask("linux-docker", linuxDocker)
	f.keeper(true).Once(context.Background())
	if names := f.org.AgentNames(f.pool); len(names) != 0 {
		t.Fatalf("dry run registered %v", names)
	}
	if !strings.Contains(f.logs.String(), "would register placeholder agent (dry run)") {
		t.Fatalf("dry run says nothing:\n%s", f.logs.String())
	}
}

// Two replicas that both know the trigger register one placeholder.
func TestTwoKeepersOnePlaceholder(t *testing.T) {
	f := newFixture(t)
	f.ask("linux-docker", linuxDocker)
	a, b := f.keeper(false), f.keeper(false)
	a.Once(context.Background())
	b.Once(context.Background())
	if names := f.org.AgentNames(f.pool); len(names) != 1 {
		t.Fatalf("agents %v, want one placeholder", names)
	}
	if strings.Contains(f.logs.String(), "failed") {
		t.Fatalf("the second registration is not a failure:\n%s", f.logs.String())
	}
}

// A placeholder no trigger needs goes after the grace period, once the
// process has known the pool's triggers that long; an agent with a
// placeholder's name but no marker, and placeholders of pools no trigger
// asks about here, are left alone.
func TestUnneededPlaceholderRemovedAfterGrace(t *testing.T) {
	f := newFixture(t)
	other := f.org.AddPool("other")
	f.org.AddAgent(other, fakeazdo.Agent{Name: Name("keda", "feedface00"), Capabilities: map[string]string{Marker: "feedface00"}})
	f.org.AddAgent(f.pool, fakeazdo.Agent{Name: Name("keda", "0000000000")}) // a look-alike without the marker
	gpu := map[string]string{"Agent.OS": "Linux", "cuda": "12.4"}
	f.ask("gpu", gpu)
	f.ask("linux-docker", linuxDocker)
	k := f.keeper(false)
	k.Once(context.Background())
	if n := len(f.org.AgentNames(f.pool)); n != 3 {
		t.Fatalf("agents %v, want two placeholders and the look-alike", f.org.AgentNames(f.pool))
	}
	// The gpu ScaledJob is deleted: linux-docker keeps asking, gpu does not.
	for range 130 {
		f.clock.Step(30 * time.Second)
		f.ask("linux-docker", linuxDocker)
		k.Once(context.Background())
		if f.clock.Now().Sub(time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)) < 61*time.Minute {
			if _, ok := f.org.Agent(f.pool, Name("keda", Key(gpu))); !ok {
				t.Fatalf("the gpu placeholder went before the grace period, at %v", f.clock.Now())
			}
		}
	}
	names := f.org.AgentNames(f.pool)
	if _, ok := f.org.Agent(f.pool, Name("keda", Key(gpu))); ok {
		t.Fatalf("the unneeded gpu placeholder is still there: %v", names)
	}
	if len(names) != 2 {
		t.Fatalf("agents %v: want the linux-docker placeholder and the look-alike", names)
	}
	if n := len(f.org.AgentNames(other)); n != 1 {
		t.Fatal("a placeholder of a pool no trigger asks about here was removed")
	}
}
