// Package status renders the status page served at / on the HTTP port:
// per pool, the jobs waiting and running with their demands, which trigger
// counts each job and why, the jobs nobody can run, and the sweeper's last
// decisions. It is plain server-rendered HTML (html/template escapes every
// value Azure DevOps or KEDA sent), reads only what the scaler already
// holds in memory and never calls Azure DevOps.
package status

import (
	_ "embed"
	"html/template"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/pools"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/routing"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/sweeper"
)

// Source is what the page shows.
type Source struct {
	Version, Revision string
	Organizations     []string
	Registry          *pools.Registry
	Router            *routing.Router
	Journal           *sweeper.Journal
	// Sweeper says what this replica's sweeper does ("sweeps every 30s",
	// "another replica holds the Lease"...).
	Sweeper func() string
	// Redact removes secrets from texts that come from errors.
	Redact func(string) string
	Now    func() time.Time
}

// Page is the template's model.
type Page struct {
	Version, Revision string
	Generated         string
	Organizations     []string
	Sweeper           string
	Pools             []PoolView
	Sweeps            []SweepView
}

// PoolView is one pool in use.
type PoolView struct {
	Organization, Name string
	ID                 int
	Age                string // of the snapshot
	Problem            string // why refreshes fail
	Waiting, Running   int
	Triggers           []TriggerView
	Jobs               []JobView
	Unroutable         []JobView
}

// TriggerView is one trigger of a pool.
type TriggerView struct {
	Label, Filter, Routing string
	Priority               int64
	Count                  int
	Stalled                string // why its pods cannot start (--read-cluster); "" when they can
}

// JobView is one unfinished job.
type JobView struct {
	ID        uint64
	State     string
	For       string // waiting or running for
	Demands   string
	CountedBy string
	Why       string
}

// SweepView is one pool's last sweep.
type SweepView struct {
	Organization, Pool string
	At, Error          string
	DryRun             bool
	Acted              []sweeper.JournalEntry // anything but kept
	Kept               []sweeper.JournalEntry
	Truncated          int
}

//go:embed page.html
var pageHTML string

var page = template.Must(template.New("status").Funcs(template.FuncMap{
	"dur": func(d time.Duration) string {
		if d <= 0 {
			return ""
		}
		return d.Round(time.Second).String()
	},
}).Parse(pageHTML))

// Handler serves the page.
func Handler(src Source) http.Handler {
	if src.Now == nil {
		src.Now = time.Now
	}
	if src.Redact == nil {
		src.Redact = func(s string) string { return s }
	}
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		// The page is for people; it must not be framed or run scripts.
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
		if err := page.Execute(w, Build(src)); err != nil {
			http.Error(w, "rendering the status page failed", http.StatusInternalServerError)
		}
	})
}

// Build assembles the page from the scaler's memory.
func Build(src Source) Page {
	now := src.Now()
	p := Page{Version: src.Version, Revision: src.Revision, Generated: now.UTC().Format(time.RFC3339),
		Organizations: src.Organizations, Sweeper: "sweeper state unknown"}
	if src.Sweeper != nil {
		p.Sweeper = src.Sweeper()
	}
	for _, st := range src.Registry.Statuses() {
		p.Pools = append(p.Pools, poolView(src, st, now))
	}
	if src.Journal != nil {
		for _, s := range src.Journal.LastSweeps() {
			v := SweepView{Organization: s.Pool.Org, Pool: s.Pool.Name, At: s.At.UTC().Format(time.RFC3339), DryRun: s.DryRun,
				Error: src.Redact(s.Error), Truncated: s.Truncated}
			for _, e := range s.Entries {
				e.Reason = src.Redact(e.Reason)
				if e.Action == sweeper.ActionKept {
					v.Kept = append(v.Kept, e)
				} else {
					v.Acted = append(v.Acted, e)
				}
			}
			p.Sweeps = append(p.Sweeps, v)
		}
	}
	return p
}

func poolView(src Source, st pools.Status, now time.Time) PoolView {
	v := PoolView{Organization: st.Pool.Org, Name: st.Pool.Name, ID: st.Pool.ID, Problem: src.Redact(st.Problem)}
	if st.Snapshot == nil {
		v.Age = "no data yet"
		return v
	}
	v.Age = st.Snapshot.Age(now).Round(time.Second).String()
	plan := src.Router.Table(st.Pool.Key).Plan(st.Snapshot)
	labels := map[string]string{}
	for _, t := range plan.Triggers {
		labels[t.ID] = t.Label()
		mode := "exclusive"
		if t.Shared {
			mode = "shared"
		}
		filter := t.Filter
		if filter == "" {
			filter = "(every job)"
		}
		v.Triggers = append(v.Triggers, TriggerView{Label: t.Label(), Filter: filter, Routing: mode, Priority: t.Priority, Count: plan.Count(t.ID),
			Stalled: src.Redact(t.Stalled)})
	}
	for _, a := range plan.Assignments {
		j := a.Job
		jv := JobView{ID: j.ID, Demands: strings.Join(j.RawDemands, ", "), Why: plan.Explain(a)}
		if a.Waiting {
			v.Waiting++
			jv.State = "waiting"
			if !j.QueuedAt.IsZero() {
				jv.For = now.Sub(j.QueuedAt).Round(time.Second).String()
			}
		} else {
			v.Running++
			jv.State = "running on " + j.Agent
			if !j.AssignedAt.IsZero() {
				jv.For = now.Sub(j.AssignedAt).Round(time.Second).String()
			}
		}
		var by []string
		if a.CountedByOwner() {
			by = append(by, labels[a.Owner])
		}
		for _, id := range a.Shared {
			by = append(by, labels[id])
		}
		jv.CountedBy = strings.Join(by, ", ")
		if jv.CountedBy == "" {
			jv.CountedBy = "nobody"
		}
		if a.Reason == routing.Unroutable {
			v.Unroutable = append(v.Unroutable, jv)
		}
		v.Jobs = append(v.Jobs, jv)
	}
	// Waiting first, oldest first: the jobs people wait on.
	sort.SliceStable(v.Jobs, func(a, b int) bool {
		wa, wb := v.Jobs[a].State == "waiting", v.Jobs[b].State == "waiting"
		if wa != wb {
			return wa
		}
		return v.Jobs[a].ID < v.Jobs[b].ID
	})
	return v
}
