package app

import (
	"context"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/cluster"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/config"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/scaledjobs"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/service"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/sweeper"
)

// clusterSyncTimeout bounds the wait for the first list of ScaledJobs and
// pods at start-up.
const clusterSyncTimeout = time.Minute

// startClusterReader reads the ScaledJobs and their pods (--read-cluster)
// and keeps the service's triggers in step with them. It returns after the
// first sync, so that the scaler is ready only once it knows every trigger:
// no warm-up, and the same triggers on every replica.
func startClusterReader(ctx context.Context, flags *config.Flags, svc *service.Service, log logrus.FieldLogger) (*cluster.Reader, error) {
	cfg, err := kubeConfig(flags)
	if err != nil {
		return nil, fmt.Errorf("--read-cluster needs a Kubernetes API (in a cluster, or --kubeconfig): %w", err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	r, err := cluster.New(cluster.Options{Client: client, Dynamic: dyn, Namespaces: flags.WatchNS, Logger: log})
	if err != nil {
		return nil, err
	}
	r.Start(ctx)
	waitCtx, cancel := context.WithTimeout(ctx, clusterSyncTimeout)
	defer cancel()
	if err := r.WaitSynced(waitCtx); err != nil {
		return nil, err
	}
	var version uint64
	events := r.NewEvents()
	context.AfterFunc(ctx, events.Stop)
	stalled := map[scaledjobs.Ref]string{} // as last told in a log line and an Event
	targets := func() ([]scaledjobs.Target, scaledjobs.Owners) {
		pods, jobs, now := r.Pods(), r.Jobs(), time.Now()
		ts := scaledjobs.Targets(r.ScaledJobs(), flags.ScalerAddresses)
		seen := map[scaledjobs.Ref]bool{}
		for i := range ts {
			ref := ts[i].ScaledJob
			why := scaledjobs.Stall(ref, jobs, pods, now, flags.StallGrace)
			ts[i].Stalled, seen[ref] = why, true
			slog := log.WithFields(logrus.Fields{"component": "cluster", "scaledJob": ref.String()})
			switch was := stalled[ref]; {
			case why != "" && was == "":
				slog.Warn("this ScaledJob's pods cannot start; its waiting jobs go to the next template that can run them: " + why)
				events.Warn(ref, false, "AgentPodsCannotStart", "azdo-keda-scaler routes this ScaledJob's waiting jobs to other templates: "+why)
			case why == "" && was != "":
				slog.Info("this ScaledJob's pods start again; routing returns to normal")
				events.Warn(ref, true, "AgentPodsStartAgain", "azdo-keda-scaler routes jobs to this ScaledJob again")
			}
			stalled[ref] = why
		}
		for ref := range stalled {
			if !seen[ref] {
				delete(stalled, ref)
			}
		}
		return ts, scaledjobs.NewOwners(pods)
	}
	// wait returns at the next change, or after a quarter of the stall
	// grace at most: a stall shows by time passing as well as by events.
	wait := func(changed <-chan struct{}) {
		recheck := time.NewTimer(max(flags.StallGrace/4, time.Second))
		defer recheck.Stop()
		select {
		case <-ctx.Done():
		case <-changed:
		case <-recheck.C:
		}
	}
	sync := func() <-chan struct{} {
		version++
		changed := r.Changed() // before reading: a change during the sync is seen by the next
		ts, owners := targets()
		n := svc.SyncTriggers(ctx, ts, owners, version)
		log.WithFields(logrus.Fields{"component": "cluster", "triggers": n}).Debug("triggers synced from the cluster's ScaledJobs")
		return changed
	}
	// The first sync happens before the scaler is ready; later ones follow
	// every change, at most one per debounce (a burst of pod events costs
	// one sync), and every quarter of the stall grace.
	changed := sync()
	go func() {
		const debounce = 200 * time.Millisecond
		for ctx.Err() == nil {
			wait(changed)
			t := time.NewTimer(debounce)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			changed = sync()
		}
	}()
	return r, nil
}

// podStates returns, for the sweeper (--read-cluster), the state of the
// pod each agent is named after, as the cluster reader knows it now.
func (inst *Instance) podStates() func(agent string) sweeper.PodState {
	owners := scaledjobs.NewOwners(inst.cluster.Pods())
	return func(agent string) sweeper.PodState {
		p, ok := owners.Pod(agent)
		switch {
		case !ok:
			return sweeper.PodNone
		case p.Gone:
			return sweeper.PodGone
		}
		return sweeper.PodAlive
	}
}
