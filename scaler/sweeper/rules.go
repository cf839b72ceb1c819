// Package sweeper removes stale offline agents from Azure DevOps: agents
// of single-run pods that were killed before they could deregister.
//
// It deletes an agent only when every rule holds, and nothing when in
// doubt: the rules are a pure function (Decide) so that they can be tested
// exhaustively, and the Sweeper around them only lists, decides, caps and
// deletes.
package sweeper

import (
	"path"
	"sort"
	"strings"
	"time"
)

// Agent is what the rules look at.
type Agent struct {
	ID              int
	Name            string
	Online          bool
	Assigned        bool      // has an assigned request
	StatusChangedOn time.Time // zero: never recorded
	CreatedOn       time.Time
	Placeholder     bool // a placeholder agent (by name or marker capability)
	Finished        bool // it completed a job: a single-run agent whose one job is done
	Pod             PodState
}

// PodState is what the cluster says of the pod an agent is named after
// (--read-cluster).
type PodState int

// Pod states.
const (
	PodUnknown PodState = iota // the sweeper was not told: the name rules apply
	PodNone                    // named after no pod of a known ScaledJob: a static agent, or not ours
	PodAlive                   // its pod exists and has not terminated
	PodGone                    // its pod was deleted or has terminated: the agent can never come back
)

// Defaults of the sweeper's flags.
const (
	DefaultInterval     = 30 * time.Second
	DefaultOfflineFor   = 15 * time.Minute
	DefaultFinishedFor  = 30 * time.Second
	DefaultMaxDeletions = 50
	// DefaultPattern matches KEDA's pod names, <scaledjob>-<5>-<5>.
	DefaultPattern = "*-?????-?????"
)

// Rules configure what may be deleted.
type Rules struct {
	// Exact (--read-cluster): an offline agent is deleted only when it is
	// named after a pod of a known ScaledJob and that pod is gone; its
	// name's shape, Pattern and the offline times decide nothing.
	Exact      bool
	OfflineFor time.Duration // minimum time offline
	// FinishedFor is the minimum time offline of an agent that completed a
	// job (a single-run pod's agent is done after one): such agents go
	// sooner than those whose history is unknown. 0: as OfflineFor.
	FinishedFor  time.Duration
	Pattern      string   // glob of deletable names; "*" is every name
	Protect      []string // globs of names never deleted
	MaxDeletions int      // per pool per sweep
}

// Reasons for a decision, as logged and counted.
const (
	ReasonStale       = "stale"            // deleted: every rule holds
	ReasonFinished    = "finished"         // deleted: a single-run agent, offline FinishedFor after its job
	KeptOnline        = "online"           // the agent is online
	KeptBusy          = "busy"             // it has an assigned request
	KeptPlaceholder   = "placeholder"      // a placeholder that keeps jobs queued while the pool is empty
	KeptRecent        = "recently-offline" // offline for less than OfflineFor
	KeptUnknownAge    = "unknown-age"      // neither status-change nor creation time is known
	KeptPattern       = "outside-pattern"  // its name does not match Pattern
	KeptProtected     = "protected"        // its name matches a Protect glob
	KeptParent        = "parent"           // a trigger names it as parent
	KeptDeletionLimit = "deletion-limit"   // stale, but MaxDeletions reached this sweep
	ReasonPodGone     = "pod-gone"         // deleted (Exact): its ScaledJob's pod is gone, so it can never come back
	KeptNotAPod       = "not-a-pod"        // kept (Exact): named after no pod of a known ScaledJob
	KeptPodAlive      = "pod-alive"        // kept (Exact): its pod still exists
)

// Decision is what happens to one agent.
type Decision struct {
	Agent        Agent
	Delete       bool
	Reason       string
	OfflineSince time.Time
}

// Decide applies the rules to a pool's agents. parents holds the names
// triggers give as parent (compared ignoring case: Azure DevOps agent names
// are case-insensitive, and keeping one agent too many is the safe side).
// Deletions are capped at MaxDeletions, oldest offline first.
func Decide(agents []Agent, now time.Time, r Rules, parents map[string]bool) []Decision {
	out := make([]Decision, 0, len(agents))
	var stale []int
	for _, a := range agents {
		d := Decision{Agent: a}
		d.OfflineSince = a.StatusChangedOn
		if d.OfflineSince.IsZero() || d.OfflineSince.Year() <= 1 {
			d.OfflineSince = a.CreatedOn
		}
		switch {
		case a.Online:
			d.Reason = KeptOnline
		case a.Assigned:
			d.Reason = KeptBusy
		case a.Placeholder:
			d.Reason = KeptPlaceholder
		case parents[strings.ToLower(a.Name)]:
			d.Reason = KeptParent
		case matchesAny(r.Protect, a.Name):
			d.Reason = KeptProtected
		case r.Exact && a.Pod == PodGone:
			d.Delete, d.Reason = true, ReasonPodGone
			stale = append(stale, len(out))
		case r.Exact && a.Pod == PodAlive:
			d.Reason = KeptPodAlive
		case r.Exact:
			d.Reason = KeptNotAPod
		case !matches(r.Pattern, a.Name):
			d.Reason = KeptPattern
		case d.OfflineSince.IsZero() || d.OfflineSince.Year() <= 1:
			d.Reason = KeptUnknownAge
		case a.Finished && r.FinishedFor > 0 && a.StatusChangedOn.Year() > 1 && now.Sub(a.StatusChangedOn) >= r.FinishedFor:
			// Only with a recorded status change: how long it has been
			// offline must be known, not guessed from its creation.
			d.Delete, d.Reason = true, ReasonFinished
			stale = append(stale, len(out))
		case now.Sub(d.OfflineSince) < r.OfflineFor:
			d.Reason = KeptRecent
		default:
			d.Delete, d.Reason = true, ReasonStale
			stale = append(stale, len(out))
		}
		out = append(out, d)
	}
	if len(stale) > r.MaxDeletions {
		sort.SliceStable(stale, func(i, j int) bool { return out[stale[i]].OfflineSince.Before(out[stale[j]].OfflineSince) })
		for _, i := range stale[r.MaxDeletions:] {
			out[i].Delete, out[i].Reason = false, KeptDeletionLimit
		}
	}
	return out
}

// matches reports whether a glob matches a name; a bad glob matches
// nothing (flags are validated at start-up, so this is the safe default).
func matches(glob, name string) bool {
	ok, err := path.Match(glob, name)
	return err == nil && ok
}

func matchesAny(globs []string, name string) bool {
	for _, g := range globs {
		if matches(g, name) {
			return true
		}
	}
	return false
}
