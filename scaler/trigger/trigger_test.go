package trigger

import (
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/queue"
)

type orgs map[string]string

func (o orgs) Names() []string {
	var out []string
	for k := range o {
		out = append(out, k)
	}
	return out
}

func (o orgs) URL(name string) (string, bool) {
	u, ok := o[name]
	return u, ok
}

var one = orgs{"contoso": "https://dev.azure.com/contoso"}

func job(t *testing.T, received bool, matched []string, ds ...string) *queue.Job {
	t.Helper()
	j := &queue.Job{Received: received, MatchedAgents: matched}
	for _, s := range ds {
		j.AddDemand(s)
	}
	return j
}

// counts is what KEDA's built-in scaler counts with this trigger: the jobs
// its filter accepts, running ones only with scaleOnInFlight.
func counts(s *Spec, j *queue.Job) bool {
	return (s.ScaleOnInFlight || j.Waiting()) && s.Accepts(j)
}

func TestDefaults(t *testing.T) {
	s, err := Parse(map[string]string{"poolName": "p", "scalerAddress": "x:6000", "enableTLS": "false"}, one)
	if err != nil {
		t.Fatal(err)
	}
	if s.Organization != "contoso" || s.PoolName != "p" || s.Target != 1 || s.Activation != 0 || !s.ScaleOnInFlight ||
		s.Priority != 0 || s.Shared || s.AgentPattern != "" {
		t.Fatalf("defaults = %+v", s)
	}
	// The table's defaults are what an absent key gives.
	for key, want := range map[string]string{KeyTarget: "1", KeyActivation: "0", KeyScaleOnInFlight: "true", KeyPriority: "0",
		KeyRouting: RoutingExclusive, KeyRequireAll: "false", KeyPoolName: ""} {
		if got := Default(key); got != want {
			t.Errorf("Default(%s) = %q, want %q", key, got, want)
		}
	}
	if !counts(s, job(t, true, nil, "anything")) {
		t.Error("no filter and scaleOnInFlight=true must count a running job")
	}
}

func TestCountsByFilter(t *testing.T) {
	linux := job(t, false, []string{"tpl"}, "Agent.OS -equals Linux", "docker")
	bad := job(t, false, nil, "x -weird y")
	cases := []struct {
		md   map[string]string
		j    *queue.Job
		want bool
	}{
		{map[string]string{"capabilities": "Agent.OS=Linux,docker"}, linux, true},
		{map[string]string{"capabilities": "Agent.OS=Linux"}, linux, false},
		{map[string]string{"capabilities": "x=y"}, bad, false}, // an unparsable demand is never counted by capabilities
		{map[string]string{}, bad, true},                       // but the whole pool counts it
		{map[string]string{"parent": "tpl"}, linux, true},
		{map[string]string{"parent": "other"}, linux, false},
		{map[string]string{"demands": "Agent.OS -equals Linux,docker,extra"}, linux, true},
		{map[string]string{"scaleOnInFlight": "false"}, job(t, true, nil), false},
	}
	for _, c := range cases {
		c.md["poolName"] = "p"
		s, err := Parse(c.md, one)
		if err != nil {
			t.Fatalf("%v: %v", c.md, err)
		}
		if got := counts(s, c.j); got != c.want {
			t.Errorf("%v counts %+v = %v, want %v", c.md, c.j, got, c.want)
		}
	}
}

func TestRoutingKeys(t *testing.T) {
	s, err := Parse(map[string]string{"poolName": "p", "priority": "-5", "routing": "shared", "agentNamePattern": "team-a-*",
		"capabilities": "Agent.OS=Linux, docker"}, one)
	if err != nil {
		t.Fatal(err)
	}
	if s.Priority != -5 || !s.Shared || s.AgentPattern != "team-a-*" || s.Rank() != 2 || s.Filter() != "capabilities=Agent.OS=Linux, docker" {
		t.Fatalf("spec = %+v, rank %d, filter %q", s, s.Rank(), s.Filter())
	}
	ranks := map[string]int{}
	for name, md := range map[string]map[string]string{
		"demands": {"demands": "Agent.OS -equals Linux,docker,Agent.Version -gtVersion 3.0"},
		"parent":  {"parent": "tpl"}, "all": {}, "caps": {"capabilities": "a,b,c"},
	} {
		md["poolName"] = "p"
		sp, err := Parse(md, one)
		if err != nil {
			t.Fatal(err)
		}
		ranks[name] = sp.Rank()
	}
	if ranks["demands"] != 2 || ranks["caps"] != 3 || !(ranks["caps"] < ranks["parent"] && ranks["parent"] < ranks["all"]) {
		t.Fatalf("ranks = %v: templates by size, then parent, then no filter", ranks)
	}
	for md, key := range map[*map[string]string]string{
		{"priority": "high"}:        KeyPriority,
		{"priority": "1001"}:        KeyPriority,
		{"routing": "exclusive "}:   "", // accepted
		{"routing": "round-robin"}:  KeyRouting,
		{"agentNamePattern": "["}:   KeyAgentPattern,
		{"agentNamePattern": "   "}: KeyAgentPattern,
	} {
		(*md)["poolName"] = "p"
		_, err := Parse(*md, one)
		var e *Error
		if key == "" && err != nil || key != "" && (!errors.As(err, &e) || e.Key != key) {
			t.Errorf("%v: %v, want an error about %q", *md, err, key)
		}
	}
}

