// Package demands evaluates Azure Pipelines job demands against agent
// capabilities the way Azure Pipelines itself does, and also implements the
// string comparison of KEDA's built-in azure-pipelines scaler for drop-in
// compatibility.
//
// Azure Pipelines' rules (Microsoft.TeamFoundation.DistributedTask.WebApi):
//   - a demand is "NAME" (the capability exists), "NAME -equals VALUE" or
//     "NAME -gtVersion VERSION" (the capability is a version >= VERSION);
//   - capability names are looked up ignoring case, and -equals compares
//     values ignoring case;
//   - -gtVersion parses both sides as .NET versions (2 to 4 numeric parts,
//     anything after the first '-' ignored): a demand version that does not
//     parse is satisfied by any value, a capability value that does not
//     parse satisfies no parseable demand version.
package demands

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

// Op is the operator of a demand.
type Op int

const (
	// Exists is satisfied when the capability exists, whatever its value.
	Exists Op = iota
	// Equals is satisfied when the capability's value equals the demand's, ignoring case.
	Equals
	// MinVersion is satisfied when the capability's value is a version >= the demand's.
	MinVersion
)

// AgentVersion is the system capability every agent reports; pipelines add
// "Agent.Version -gtVersion X" demands on their own.
const AgentVersion = "Agent.Version"

// Demand is one parsed job demand.
type Demand struct {
	Name  string
	Value string
	Op    Op
}

// The same grammar as Azure Pipelines' Demand.TryParse: a name without
// white space, optionally followed by " -op value".
var demandPattern = regexp.MustCompile(`^(\S+)(\s+-(\S+)\s+(.*))?$`)

// Parse parses one demand string as Azure Pipelines writes it in a job request.
func Parse(s string) (Demand, error) {
	m := demandPattern.FindStringSubmatch(s)
	if m == nil {
		return Demand{}, fmt.Errorf("demand %q is not NAME or NAME -equals VALUE", s)
	}
	if !validName(m[1]) {
		return Demand{}, fmt.Errorf("demand %q has a name with white space or control characters", s)
	}
	d := Demand{Name: m[1], Value: m[4]}
	switch op := m[3]; {
	case op == "":
		d.Op = Exists
	case strings.EqualFold(op, "equals"):
		d.Op = Equals
	case strings.EqualFold(op, "gtVersion"):
		d.Op = MinVersion
	default:
		return Demand{}, fmt.Errorf("demand %q has unknown operator -%s", s, op)
	}
	if d.Op != Exists && d.Value == "" {
		return Demand{}, fmt.Errorf("demand %q has an operator but no value", s)
	}
	return d, nil
}

// String renders the demand as Azure Pipelines does.
func (d Demand) String() string {
	switch d.Op {
	case Equals:
		return d.Name + " -equals " + d.Value
	case MinVersion:
		return d.Name + " -gtVersion " + d.Value
	default:
		return d.Name
	}
}

// IsAgentVersion reports whether the demand is on the Agent.Version capability.
func (d Demand) IsAgentVersion() bool { return strings.EqualFold(d.Name, AgentVersion) }

// Capabilities is an agent template's capability set. Names are case-insensitive.
type Capabilities struct {
	values map[string]string // key: lower-cased name
}

// ParseCapabilities parses a comma-separated list of NAME=VALUE pairs; a bare
// NAME is a capability with an empty value. Spaces around names are ignored,
// values are kept as written (trailing and leading spaces trimmed).
func ParseCapabilities(s string) (Capabilities, error) {
	c := Capabilities{values: map[string]string{}}
	if strings.TrimSpace(s) == "" {
		return c, errors.New("the list is empty")
	}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return c, fmt.Errorf("empty entry in %q", s)
		}
		name, value, _ := strings.Cut(item, "=")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if !validName(name) {
			return c, fmt.Errorf("capability name %q must be non-empty and contain no spaces", name)
		}
		key := strings.ToLower(name)
		if _, dup := c.values[key]; dup {
			return c, fmt.Errorf("capability %q is listed twice", name)
		}
		c.values[key] = value
	}
	return c, nil
}

// validName rejects what Azure Pipelines cannot have in a capability name.
func validName(name string) bool {
	return name != "" && strings.IndexFunc(name, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) < 0
}

// Len is the number of capabilities.
func (c Capabilities) Len() int { return len(c.values) }

// Has reports whether the named capability is present.
func (c Capabilities) Has(name string) bool {
	_, ok := c.values[strings.ToLower(name)]
	return ok
}

// Satisfies reports whether the capabilities satisfy one demand.
func (c Capabilities) Satisfies(d Demand) bool {
	v, ok := c.values[strings.ToLower(d.Name)]
	if !ok {
		return false
	}
	switch d.Op {
	case Equals:
		return strings.EqualFold(v, d.Value)
	case MinVersion:
		return compareVersions(d.Value, v) <= 0
	default:
		return true
	}
}

// SatisfiesAll reports whether every demand is satisfied.
//
// Agent.Version demands are satisfied unless the capabilities name
// Agent.Version themselves: pipelines add them automatically to ask for a
// recent agent, and the reference agent image always runs a current one.
// A template pinned to an old agent lists Agent.Version=X and gets them
// evaluated as Azure Pipelines would.
func (c Capabilities) SatisfiesAll(ds []Demand) bool {
	pinnedVersion := c.Has(AgentVersion)
	for _, d := range ds {
		if d.IsAgentVersion() && !pinnedVersion {
			continue
		}
		if !c.Satisfies(d) {
			return false
		}
	}
	return true
}

// version is a .NET System.Version: missing parts are -1, and a missing
// part sorts before any present one (1.2 < 1.2.0).
type version [4]int

func parseVersion(s string) (version, bool) {
	if i := strings.IndexByte(s, '-'); i > 0 {
		s = s[:i]
	}
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) < 2 || len(parts) > 4 {
		return version{}, false
	}
	v := version{-1, -1, -1, -1}
	for i, p := range parts {
		n, err := strconv.ParseInt(p, 10, 32)
		if err != nil || n < 0 || strings.HasPrefix(p, "+") {
			return version{}, false
		}
		v[i] = int(n)
	}
	return v, true
}

// compareVersions follows DemandMinimumVersion.CompareVersion.
func compareVersions(a, b string) int {
	va, okA := parseVersion(a)
	vb, okB := parseVersion(b)
	switch {
	case !okA && !okB:
		return 0
	case !okA:
		return -1
	case !okB:
		return 1
	}
	for i := range va {
		if va[i] != vb[i] {
			if va[i] < vb[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}

// FromMap builds capabilities from maps of name to value, such as an agent's
// system and user capabilities (a later map wins on a name in both).
func FromMap(maps ...map[string]string) Capabilities {
	c := Capabilities{values: map[string]string{}}
	for _, m := range maps {
		for k, v := range m {
			c.values[strings.ToLower(k)] = v
		}
	}
	return c
}
