// Package placeholders keeps, for every pool and agent template its
// triggers use, one offline agent registered whose capabilities are the
// template's. Azure Pipelines fails a job at once ("No agent found in pool
// ... which satisfies the specified demands") when no agent of the pool,
// online or offline, satisfies its demands; with single-run pods a pool is
// often empty, and the placeholder makes such a job queue instead, so that
// KEDA can start a pod for it.
//
// A placeholder can never go online: it is registered with a public key
// whose private half is thrown away. The keeper registers the placeholders
// the triggers need and removes those no trigger has needed for a grace
// period; the decision is a pure function (Plan). The sweeper recognizes
// placeholders (Recognize) and never deletes one.
package placeholders

import (
	"crypto/sha256"
	"encoding/hex"
	"sort"
	"strings"
	"time"
)

// Marker is the system capability every placeholder reports; its value is
// the template's key.
const Marker = "AZDO_KEDA_SCALER_PLACEHOLDER"

// Key identifies a template: a digest of its capabilities, names compared
// ignoring case (as Azure Pipelines compares them), values as written.
func Key(caps map[string]string) string {
	items := make([]string, 0, len(caps))
	for k, v := range caps {
		items = append(items, strings.ToLower(k)+"="+v)
	}
	sort.Strings(items)
	sum := sha256.Sum256([]byte(strings.Join(items, "\n")))
	return hex.EncodeToString(sum[:5])
}

// Name is the agent name of a template's placeholder.
func Name(prefix, key string) string { return prefix + "-placeholder-" + key }

// Recognize returns the sweeper's test: an agent is a placeholder when its
// name is a placeholder's (of this prefix) or it reports the marker
// capability. Either is enough to protect it.
func Recognize(prefix string) func(name string, caps map[string]string) bool {
	namePrefix := strings.ToLower(prefix + "-placeholder-")
	return func(name string, caps map[string]string) bool {
		if strings.HasPrefix(strings.ToLower(name), namePrefix) {
			return true
		}
		for k := range caps {
			if strings.EqualFold(k, Marker) {
				return true
			}
		}
		return false
	}
}

// Existing is a placeholder of this keeper registered in a pool: its name
// is Name(prefix, Key) and it reports Marker=Key (both, so that the keeper
// never removes an agent it did not register).
type Existing struct {
	ID     int
	Name   string
	Key    string
	Online bool // never, unless someone registered a real agent under its name
	Busy   bool
}

// Reasons of the keeper's actions, as logged and counted.
const (
	ReasonMissing  = "missing"  // a trigger's template has no placeholder
	ReasonUnneeded = "unneeded" // no trigger has used the template for the grace period
)

// Action is one registration or removal.
type Action struct {
	Register bool // else remove
	Key      string
	AgentID  int               // the placeholder to remove
	Caps     map[string]string // the template to register
	Reason   string
}

// Plan decides, for one pool, what the keeper does.
//
//   - Every template the pool's triggers use (wanted, by key) gets a
//     placeholder when it has none.
//   - A placeholder whose template no trigger uses is removed once it has
//     been unneeded for grace (unneededSince tells since when, as this
//     process saw it) and this process has known the pool's triggers for
//     grace too: a process that just started, or that KEDA does not talk
//     to, does not know every trigger, and removes nothing.
//   - An online or busy agent is never removed.
func Plan(wanted map[string]map[string]string, existing []Existing, unneededSince map[string]time.Time, now time.Time, grace, knownFor time.Duration) []Action {
	var out []Action
	have := map[string]bool{}
	for _, e := range existing {
		have[e.Key] = true
		if _, ok := wanted[e.Key]; ok || e.Online || e.Busy {
			continue
		}
		since, seen := unneededSince[e.Key]
		if seen && now.Sub(since) >= grace && knownFor >= grace {
			out = append(out, Action{Key: e.Key, AgentID: e.ID, Reason: ReasonUnneeded})
		}
	}
	keys := make([]string, 0, len(wanted))
	for k := range wanted {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !have[k] {
			out = append(out, Action{Register: true, Key: k, Caps: wanted[k], Reason: ReasonMissing})
		}
	}
	return out
}