func TestOrganizationChoice(t *testing.T) {
	two := orgs{"a": "https://dev.azure.com/a", "b": "https://dev.azure.com/b"}
	for _, c := range []struct {
		md   map[string]string
		want string
		key  string
	}{
		{map[string]string{"organization": "b"}, "b", ""},
		{map[string]string{"organizationURL": "https://dev.azure.com/A/"}, "a", ""},
		{map[string]string{"organizationURLFromEnv": "https://dev.azure.com/b"}, "b", ""},
		{map[string]string{"organization": "a", "organizationURL": "https://dev.azure.com/b"}, "", "organizationURL"},
		{map[string]string{"organizationURL": "x", "organizationURLFromEnv": "y"}, "", "organizationURLFromEnv"},
		{map[string]string{}, "", "organization"},
	} {
		c.md["poolID"] = "7"
		s, err := Parse(c.md, two)
		var e *Error
		switch {
		case c.key == "" && (err != nil || s.Organization != c.want):
			t.Errorf("%v: %v, %v; want %s", c.md, s, err, c.want)
		case c.key != "" && (!errors.As(err, &e) || e.Key != c.key):
			t.Errorf("%v: error %v, want one about %s", c.md, err, c.key)
		}
	}
}

var metricName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

func TestMetricNameRules(t *testing.T) {
	for _, org := range []string{"contoso", "Contoso Org!", "---", strings.Repeat("x", 200), "ÄÖÜ"} {
		s := &Spec{Organization: org, ScaleOnInFlight: true, filterKey: "all"}
		name := s.MetricName(123456)
		if !metricName.MatchString(name) || len(name) > 63 {
			t.Errorf("MetricName for %q = %q", org, name)
		}
	}
}

// FuzzParse checks that any metadata either parses into a usable spec or
// is rejected with an *Error naming a key that was given (or the missing
// pool key), and that secrets are never echoed.
func FuzzParse(f *testing.F) {
	f.Add("poolName", "linux", "capabilities", "Agent.OS=Linux,docker", "targetPipelinesQueueLength", "2")
	f.Add("poolID", "12", "demands", "docker", "requireAllDemands", "true")
	f.Add("poolName", "p", "parent", "tpl", "scaleOnInFlight", "false")
	f.Add("poolName", "p", "personalAccessTokenFromEnv", "SECRET-VALUE", "organization", "contoso")
	f.Add("poolID", "-1", "poolName", "", "jobsToFetch", "abc")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2, k3, v3 string) {
		md := map[string]string{k1: v1, k2: v2, k3: v3}
		s, err := Parse(md, one)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			if _, given := md[e.Key]; !given && e.Key != KeyPoolName && e.Key != KeyOrganization {
				t.Fatalf("error names key %q that was not given: %v", e.Key, err)
			}
			// The error names the offending key by design; a secret that is
			// also the text of a given key name (the fuzzer's "0000" as both)
			// is found in that name, not leaked: look for it in the rest.
			rest := err.Error()
			for k := range md {
				rest = strings.ReplaceAll(rest, strconv.Quote(k), "")
			}
			for k, v := range md {
				if strings.HasPrefix(strings.ToLower(k), "personalaccesstoken") && len(v) > 3 && strings.Contains(rest, v) {
					t.Fatalf("error echoes a secret: %v", err)
				}
			}
			return
		}
		if (s.PoolName == "") == (s.PoolID == 0) || s.Target < 1 || s.Activation < 0 || s.Organization != "contoso" {
			t.Fatalf("invalid spec accepted: %+v from %v", s, md)
		}
		if name := s.MetricName(1); !metricName.MatchString(name) || len(name) > 63 {
			t.Fatalf("metric name %q", name)
		}
		_ = counts(s, &queue.Job{RawDemands: []string{v1, v2}, MatchedAgents: []string{v3}})
	})
}

func TestStandbyKeys(t *testing.T) {
	s, err := Parse(map[string]string{"poolName": "p", "standby": "auto", "standbyPercentile": "90", "standbyMax": "4",
		"standbySchedule": "Mon-Fri 08:00-18:00=2; Sat 09:00-12:00=1", "standbyTimeZone": "Europe/Berlin"}, one)
	if err != nil {
		t.Fatal(err)
	}
	st := s.Standby
	if !st.Auto || st.Percentile != 90 || st.Max != 4 || len(st.Schedule.Windows) != 2 || st.Schedule.Loc.String() != "Europe/Berlin" {
		t.Fatalf("standby settings %+v", st)
	}
	d, err := Parse(map[string]string{"poolName": "p"}, one)
	if err != nil {
		t.Fatal(err)
	}
	if d.Standby.Enabled() || d.Standby.Percentile != 50 || d.Standby.Max != 10 {
		t.Fatalf("defaults: %+v", d.Standby)
	}
	if f, _ := Parse(map[string]string{"poolName": "p", "standby": "3"}, one); f == nil || f.Standby.Fixed != 3 {
		t.Fatalf("standby 3: %+v", f)
	}
	for md, key := range map[*map[string]string]string{
		{"standby": "some"}:              KeyStandby,
		{"standby": "-1"}:                KeyStandby,
		{"standby": "1001"}:              KeyStandby,
		{"standbyPercentile": "95"}:      KeyStandbyPercentile,
		{"standbyPercentile": "5"}:       KeyStandbyPercentile,
		{"standbyMax": "x"}:              KeyStandbyMax,
		{"standbySchedule": "Mon 8-9=1"}: KeyStandbySchedule,
		{"standbySchedule": "Mon 08:00-09:00=1", "standbyTimeZone": "Nowhere/City"}: KeyStandbyTimeZone,
		{"standbyTimeZone": "UTC"}: KeyStandbyTimeZone, // without a schedule
	} {
		(*md)["poolName"] = "p"
		_, err := Parse(*md, one)
		var e *Error
		if !errors.As(err, &e) || e.Key != key {
			t.Errorf("%v: %v, want an error about %q", *md, err, key)
		}
	}
}
