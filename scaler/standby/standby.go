// Package standby decides how many idle agents a trigger keeps ready before
// its jobs arrive, and which idle pods stay: pure functions of a trigger's
// settings, its demand history and the time. It knows neither Kubernetes
// nor Azure DevOps; the service adds Want to the count KEDA gets, and the
// standby endpoint answers a pod with Keep.
package standby

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Settings are a trigger's standby settings (metadata standby,
// standbySchedule, standbyTimeZone, standbyPercentile, standbyMax).
type Settings struct {
	// Fixed idle agents kept outside the schedule's windows (when !Auto).
	Fixed int
	// Auto: outside the windows, keep the Percentile of the demand of the
	// same five minutes (and the next five) of the past weeks, at most Max.
	Auto       bool
	Percentile int
	Max        int
	// Schedule: while one of its windows is open, its count applies.
	Schedule Schedule
}

// Enabled reports whether the trigger may ever keep a standby agent.
func (s Settings) Enabled() bool {
	return s.Fixed > 0 || s.Auto || len(s.Schedule.Windows) > 0
}

// Want is the number of idle agents the trigger keeps ready at now, and
// why, in words: the schedule's open window first, else auto's forecast,
// else the fixed number.
func Want(s Settings, h *History, now time.Time) (int, string) {
	if n, w, open := s.Schedule.At(now); open {
		return n, fmt.Sprintf("schedule window %s is open", w)
	}
	if s.Auto {
		n, samples := Forecast(h, now, s.Percentile, s.Max)
		if samples == 0 {
			return 0, "auto: no history of this time of the week yet"
		}
		return n, fmt.Sprintf("auto: p%d of this time of the week over %d past week(s), at most %d", s.Percentile, samples, s.Max)
	}
	if s.Fixed > 0 {
		return s.Fixed, "standby"
	}
	return 0, ""
}

// Pod is a pod of the trigger's ScaledJob, as the cluster shows it.
type Pod struct {
	Name    string
	Created time.Time
	// Busy: its agent has a job (assigned or running).
	Busy bool
}

// Keep returns the idle pods that stay as standby when wanted are kept:
// the oldest idle pods (by creation, then name), whose agents are surely
// registered. Every other idle pod leaves when its idle timeout ends:
// it was started for a job another agent took. Every replica that sees
// the same pods decides the same.
func Keep(pods []Pod, wanted int) map[string]bool {
	idle := make([]Pod, 0, len(pods))
	for _, p := range pods {
		if !p.Busy {
			idle = append(idle, p)
		}
	}
	slices.SortFunc(idle, func(a, b Pod) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	keep := map[string]bool{}
	for _, p := range idle[:min(max(wanted, 0), len(idle))] {
		keep[p.Name] = true
	}
	return keep
}
