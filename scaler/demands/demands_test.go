package demands

import (
	"strings"
	"testing"
)

func mustCaps(t *testing.T, s string) Capabilities {
	t.Helper()
	c, err := ParseCapabilities(s)
	if err != nil {
		t.Fatalf("ParseCapabilities(%q): %v", s, err)
	}
	return c
}

func TestParse(t *testing.T) {
	cases := []struct {
		in   string
		want Demand
	}{
		{"docker", Demand{Name: "docker", Op: Exists}},
		{"Agent.OS -equals Linux", Demand{Name: "Agent.OS", Value: "Linux", Op: Equals}},
		{"Agent.OS   -equals   Windows_NT", Demand{Name: "Agent.OS", Value: "Windows_NT", Op: Equals}},
		{"java -equals C:\\Program Files\\Java", Demand{Name: "java", Value: "C:\\Program Files\\Java", Op: Equals}},
		{"Agent.Version -gtVersion 2.163.1", Demand{Name: "Agent.Version", Value: "2.163.1", Op: MinVersion}},
		{"Agent.Version -GTVERSION 3.0", Demand{Name: "Agent.Version", Value: "3.0", Op: MinVersion}},
	}
	for _, c := range cases {
		got, err := Parse(c.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.in, err)
			continue
		}
		if got != c.want {
			t.Errorf("Parse(%q) = %+v, want %+v", c.in, got, c.want)
		}
	}
	for _, bad := range []string{"", " docker", "a -equals", "a -matches b", "a b"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) succeeded, want an error", bad)
		}
	}
}

func TestParseCapabilities(t *testing.T) {
	c := mustCaps(t, " Agent.OS=Linux, docker ,java=/usr/bin/java,empty=")
	for _, name := range []string{"agent.os", "AGENT.OS", "docker", "Java", "empty"} {
		if !c.Has(name) {
			t.Errorf("Has(%q) = false", name)
		}
	}
	if c.Has("gpu") {
		t.Error("Has(gpu) = true")
	}
	for _, bad := range []string{"", "a,,b", "=x", "a b=c", "a=1,A=2"} {
		if _, err := ParseCapabilities(bad); err == nil {
			t.Errorf("ParseCapabilities(%q) succeeded, want an error", bad)
		}
	}
}

func TestSatisfies(t *testing.T) {
	caps := mustCaps(t, "Agent.OS=Linux,docker,java=/usr/bin/java,node=18.19.0,weird=abc")
	cases := []struct {
		demand string
		want   bool
	}{
		{"docker", true},
		{"DOCKER", true}, // names ignore case
		{"gpu", false},
		{"Agent.OS -equals Linux", true},
		{"agent.os -equals LINUX", true}, // values ignore case
		{"Agent.OS -equals Windows_NT", false},
		{"docker -equals 1", false}, // an empty value equals nothing but ""
		{"java -equals /usr/bin/java", true},
		{"node -gtVersion 16.0", true},
		{"node -gtVersion 18.19.0", true},
		{"node -gtVersion 18.19.1", false},
		{"node -gtVersion 18.19", true}, // 18.19 < 18.19.0 in .NET
		{"node -gtVersion 18.19.0.0", false},
		{"node -gtVersion 18.20-beta", false},   // suffix after '-' ignored
		{"node -gtVersion not-a-version", true}, // unparsable demand: satisfied
		{"weird -gtVersion 1.0", false},         // unparsable capability: not satisfied
		{"missing -gtVersion 1.0", false},
	}
	for _, c := range cases {
		d, err := Parse(c.demand)
		if err != nil {
			t.Fatalf("Parse(%q): %v", c.demand, err)
		}
		if got := caps.Satisfies(d); got != c.want {
			t.Errorf("Satisfies(%q) = %v, want %v", c.demand, got, c.want)
		}
	}
}

