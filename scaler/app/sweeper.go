package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/config"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/metrics"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/sweeper"
)

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
		Rules: sweeper.Rules{OfflineFor: flags.SweepOfflineFor, Pattern: flags.SweepAgentPattern, Protect: flags.SweepProtect,
			MaxDeletions: flags.SweepMaxDeletions},
		DryRun: flags.SweepDryRun, Sources: sources, Parents: inst.parents, Observer: m, Logger: log,
		Pools: func(ctx context.Context) []sweeper.Pool { return poolsToSweep(ctx, inst, log) },
	}
	if flags.SweepAgentPattern == "*" && !flags.SweepDryRun {
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
		err := sweeper.RunElected(ctx, election, func(ctx context.Context, isLeader func() bool) {
			o := base
			o.Leading = isLeader
			sweeper.New(o).Run(ctx, flags.SweepInterval)
		})
		if err != nil {
			log.WithError(err).Error("sweeper leader election stopped; this replica does not sweep")
		}
	}()
	return nil
}

// poolsToSweep is every pool a trigger uses, and every pool the config
// lists.
func poolsToSweep(ctx context.Context, inst *Instance, log logrus.FieldLogger) []sweeper.Pool {
	seen := map[[2]string]bool{}
	var out []sweeper.Pool
	add := func(org string, id int, name string) {
		k := [2]string{org, fmt.Sprint(id)}
		if !seen[k] {
			seen[k] = true
			out = append(out, sweeper.Pool{Organization: org, ID: id, Name: name})
		}
	}
	for _, k := range inst.Registry.InUse() {
		add(k.Organization, k.PoolID, fmt.Sprint(k.PoolID))
	}
	for _, o := range inst.Config.Organizations {
		for _, p := range o.Pools {
			pool, err := inst.Registry.Resolve(ctx, o.Name, p.Name, p.ID)
			if err != nil {
				log.WithError(err).WithField("organization", o.Name).Warn("sweeper: cannot look up a pool listed in the config; skipping it")
				continue
			}
			add(o.Name, pool.ID, pool.Name)
		}
	}
	return out
}

func electionConfig(flags *config.Flags, log logrus.FieldLogger) (sweeper.Election, error) {
	var cfg *rest.Config
	var err error
	if flags.Kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", flags.Kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		return sweeper.Election{}, fmt.Errorf("--leader-elect needs a Kubernetes API (in a cluster, or --kubeconfig): %w", err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return sweeper.Election{}, err
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
		return sweeper.Election{}, errors.New("--leader-elect: set --leader-elect-namespace (or POD_NAMESPACE)")
	}
	id := flags.LeaderElectIdentity
	if id == "" {
		if id, err = os.Hostname(); err != nil {
			return sweeper.Election{}, err
		}
	}
	return sweeper.Election{Client: client, Namespace: ns, Lease: flags.LeaderElectLease, Identity: id, Logger: log,
		LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second}, nil
}
