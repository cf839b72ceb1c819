// Package service implements KEDA's ExternalScaler gRPC service from the
// pool snapshots. Every answer is computed in memory from the pool's latest
// snapshot and routing plan. A call waits for Azure DevOps only in two
// cases: the first lookup of a pool's name, and when it finds the pool's
// snapshot older than --min-refresh-interval: then it waits, at most
// --refresh-wait, for the one refresh all such callers share. Each call
// also tells the pool's routing table that its trigger exists, and the
// count a trigger gets is the one routing gives it. It maps every failure
// to the gRPC code a user can act on; it never talks to Azure DevOps
// itself (package pools does).
package service

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	pb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	"github.com/sirupsen/logrus"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/pools"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/queue"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/routing"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/scaledjobs"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/trigger"
)

// Access decides whether a namespace may use a pool.
type Access interface {
	Allowed(pool queue.Pool, namespace string) bool
}

// AllowAll lets every namespace use every pool.
type AllowAll struct{}

// Allowed always says yes.
func (AllowAll) Allowed(queue.Pool, string) bool { return true }

// Options configure the service.
type Options struct {
	// FirstAnswerWait bounds how long a call waits for a pool's first
	// snapshot when the caller set no deadline. Default 10s.
	FirstAnswerWait time.Duration
	Logger          logrus.FieldLogger
	// OnParent is told the parent agent named by every trigger that has
	// one, so that the sweeper never removes it.
	OnParent func(org, name string)
	// Router routes each pool's jobs among its triggers; default: a router
	// with default options.
	Router *routing.Router
	// Verify: the triggers are the ScaledJobs' (SyncTriggers, from the
	// cluster) and the Router's are Given. A call is answered only for a
	// known ScaledJob's trigger with the very same metadata; any other call
	// is refused and changes nothing: no trigger, no parent, no pool in use.
	Verify bool
	// Demand records the demand of triggers with standby auto; nil: auto
	// keeps no standby agent.
	Demand *Demand
	// Standby receives the standby metrics; nil: none.
	Standby StandbyObserver
	// Now is the clock of standby decisions; default time.Now.
	Now func() time.Time
}

func (o *Options) now() time.Time {
	if o.Now == nil {
		return time.Now()
	}
	return o.Now()
}

// Service is KEDA's ExternalScaler.
type Service struct {
	pb.UnimplementedExternalScalerServer
	registry *pools.Registry
	orgs     trigger.Organizations
	access   Access
	opts     Options
	log      logrus.FieldLogger
	specs    *specCache

	mu    sync.Mutex
	known map[string]string // Verify: namespace/name -> canonical metadata of its trigger
	// targets: Verify: namespace/name -> its resolved trigger, for the
	// standby endpoint.
	targets map[string]*target
	logged  map[string]string // Verify: a trigger's problem already logged
}

// New builds the service.
func New(registry *pools.Registry, orgs trigger.Organizations, access Access, o Options) *Service {
	if o.FirstAnswerWait <= 0 {
		o.FirstAnswerWait = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = logrus.StandardLogger()
	}
	if access == nil {
		access = AllowAll{}
	}
	if o.Router == nil {
		o.Router = routing.NewRouter(routing.Options{Logger: o.Logger})
	}
	return &Service{registry: registry, orgs: orgs, access: access, opts: o, log: o.Logger, specs: newSpecCache(4096),
		known: map[string]string{}, logged: map[string]string{}, targets: map[string]*target{}}
}

// target is a resolved trigger: its spec, pool, poller and routing table.
type target struct {
	namespace string // the ScaledJob's
	name      string
	spec      *trigger.Spec
	pool      queue.Pool
	poller    *pools.Poller
	table     *routing.Table
	triggerID string
}

