// Package status renders the status page served at / on the HTTP port:
// per pool, the jobs waiting and running with their demands, which trigger
// counts each job and why, the jobs nobody can run, and the sweeper's last
// decisions. It is plain server-rendered HTML (html/template escapes every
// value Azure DevOps or KEDA sent), reads only what the scaler already
// holds in memory and never calls Azure DevOps.
package status

import (
	_ "embed"
	"encoding/json"
	"html/template"
	"net/http"
	"net/url"
	"sort"
	"strconv"
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
	// Standby returns a trigger's warm standby (nil: no standby anywhere).
	Standby func(trigger string) (StandbyView, bool)
	// Redact removes secrets from texts that come from errors.
	Redact func(string) string
	Now    func() time.Time
}

func (src Source) withDefaults() Source {
	if src.Now == nil {
		src.Now = time.Now
	}
	if src.Redact == nil {
		src.Redact = func(s string) string { return s }
	}
	return src
}

// Page is the template's model, and the JSON of /api/v1/jobs.
type Page struct {
	Version       string      `json:"version"`
	Revision      string      `json:"revision"`
	Generated     string      `json:"generated"`
	Organizations []string    `json:"organizations"`
	Filter        Filter      `json:"filter"`
	Sweeper       string      `json:"-"`
	Pools         []PoolView  `json:"pools"`
	Sweeps        []SweepView `json:"-"`
}

// Filter narrows the page to what one team needs (query parameters of the
// same names); empty fields match everything.
type Filter struct {
	// Namespace: only pools one of whose triggers (ScaledJobs) is in it.
	Namespace string `json:"namespace,omitempty"`
	// Organization and Pool (a name or an id): only that pool.
	Organization string `json:"organization,omitempty"`
	Pool         string `json:"pool,omitempty"`
	// Run: only jobs whose pipeline, run or job name contains it (any
	// case), or whose request id it is.
	Run string `json:"run,omitempty"`
}

// FilterOf reads a filter from a request's query.
func FilterOf(r *http.Request) Filter {
	q := r.URL.Query()
	return Filter{Namespace: q.Get("namespace"), Organization: q.Get("organization"), Pool: q.Get("pool"), Run: q.Get("run")}
}

// Query is the filter as the query FilterOf reads (what explain sends).
func (f Filter) Query() url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"namespace": f.Namespace, "organization": f.Organization, "pool": f.Pool, "run": f.Run} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q
}

func (f Filter) pool(v PoolView) bool {
	if f.Organization != "" && !strings.EqualFold(f.Organization, v.Organization) {
		return false
	}
	if f.Pool != "" && !strings.EqualFold(f.Pool, v.Name) && f.Pool != strconv.Itoa(v.ID) {
		return false
	}
	if f.Namespace == "" {
		return true
	}
	for _, t := range v.Triggers {
		if t.Namespace == f.Namespace {
			return true
		}
	}
	return false
}

func (f Filter) job(j JobView) bool {
	if f.Run == "" {
		return true
	}
	run := strings.ToLower(f.Run)
	for _, s := range []string{j.Pipeline, j.Run, j.Job} {
		if strings.Contains(strings.ToLower(s), run) {
			return true
		}
	}
	return f.Run == strconv.FormatUint(j.ID, 10)
}

// PoolView is one pool in use.
type PoolView struct {
	Organization string        `json:"organization"`
	Name         string        `json:"pool"`
	ID           int           `json:"poolId"`
	Age          string        `json:"dataAge"`           // of the snapshot
	Problem      string        `json:"problem,omitempty"` // why refreshes fail
	Waiting      int           `json:"waiting"`
	Running      int           `json:"running"`
	Triggers     []TriggerView `json:"triggers"`
	Jobs         []JobView     `json:"jobs"`
	Unroutable   []JobView     `json:"-"`
}

