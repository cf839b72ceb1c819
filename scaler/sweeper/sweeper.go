package sweeper

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
	"github.com/sirupsen/logrus"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/azdo"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/queue"
)

// Source is an organization's client, as the sweeper uses it.
type Source interface {
	Agents(ctx context.Context, poolID int) ([]taskagent.TaskAgent, error)
	DeleteAgent(ctx context.Context, poolID, agentID int) error
}

// Observer counts decisions (the metrics package).
type Observer interface {
	AgentDeleted(p queue.Pool, dryRun bool)
	AgentKept(p queue.Pool, reason string)
	SweepError(p queue.Pool, op string)
}

type nopObserver struct{}

func (nopObserver) AgentDeleted(queue.Pool, bool) {}
func (nopObserver) AgentKept(queue.Pool, string)  {}
func (nopObserver) SweepError(queue.Pool, string) {}

// Options configure a Sweeper.
type Options struct {
	Rules   Rules
	DryRun  bool
	Sources map[string]Source                  // by organization name
	Pools   func(context.Context) []queue.Pool // the pools to sweep, asked at every sweep
	Parents *Parents                           // names triggers give as parent
	// IsPlaceholder recognizes a placeholder agent from its name and
	// capabilities; the sweeper never deletes one. Nil: none.
	IsPlaceholder func(name string, caps map[string]string) bool
	Observer      Observer
	Logger        logrus.FieldLogger
	// Leading is asked before every deletion; with leader election it is
	// Leadership.Valid, so a replica that lost the Lease mid-sweep stops
	// deleting at once. Nil: always.
	Leading func() bool
	// DeleteBy bounds each deletion's request: with leader election, the
	// end of the sure holding of the Lease (Leadership.Until). Nil: none.
	DeleteBy func() time.Time
	Now      func() time.Time
	// Journal receives each pool's last sweep (the status page). Nil: none.
	Journal *Journal
	// Pods (--read-cluster, with Rules.Exact) returns, once per pool
	// sweep, the state of the pod each agent name is named after. Nil: the
	// sweeper is not told (PodUnknown).
	Pods func() func(agent string) PodState
}

// Sweeper removes stale offline agents.
type Sweeper struct {
	o   Options
	log logrus.FieldLogger
}

// New builds a sweeper.
func New(o Options) *Sweeper {
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	if o.Logger == nil {
		o.Logger = logrus.StandardLogger()
	}
	if o.Leading == nil {
		o.Leading = func() bool { return true }
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Parents == nil {
		o.Parents = NewParents()
	}
	return &Sweeper{o: o, log: o.Logger.WithField("component", "sweeper")}
}

// Result sums up one sweep.
type Result struct {
	Deleted int // deleted, or in dry-run would have been
	Kept    int
	Errors  int
}

// Run sweeps every interval until ctx ends. The first sweep waits one
// interval, so that KEDA has asked about every trigger (and so named every
// parent agent) since the scaler started.
func (s *Sweeper) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.SweepOnce(ctx)
	}
}

// SweepOnce sweeps every pool once.
func (s *Sweeper) SweepOnce(ctx context.Context) Result {
	var total Result
	for _, p := range s.o.Pools(ctx) {
		r := s.sweepPool(ctx, p)
		total.Deleted += r.Deleted
		total.Kept += r.Kept
		total.Errors += r.Errors
	}
	return total
}