func (s *Service) resolve(ctx context.Context, ref *pb.ScaledObjectRef) (*target, error) {
	if ref == nil {
		return nil, status.Error(codes.InvalidArgument, "scaledObjectRef is required")
	}
	spec, key, err := s.specs.parse(ref.ScalerMetadata, s.orgs)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if s.opts.Verify {
		if err := s.verify(ref, key); err != nil {
			return nil, err
		}
	} else if spec.Standby.Enabled() {
		// Idle standby pods ask the scaler whether they stay, which needs
		// their pods: without them standby would churn like minReplicaCount.
		return nil, status.Error(codes.InvalidArgument, (&trigger.Error{Key: trigger.KeyStandby,
			Problem: "standby needs the scaler's --read-cluster (the chart's cluster.read), which this scaler runs without"}).Error())
	} else if spec.Parent != "" && s.opts.OnParent != nil {
		s.opts.OnParent(spec.Organization, spec.Parent)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	pool, err := s.registry.Resolve(ctx, spec.Organization, spec.PoolName, spec.PoolID)
	if err != nil {
		if errors.Is(err, pools.ErrPoolNotFound) {
			return nil, status.Error(codes.NotFound, err.Error())
		}
		return nil, status.Errorf(codes.Unavailable, "looking up the agent pool: %v", err)
	}
	if !s.access.Allowed(pool, ref.Namespace) {
		return nil, status.Errorf(codes.PermissionDenied, "namespace %q may not use agent pool %q of organization %q (see allowedNamespaces in the scaler's config)",
			ref.Namespace, pool.Name, spec.Organization)
	}
	poller, err := s.registry.Poller(pool)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	rt := routingTrigger(ref, spec, key)
	table := s.opts.Router.Table(pool.Key)
	table.Observe(rt)
	if spec.Standby.Auto && s.opts.Demand != nil {
		s.opts.Demand.History(rt.ID) // record its demand from now on
	}
	return &target{namespace: ref.Namespace, name: ref.Name, spec: spec, pool: pool, poller: poller, table: table, triggerID: rt.ID}, nil
}

// verify refuses a call that is not a known ScaledJob's trigger with the
// same metadata (Options.Verify).
func (s *Service) verify(ref *pb.ScaledObjectRef, key string) error {
	id := ref.Namespace + "/" + ref.Name
	s.mu.Lock()
	want, ok := s.known[id]
	s.mu.Unlock()
	switch {
	case !ok:
		return status.Errorf(codes.NotFound, "no ScaledJob %s with a usable external trigger pointing at this scaler (--scaler-address) is known: "+
			"this call changes nothing", id)
	case want != key:
		return status.Errorf(codes.PermissionDenied, "the metadata of this call is not that of ScaledJob %s's trigger for this scaler: "+
			"this call changes nothing", id)
	}
	return nil
}

// SyncTriggers makes the given ScaledJob triggers the only ones
// (Options.Verify): each is parsed, its pool looked up and checked against
// allowedNamespaces, its pool polled, its parent kept from the sweeper, and
// its agents are those named after its pods (owners, version ownersVersion
// changes whenever they do). A trigger that cannot be used is left out and
// logged once with the reason. A pool found once stays known (the registry
// keeps it, refreshed in the background), so only a trigger's first lookup
// can fail while Azure DevOps does: that trigger is routed at the first
// sync after Azure DevOps answers. It returns the number of triggers routed.
func (s *Service) SyncTriggers(ctx context.Context, targets []scaledjobs.Target, owners scaledjobs.Owners, ownersVersion uint64) int {
	sets := map[queue.Key][]routing.Trigger{}
	known := map[string]string{}
	resolved := map[string]*target{}
	problems := map[string]string{}
	routed := 0
	parsed := make([]*parsedTrigger, len(targets))
	for i, t := range targets {
		id := t.ScaledJob.String()
		if k := fromEnvKey(t.Trigger.Metadata); k != "" {
			problems[id] = fmt.Sprintf("metadata key %q is resolved by KEDA from the pod and cannot be checked against the ScaledJob; "+
				"with --read-cluster use organization: NAME (or organizationURL) instead", k)
			continue
		}
		spec, key, err := s.specs.parse(t.Trigger.Metadata, s.orgs)
		if err != nil {
			problems[id] = err.Error()
			continue
		}
		parsed[i] = &parsedTrigger{spec: spec, key: key}
	}
	answers := s.resolvePools(ctx, parsed)
	for i, t := range targets {
		if parsed[i] == nil {
			continue
		}
		spec, key := parsed[i].spec, parsed[i].key
		ref := &pb.ScaledObjectRef{Namespace: t.ScaledJob.Namespace, Name: t.ScaledJob.Name, ScalerMetadata: t.Trigger.Metadata}
		id := t.ScaledJob.String()
		a := answers[lookupOf(spec)]
		if a.err != nil {
			problems[id] = "looking up its agent pool: " + a.err.Error()
			continue
		}
		pool := a.pool
		if !s.access.Allowed(pool, t.ScaledJob.Namespace) {
			problems[id] = fmt.Sprintf("namespace %q may not use agent pool %q (allowedNamespaces)", t.ScaledJob.Namespace, pool.Name)
			continue
		}
		poller, err := s.registry.Poller(pool)
		if err != nil {
			problems[id] = err.Error()
			continue
		}
		if spec.Parent != "" && s.opts.OnParent != nil {
			s.opts.OnParent(spec.Organization, spec.Parent)
		}
		rt := routingTrigger(ref, spec, key)
		rt.Room = t.Room // KEDA runs at most this many Jobs for it: more jobs overflow
		rt.Stalled = t.Stalled
		if spec.AgentPattern == "" {
			self := t.ScaledJob
			// A pod that is gone holds no Job KEDA counts as running: its
			// job, which Azure DevOps may still list as running until the
			// next snapshot, counts for no ScaledJob, or KEDA would start
			// a pod for it again.
			rt.OwnsAgent = func(agent string) bool {
				p, ok := owners.Pod(agent)
				return ok && !p.Gone && p.Namespace == self.Namespace && p.ScaledJob == self.Name
			}
		}
		sets[pool.Key] = append(sets[pool.Key], rt)
		known[id] = key
		resolved[id] = &target{namespace: t.ScaledJob.Namespace, name: t.ScaledJob.Name, spec: spec, pool: pool, poller: poller, table: s.opts.Router.Table(pool.Key), triggerID: rt.ID}
		if spec.Standby.Auto && s.opts.Demand != nil {
			s.opts.Demand.History(rt.ID)
		}
		routed++
	}
	if s.opts.Demand != nil {
		s.opts.Demand.setOwners(owners, s.opts.Standby)
		ids := make(map[string]bool, len(resolved))
		for _, t := range resolved {
			ids[t.triggerID] = true
		}
		s.opts.Demand.retain(ids)
	}
	s.opts.Router.SetTriggers(sets, ownersVersion)
	s.mu.Lock()
	s.known = known
	s.targets = resolved
	for id, why := range problems {
		if s.logged[id] != why {
			s.log.WithFields(logrus.Fields{"scaledJob": id}).Warn("this ScaledJob's trigger is not routed: " + why)
		}
	}
	s.logged = problems
	s.mu.Unlock()
	return routed
}

// parsedTrigger is a ScaledJob's trigger metadata, parsed.
type parsedTrigger struct {
	spec *trigger.Spec
	key  string
}

// poolLookup names a pool as a trigger does.
type poolLookup struct {
	org, name string
	id        int
}

func lookupOf(spec *trigger.Spec) poolLookup {
	return poolLookup{org: spec.Organization, name: strings.ToLower(spec.PoolName), id: spec.PoolID}
}

type poolAnswer struct {
	pool queue.Pool
	err  error
}

// resolvePools looks up each distinct pool of the triggers once, up to 8
// at a time, each within FirstAnswerWait: a sync costs one lookup per pool,
// not per trigger, and while Azure DevOps fails it is delayed by about one
// wait, not by one wait per pool.
func (s *Service) resolvePools(ctx context.Context, parsed []*parsedTrigger) map[poolLookup]poolAnswer {
	var mu sync.Mutex
	answers := map[poolLookup]poolAnswer{}
	var g errgroup.Group
	g.SetLimit(8)
	for _, p := range parsed {
		if p == nil {
			continue
		}
		q := lookupOf(p.spec)
		mu.Lock()
		_, asked := answers[q]
		if !asked {
			answers[q] = poolAnswer{err: errors.New("not looked up")}
		}
		mu.Unlock()
		if asked {
			continue
		}
		spec := p.spec
		g.Go(func() error {
			rctx, cancel := s.bound(ctx)
			defer cancel()
			pool, err := s.registry.Resolve(rctx, spec.Organization, spec.PoolName, spec.PoolID)
			mu.Lock()
			answers[q] = poolAnswer{pool: pool, err: err}
			mu.Unlock()
			return nil
		})
	}
	_ = g.Wait()
	return answers
}

// fromEnvKey is a metadata key KEDA resolves from the pod's environment
// before each call ("" when there is none).
func fromEnvKey(md map[string]string) string {
	for k := range md {
		if strings.HasSuffix(k, "FromEnv") {
			return k
		}
	}
	return ""
}

// routingTrigger is the trigger as routing sees it: the ScaledJob's
// namespace/name, and a digest of its metadata that tells an edit apart.
func routingTrigger(ref *pb.ScaledObjectRef, spec *trigger.Spec, metadataKey string) routing.Trigger {
	sum := sha256.Sum256([]byte(metadataKey))
	owner := routing.KEDAPodOwner(ref.Name)
	if spec.AgentPattern != "" {
		owner = routing.PatternOwner(spec.AgentPattern)
	}
	return routing.Trigger{
		ID: ref.Namespace + "/" + ref.Name, Digest: hex.EncodeToString(sum[:8]),
		Namespace: ref.Namespace, Name: ref.Name,
		Priority: spec.Priority, Rank: spec.Rank(), Shared: spec.Shared, InFlight: spec.ScaleOnInFlight,
		Accepts: spec.Accepts, OwnsAgent: owner, Filter: spec.Filter(), Capabilities: spec.Capabilities(),
	}
}

// bound gives ctx a deadline when the caller set none.
func (s *Service) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, s.opts.FirstAnswerWait)
}

