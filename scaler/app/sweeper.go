package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/config"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/leader"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/metrics"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/placeholders"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/queue"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/sweeper"
)

// startKeeper keeps the placeholder agents of the pools this replica knows
// triggers of (every replica does: only the one KEDA talks to knows any).
func startKeeper(ctx context.Context, flags *config.Flags, inst *Instance, m *metrics.Metrics, log *logrus.Logger) {
	if !flags.Placeholders {
		log.Info("placeholder agents off (--placeholders=false): jobs fail at once in a pool without an agent that satisfies them")
		return
	}
	sources := map[string]placeholders.Source{}
	for name, c := range inst.Clients {
		sources[name] = c
	}
	k := placeholders.New(placeholders.Options{Sources: sources, Router: inst.Router, Prefix: flags.PlaceholderPrefix,
		AgentVersion: flags.PlaceholderAgentVersion, Grace: flags.PlaceholderGrace, DryRun: flags.PlaceholderDryRun,
		Observer: m, Logger: log})
	go k.Run(ctx, 30*time.Second)
}

// startSweeper runs the sweeper in the background, behind a Lease when
// --leader-elect is set.
func startSweeper(ctx context.Context, flags *config.Flags, inst *Instance, m *metrics.Metrics, log *logrus.Logger) error {
	if flags.SweepInterval == 0 {
		log.Info("sweeper disabled (--sweep-interval=0)")
		return nil
	}
	sources := map[string]sweeper.Source{}
	for name, c := range inst.Clients {
		sources[name] = c
	}
	base := sweeper.Options{
		Rules: sweeper.Rules{OfflineFor: flags.SweepOfflineFor, FinishedFor: flags.SweepFinishedFor, Pattern: flags.SweepAgentPattern,
			Protect: flags.SweepProtect, MaxDeletions: flags.SweepMaxDeletions},
		DryRun: flags.SweepDryRun, Sources: sources, Parents: inst.parents, Observer: m, Logger: log, Journal: inst.journal,
		IsPlaceholder: placeholders.Recognize(flags.PlaceholderPrefix),
		Pools: func(ctx context.Context) []queue.Pool {
			return poolsToSweep(ctx, inst, flags.SweepPoolGlobs(), flags.ReadCluster, log)
		},
	}
	if flags.ReadCluster {
		// Exact: an agent goes only when its ScaledJob's pod is gone.
		base.Rules.Exact = true
		base.Pods = inst.podStates
	}
	if flags.SweepAgentPattern == "*" && !flags.SweepDryRun && !flags.ReadCluster {
		log.Warn("--sweep-agent-pattern is \"*\": every offline agent of the swept pools may be removed; set it to your agent pods' names")
	}
	if !flags.LeaderElect {
		go sweeper.New(base).Run(ctx, flags.SweepInterval)
		return nil
	}
	election, err := electionConfig(flags, log)
	if err != nil {
		return err
	}
	go func() {
		err := leader.RunElected(ctx, election, func(ctx context.Context, l leader.Leadership) {
			inst.leading.Store(true)
			defer inst.leading.Store(false)
			o := base
			o.Leading, o.DeleteBy = l.Valid, l.Until
			sweeper.New(o).Run(ctx, flags.SweepInterval)
		})
		if err != nil {
			log.WithError(err).Error("sweeper leader election stopped; this replica does not sweep")
		}
	}()
	return nil
}

// poolsToSweep are the organization's self-hosted pools whose names match
// globs (--sweep-pools), listed from Azure DevOps at every sweep, the pools
// the config lists, and with inUse (--read-cluster) the pools ScaledJobs
// use: the same on every replica, whichever KEDA talks to. Each pool once.
// An organization whose pools cannot be listed is swept for the others.
func poolsToSweep(ctx context.Context, inst *Instance, globs []string, inUse bool, log logrus.FieldLogger) []queue.Pool {
	seen := map[queue.Key]bool{}
	var out []queue.Pool
	add := func(p queue.Pool) {
		if !seen[p.Key] {
			seen[p.Key] = true
			out = append(out, p)
		}
	}
	if inUse {
		// Every ScaledJob's pool, from memory: the same on every replica.
		for _, st := range inst.Registry.Statuses() {
			add(st.Pool)
		}
	}
	for _, o := range inst.Config.Organizations {
		var listed []queue.Pool
		var err error
		if len(globs) > 0 {
			listed, err = inst.Clients[o.Name].SelfHostedPools(ctx)
		}
		if err != nil {
			log.WithError(err).WithFields(logrus.Fields{"component": "sweeper", "organization": o.Name}).
				Warn("listing the agent pools failed; sweeping only the pools in use and those the config lists")
		}
		for _, p := range listed {
			if matchesAny(globs, p.Name) {
				add(p)
			}
		}
		for _, p := range o.Pools {
			pool, err := inst.Registry.Resolve(ctx, o.Name, p.Name, p.ID)
			if err != nil {
				log.WithError(err).WithFields(logrus.Fields{"component": "sweeper", "organization": o.Name}).
					Warn("cannot look up a pool listed in the config; skipping it")
				continue
			}
			add(pool)
		}
	}
	return out
}

func matchesAny(globs []string, name string) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}

// kubeConfig is the Kubernetes API's client configuration: --kubeconfig,
// else the pod's service account.
func kubeConfig(flags *config.Flags) (*rest.Config, error) {
	if flags.Kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", flags.Kubeconfig)
	}
	return rest.InClusterConfig()
}

func electionConfig(flags *config.Flags, log logrus.FieldLogger) (leader.Election, error) {
	cfg, err := kubeConfig(flags)
	if err != nil {
		return leader.Election{}, fmt.Errorf("--leader-elect needs a Kubernetes API (in a cluster, or --kubeconfig): %w", err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return leader.Election{}, err
	}
	ns := flags.LeaderElectNS
	if ns == "" {
		ns = os.Getenv("POD_NAMESPACE")
	}
	if ns == "" {
		b, _ := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
		ns = strings.TrimSpace(string(b))
	}
	if ns == "" {
		return leader.Election{}, errors.New("--leader-elect: set --leader-elect-namespace (or POD_NAMESPACE)")
	}
	id := flags.LeaderElectIdentity
	if id == "" {
		if id, err = os.Hostname(); err != nil {
			return leader.Election{}, err
		}
	}
	return leader.Election{Role: "sweeper", Client: client, Namespace: ns, Lease: flags.LeaderElectLease, Identity: id, Logger: log,
		LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second}, nil
}

// sweeperState says, for the status page, what this replica's sweeper does.
func sweeperState(flags *config.Flags, leading *atomic.Bool) string {
	if flags.SweepInterval == 0 {
		return "The sweeper is off (--sweep-interval=0)."
	}
	mode := ""
	if flags.SweepDryRun {
		mode = " in dry run (it removes nothing)"
	}
	switch {
	case !flags.LeaderElect:
		return fmt.Sprintf("This replica sweeps every %s%s.", flags.SweepInterval, mode)
	case leading.Load():
		return fmt.Sprintf("This replica holds the Lease %s and sweeps every %s%s.", flags.LeaderElectLease, flags.SweepInterval, mode)
	}
	return fmt.Sprintf("Another replica holds the Lease %s (or none does yet): this one does not sweep. Its decisions are on that replica's page.", flags.LeaderElectLease)
}
