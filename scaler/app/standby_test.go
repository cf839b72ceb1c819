package app

import (
	"testing"
	"time"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/scaledjobs"
)

// The pods a standby question is decided among: the asking pod's
// ScaledJob's, in its namespace, without gone pods or pods that cannot
// start; a pod the cluster does not know gets no ScaledJob.
func TestStandbyCandidates(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	pod := func(ns, name, sj string, age time.Duration) scaledjobs.Pod {
		return scaledjobs.Pod{Ref: scaledjobs.Ref{Namespace: ns, Name: name}, ScaledJob: sj, Created: t0.Add(-age)}
	}
	stuck := pod("team-a", "warm-stuck", "warm", time.Hour)
	stuck.Problem = "ImagePullBackOff: no such image"
	gone := pod("team-a", "warm-gone", "warm", time.Hour)
	gone.Gone = true
	all := []scaledjobs.Pod{
		pod("team-a", "warm-1", "warm", time.Minute), pod("team-a", "warm-2", "warm", 2*time.Minute),
		stuck, gone, pod("team-a", "cold-1", "cold", time.Hour), pod("team-b", "warm-3", "warm", time.Hour),
	}
	sj, mine := standbyCandidates(all, "team-a", "warm-1")
	names := map[string]bool{}
	for _, p := range mine {
		names[p.Name] = true
	}
	if sj != "warm" || len(mine) != 2 || !names["warm-1"] || !names["warm-2"] {
		t.Errorf("ScaledJob %q, candidates %v; want warm with warm-1 and warm-2", sj, names)
	}
	if sj, _ := standbyCandidates(all, "team-a", "warm-gone"); sj != "" {
		t.Errorf("a gone pod asking: ScaledJob %q", sj)
	}
	if sj, _ := standbyCandidates(all, "team-c", "warm-1"); sj != "" {
		t.Errorf("an unknown pod asking: ScaledJob %q", sj)
	}
}