func parseAll(t *testing.T, list ...string) []Demand {
	t.Helper()
	var out []Demand
	for _, s := range list {
		d, err := Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

func TestSatisfiesAllAgentVersion(t *testing.T) {
	job := parseAll(t, "Agent.OS -equals Linux", "Agent.Version -gtVersion 3.220.0")
	if !mustCaps(t, "Agent.OS=Linux").SatisfiesAll(job) {
		t.Error("Agent.Version demand must be ignored when the template does not pin a version")
	}
	if mustCaps(t, "Agent.OS=Linux,Agent.Version=2.210.0").SatisfiesAll(job) {
		t.Error("a pinned old Agent.Version must not satisfy a newer demand")
	}
	if !mustCaps(t, "Agent.OS=Linux,Agent.Version=4.250.1").SatisfiesAll(job) {
		t.Error("a pinned new Agent.Version must satisfy the demand")
	}
	if mustCaps(t, "Agent.OS=Windows_NT").SatisfiesAll(job) {
		t.Error("a Windows template must not satisfy a Linux job")
	}
	if !mustCaps(t, "x").SatisfiesAll(nil) {
		t.Error("a job without demands is satisfied by any template")
	}
}

func TestKEDAMatcher(t *testing.T) {
	job := []string{"maven", "docker", "Agent.Version -gtVersion 2.0"}
	cases := []struct {
		name                      string
		demands                   string
		requireAll, ignoreOthers  bool
		caseInsensitive, expected bool
	}{
		{name: "superset of job demands", demands: "maven,docker,java", expected: true},
		{name: "exact set", demands: "maven,docker", expected: true},
		{name: "missing one", demands: "maven", expected: false},
		{name: "case differs", demands: "Maven,Docker", expected: false},
		{name: "case differs, insensitive", demands: "Maven,Docker", caseInsensitive: true, expected: true},
		{name: "requireAll, superset", demands: "maven,docker,java", requireAll: true, expected: false},
		{name: "requireAll, exact", demands: "docker,maven", requireAll: true, expected: true},
		{name: "ignoreOthers, subset of job", demands: "maven", ignoreOthers: true, expected: true},
		{name: "ignoreOthers, not in job", demands: "maven,java", ignoreOthers: true, expected: false},
		{name: "agent version in trigger ignored", demands: "maven,docker,Agent.Version -gtVersion 9.9", requireAll: true, expected: true},
	}
	for _, c := range cases {
		m := NewKEDAMatcher(c.demands, c.requireAll, c.ignoreOthers, c.caseInsensitive)
		if got := m.Matches(job); got != c.expected {
			t.Errorf("%s: Matches = %v, want %v", c.name, got, c.expected)
		}
	}
	// A job with no demands matches any demands list (KEDA counts it).
	if !NewKEDAMatcher("maven", false, false, false).Matches(nil) {
		t.Error("job without demands must match")
	}
	// Literal string comparison: an equals demand is not understood.
	if NewKEDAMatcher("Agent.OS=Linux", false, false, false).Matches([]string{"Agent.OS -equals Linux"}) {
		t.Error("KEDA compares strings, not capabilities")
	}
}

// FuzzDemandEvaluation checks invariants that must hold for any input:
// parsing never panics, a parsed demand renders back to an equivalent
// demand, and a capability set built from a demand satisfies it.
func FuzzDemandEvaluation(f *testing.F) {
	for _, s := range []string{"docker", "Agent.OS -equals Linux", "Agent.Version -gtVersion 2.1.0", "a -gtVersion x-1", "x -equals  y z"} {
		f.Add(s, "Agent.OS=Linux,docker")
	}
	f.Fuzz(func(t *testing.T, demand, capabilities string) {
		d, err := Parse(demand)
		if caps, cerr := ParseCapabilities(capabilities); cerr == nil && err == nil {
			_ = caps.Satisfies(d) // must not panic
			_ = caps.SatisfiesAll([]Demand{d})
		}
		if err != nil {
			return
		}
		again, err := Parse(d.String())
		if err != nil || again.Name != d.Name || again.Op != d.Op || strings.TrimSpace(again.Value) != strings.TrimSpace(d.Value) {
			t.Fatalf("round trip of %q: %+v -> %q -> %+v (%v)", demand, d, d.String(), again, err)
		}
		if strings.ContainsAny(d.Name, ",=") || strings.ContainsAny(d.Value, ",") || d.Value != strings.TrimSpace(d.Value) {
			return // not expressible as a capabilities list
		}
		own, err := ParseCapabilities(d.Name + "=" + d.Value)
		if err != nil {
			return
		}
		if d.Op != MinVersion && !own.Satisfies(d) {
			t.Fatalf("capabilities %q do not satisfy their own demand %q", d.Name+"="+d.Value, demand)
		}
	})
}
