package placeholders

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func TestPlan(t *testing.T) {
	linux := map[string]string{"Agent.OS": "Linux"}
	gpu := map[string]string{"Agent.OS": "Linux", "cuda": "12.4"}
	kl, kg := Key(linux), Key(gpu)
	grace := time.Hour
	cases := []struct {
		name     string
		wanted   map[string]map[string]string
		existing []Existing
		since    map[string]time.Time
		knownFor time.Duration
		want     []Action
	}{
		{"a missing template is registered", map[string]map[string]string{kl: linux}, nil, nil, 0,
			[]Action{{Register: true, Key: kl, Caps: linux, Reason: ReasonMissing}}},
		{"a present one is kept", map[string]map[string]string{kl: linux}, []Existing{{ID: 1, Key: kl}}, nil, 2 * grace, nil},
		{"unneeded for less than the grace", nil, []Existing{{ID: 2, Key: kg}}, map[string]time.Time{kg: t0.Add(-grace + time.Minute)}, 2 * grace, nil},
		{"unneeded for the grace, but the process knows the triggers for less", nil, []Existing{{ID: 2, Key: kg}},
			map[string]time.Time{kg: t0.Add(-2 * grace)}, grace - time.Second, nil},
		{"unneeded for the grace, known for the grace", nil, []Existing{{ID: 2, Key: kg}},
			map[string]time.Time{kg: t0.Add(-grace)}, grace, []Action{{Key: kg, AgentID: 2, Reason: ReasonUnneeded}}},
		{"unneeded, never seen so before", nil, []Existing{{ID: 2, Key: kg}}, nil, 2 * grace, nil},
		{"an online agent under a placeholder's name is never removed", nil, []Existing{{ID: 3, Key: kg, Online: true}},
			map[string]time.Time{kg: t0.Add(-2 * grace)}, 2 * grace, nil},
		{"nor a busy one", nil, []Existing{{ID: 3, Key: kg, Busy: true}}, map[string]time.Time{kg: t0.Add(-2 * grace)}, 2 * grace, nil},
	}
	for _, c := range cases {
		got := Plan(c.wanted, c.existing, c.since, t0, grace, c.knownFor)
		if len(got) != len(c.want) {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
			continue
		}
		for i := range got {
			if got[i].Register != c.want[i].Register || got[i].Key != c.want[i].Key || got[i].AgentID != c.want[i].AgentID || got[i].Reason != c.want[i].Reason {
				t.Errorf("%s: %+v, want %+v", c.name, got[i], c.want[i])
			}
		}
	}
}

func TestKeyAndRecognize(t *testing.T) {
	if Key(map[string]string{"Agent.OS": "Linux", "docker": ""}) != Key(map[string]string{"docker": "", "agent.os": "Linux"}) {
		t.Error("the same template with names in another case or order must have one key")
	}
	if Key(map[string]string{"cuda": "12.4"}) == Key(map[string]string{"cuda": "11.8"}) {
		t.Error("templates with different values must differ")
	}
	is := Recognize("keda")
	for name, caps := range map[string]map[string]string{
		"keda-placeholder-0123456789": nil,
		"KEDA-Placeholder-abc":        nil,
		"renamed-by-someone":          {Marker: "0123456789"},
		"also":                        {"azdo_keda_scaler_placeholder": "x"},
	} {
		if !is(name, caps) {
			t.Errorf("%s %v is a placeholder", name, caps)
		}
	}
	if is("linux-x7k2p-b4c6d", map[string]string{"Agent.OS": "Linux"}) {
		t.Error("an ordinary agent is no placeholder")
	}
}