// count is the number of jobs the trigger counts, or Unavailable.
func (s *Service) count(ctx context.Context, t *target) (int64, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	snap, err := t.poller.Snapshot(ctx)
	if err != nil {
		return 0, status.Error(codes.Unavailable, err.Error())
	}
	extra, _ := s.standbyCount(t)
	return int64(t.table.Count(snap, t.triggerID)) + extra, nil
}

// GetMetricSpec answers one metric per trigger, named after the pool and
// filter, with the trigger's target.
func (s *Service) GetMetricSpec(ctx context.Context, ref *pb.ScaledObjectRef) (*pb.GetMetricSpecResponse, error) {
	t, err := s.resolve(ctx, ref)
	if err != nil {
		return nil, err
	}
	return &pb.GetMetricSpecResponse{MetricSpecs: []*pb.MetricSpec{s.metricSpec(t)}}, nil
}

func (s *Service) metricSpec(t *target) *pb.MetricSpec {
	return &pb.MetricSpec{MetricName: t.spec.MetricName(t.pool.ID), TargetSize: t.spec.Target, TargetSizeFloat: float64(t.spec.Target)}
}

// GetMetrics answers the number of jobs the trigger counts.
func (s *Service) GetMetrics(ctx context.Context, req *pb.GetMetricsRequest) (*pb.GetMetricsResponse, error) {
	t, err := s.resolve(ctx, req.GetScaledObjectRef())
	if err != nil {
		return nil, err
	}
	n, err := s.count(ctx, t)
	if err != nil {
		return nil, err
	}
	name := req.GetMetricName()
	if name == "" {
		name = t.spec.MetricName(t.pool.ID)
	}
	return &pb.GetMetricsResponse{MetricValues: []*pb.MetricValue{{MetricName: name, MetricValue: n, MetricValueFloat: float64(n)}}}, nil
}