// TriggerView is one trigger of a pool.
type TriggerView struct {
	Label     string `json:"scaledJob"`
	Namespace string `json:"namespace"`
	Filter    string `json:"filter"`
	Routing   string `json:"routing"`
	Priority  int64  `json:"priority"`
	Count     int    `json:"count"`
	Stalled   string `json:"stalled,omitempty"` // why its pods cannot start (--read-cluster); "" when they can
	// Standby is its warm standby; nil when it keeps none.
	Standby *StandbyView `json:"standby,omitempty"`
}

// StandbyView is a trigger's warm standby: the idle agents it keeps now
// and why, its idle pods when one last asked whether it stays, and the
// jobs that found one of its agents ready.
type StandbyView struct {
	Wanted int    `json:"wanted"`
	Why    string `json:"why,omitempty"`
	Ready  int    `json:"ready"`
	Used   int    `json:"used"`
}

// JobView is one unfinished job.
type JobView struct {
	ID       uint64 `json:"requestId"`
	Pipeline string `json:"pipeline,omitempty"`
	Run      string `json:"run,omitempty"`
	Job      string `json:"job,omitempty"`
	URL      string `json:"url,omitempty"`
	State    string `json:"state"`
	For      string `json:"for,omitempty"` // waiting or running for
	Demands  string `json:"demands"`
	// CountedBy names the ScaledJobs that count the job ("nobody").
	CountedBy string `json:"countedBy"`
	// Reason is the routing's reason code (routing's constants); Why says
	// it in words.
	Reason string `json:"reason"`
	Why    string `json:"why"`
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
	src = src.withDefaults()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		// The page is for people; it must not be framed or run scripts.
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
		if err := page.Execute(w, Build(src, FilterOf(r))); err != nil {
			http.Error(w, "rendering the status page failed", http.StatusInternalServerError)
		}
	})
}

// JSONHandler serves the same, as JSON (/api/v1/jobs): what
// `azdo-keda-scaler explain` prints.
func JSONHandler(src Source) http.Handler {
	src = src.withDefaults()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(Build(src, FilterOf(r)))
	})
}

// Build assembles the page from the scaler's memory, filtered.
func Build(src Source, f Filter) Page {
	now := src.Now()
	p := Page{Version: src.Version, Revision: src.Revision, Generated: now.UTC().Format(time.RFC3339),
		Organizations: src.Organizations, Sweeper: "sweeper state unknown", Filter: f, Pools: []PoolView{}}
	if src.Sweeper != nil {
		p.Sweeper = src.Sweeper()
	}
	for _, st := range src.Registry.Statuses() {
		v := poolView(src, st, now)
		if !f.pool(v) {
			continue
		}
		jobs := v.Jobs[:0:0]
		for _, j := range v.Jobs {
			if f.job(j) {
				jobs = append(jobs, j)
			}
		}
		v.Jobs = jobs
		p.Pools = append(p.Pools, v)
	}
	shown := map[string]bool{}
	for _, v := range p.Pools {
		shown[v.Organization+"/"+v.Name] = true
	}
	filtered := f != Filter{}
	if src.Journal != nil {
		for _, s := range src.Journal.LastSweeps() {
			if filtered && !shown[s.Pool.Org+"/"+s.Pool.Name] {
				continue // a team's view: the sweeps of its pools only
			}
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
		tv := TriggerView{Label: t.Label(), Namespace: t.Namespace, Filter: filter, Routing: mode, Priority: t.Priority,
			Count: plan.Count(t.ID), Stalled: src.Redact(t.Stalled)}
		if src.Standby != nil {
			if sv, ok := src.Standby(t.ID); ok {
				tv.Standby = &sv
			}
		}
		v.Triggers = append(v.Triggers, tv)
	}
	for _, a := range plan.Assignments {
		j := a.Job
		jv := JobView{ID: j.ID, Pipeline: j.Pipeline, Run: j.Run, Job: j.JobName, URL: j.RunURL, Demands: strings.Join(j.RawDemands, ", "),
			Reason: a.Reason, Why: plan.Explain(a)}
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