func (s *Sweeper) sweepPool(ctx context.Context, p queue.Pool) Result {
	var res Result
	log := s.log.WithFields(logrus.Fields{"organization": p.Org, "pool": p.Name, "poolID": p.ID, "dryRun": s.o.DryRun})
	src, ok := s.o.Sources[p.Org]
	if !ok {
		log.Error("no client for the organization; not sweeping")
		res.Errors++
		return res
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	journal := PoolSweep{Pool: p, At: s.o.Now(), DryRun: s.o.DryRun}
	defer func() { s.o.Journal.record(journal) }()
	listed, err := src.Agents(ctx, p.ID)
	if err != nil {
		// Without a sure list, nothing is deleted.
		journal.Error = "listing agents failed, so nothing was deleted: " + err.Error()
		log.WithError(err).Warn("listing agents failed; deleting nothing in this pool this sweep")
		s.o.Observer.SweepError(p, "list")
		res.Errors++
		return res
	}
	podOf := func(string) PodState { return PodUnknown }
	if s.o.Pods != nil {
		podOf = s.o.Pods() // once per pool: the cluster's pods as they are now
	}
	agents := make([]Agent, 0, len(listed))
	for _, a := range listed {
		converted, ok := convert(a, s.o.IsPlaceholder)
		if !ok {
			journal.Error = "an agent in Azure DevOps' answer lacks its id, name or status, so nothing was deleted"
			log.WithField("agent", a).Warn("an agent in the answer lacks its id, name or status; deleting nothing in this pool this sweep")
			s.o.Observer.SweepError(p, "list")
			res.Errors++
			return res
		}
		converted.Pod = podOf(converted.Name)
		agents = append(agents, converted)
	}
	now := s.o.Now()
	for _, d := range Decide(agents, now, s.o.Rules, s.o.Parents.Names(p.Org)) {
		alog := log.WithFields(logrus.Fields{"agent": d.Agent.Name, "agentID": d.Agent.ID, "reason": d.Reason})
		entry := JournalEntry{Agent: d.Agent.Name, Reason: d.Reason}
		if !d.OfflineSince.IsZero() && !d.Agent.Online {
			entry.OfflineFor = now.Sub(d.OfflineSince).Round(time.Second)
			alog = alog.WithField("offlineFor", entry.OfflineFor.String())
		}
		note := func(action string) { entry.Action = action; journal.add(entry) }
		if !d.Delete {
			note(ActionKept)
			alog.Debug("keeping agent")
			s.o.Observer.AgentKept(p, d.Reason)
			res.Kept++
			continue
		}
		if s.o.DryRun {
			note(ActionWouldDelete)
			alog.Info("would delete agent (dry run)")
			s.o.Observer.AgentDeleted(p, true)
			res.Deleted++
			continue
		}
		if !s.o.Leading() {
			note(ActionNotDeleted)
			log.Warn("lost the sweeper Lease during a sweep; stopping")
			return res
		}
		err := s.deleteAgent(ctx, src, p.ID, d.Agent.ID)
		if errors.Is(err, azdo.ErrNotFound) {
			note(ActionAlreadyRemoved)
			alog.Info("agent already removed")
			continue
		}
		if err != nil {
			// Tried again at the next sweep, never in a loop here.
			entry.Reason += ": " + err.Error()
			note(ActionDeleteFailed)
			alog.WithError(err).Warn("deleting agent failed; will retry at the next sweep")
			s.o.Observer.SweepError(p, "delete")
			res.Errors++
			continue
		}
		note(ActionDeleted)
		alog.Info("deleted stale offline agent")
		s.o.Observer.AgentDeleted(p, false)
		res.Deleted++
	}
	return res
}

// deleteAgent deletes within the sure holding of the Lease, if any.
func (s *Sweeper) deleteAgent(ctx context.Context, src Source, poolID, agentID int) error {
	if s.o.DeleteBy != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, s.o.DeleteBy())
		defer cancel()
	}
	return src.DeleteAgent(ctx, poolID, agentID)
}

func convert(a taskagent.TaskAgent, isPlaceholder func(string, map[string]string) bool) (Agent, bool) {
	if a.Id == nil || a.Name == nil || a.Status == nil {
		return Agent{}, false
	}
	out := Agent{ID: *a.Id, Name: *a.Name, Assigned: a.AssignedRequest != nil}
	if isPlaceholder != nil {
		caps := map[string]string{}
		for _, m := range []*map[string]string{a.SystemCapabilities, a.UserCapabilities} {
			if m != nil {
				for k, v := range *m {
					caps[k] = v
				}
			}
		}
		out.Placeholder = isPlaceholder(*a.Name, caps)
	}
	if r := a.LastCompletedRequest; r != nil && r.FinishTime != nil && r.FinishTime.Time.Year() > 1 {
		out.Finished = true
	}
	switch strings.ToLower(string(*a.Status)) {
	case "online":
		out.Online = true
	case "offline":
	default:
		return Agent{}, false // an unknown status: in doubt
	}
	if a.StatusChangedOn != nil {
		out.StatusChangedOn = a.StatusChangedOn.Time
	}
	if a.CreatedOn != nil {
		out.CreatedOn = a.CreatedOn.Time
	}
	return out, true
}

// Parents records the agent names triggers give as parent, per
// organization. Names are kept for the life of the process: forgetting a
// protected name is the unsafe side.
type Parents struct {
	mu    sync.RWMutex
	names map[string]map[string]bool
}

// NewParents makes an empty set.
func NewParents() *Parents { return &Parents{names: map[string]map[string]bool{}} }

// Add records a parent name of an organization.
func (p *Parents) Add(org, name string) {
	lower := strings.ToLower(name)
	p.mu.RLock()
	known := p.names[org][lower]
	p.mu.RUnlock()
	if known {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.names[org] == nil {
		p.names[org] = map[string]bool{}
	}
	p.names[org][lower] = true
}

// Names returns a copy of an organization's parent names (lower case).
// A parent is protected in every pool of its organization.
func (p *Parents) Names(org string) map[string]bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := make(map[string]bool, len(p.names[org]))
	for k := range p.names[org] {
		out[k] = true
	}
	return out
}