// IsActive is true when the count is above the activation target.
func (s *Service) IsActive(ctx context.Context, ref *pb.ScaledObjectRef) (*pb.IsActiveResponse, error) {
	t, err := s.resolve(ctx, ref)
	if err != nil {
		return nil, err
	}
	n, err := s.count(ctx, t)
	if err != nil {
		return nil, err
	}
	return &pb.IsActiveResponse{Result: n > t.spec.Activation}, nil
}

// StreamIsActive sends the current state at once, then every change. KEDA
// ignores push triggers on ScaledJobs; this serves ScaledObjects (agents run
// as a Deployment). While the data is stale the stream ends with
// Unavailable, and KEDA reconnects with backoff.
func (s *Service) StreamIsActive(ref *pb.ScaledObjectRef, stream pb.ExternalScaler_StreamIsActiveServer) error {
	ctx := stream.Context()
	var last *bool
	for {
		// Resolving again on every round keeps the pool's poller in use.
		t, err := s.resolve(ctx, ref)
		if err != nil {
			return err
		}
		changed := t.poller.Changed()
		n, err := s.count(ctx, t)
		if err != nil {
			return err
		}
		active := n > t.spec.Activation
		if last == nil || *last != active {
			if err := stream.Send(&pb.IsActiveResponse{Result: active}); err != nil {
				return err
			}
			last = &active
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
	}
}

// StreamMetricSpec sends the trigger's metric spec once: a trigger's target
// comes from its metadata and never changes while the stream is open (a
// change of metadata makes KEDA open a new stream).
func (s *Service) StreamMetricSpec(ref *pb.ScaledObjectRef, stream pb.ExternalScaler_StreamMetricSpecServer) error {
	t, err := s.resolve(stream.Context(), ref)
	if err != nil {
		return err
	}
	if err := stream.Send(&pb.GetMetricSpecResponse{MetricSpecs: []*pb.MetricSpec{s.metricSpec(t)}}); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}
