// Package trigger parses the metadata of a ScaledJob trigger (`type:
// external`, `triggers[].metadata`) as KEDA sends it in ScaledObjectRef, and
// decides which of a pool's job requests the trigger counts.
package trigger

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/demands"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/queue"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/secrets"
)

// Metadata keys.
const (
	KeyPoolName        = "poolName"
	KeyPoolID          = "poolID"
	KeyOrganization    = "organization"
	KeyOrganizationURL = "organizationURL"
	KeyTarget          = "targetPipelinesQueueLength"
	KeyActivation      = "activationTargetPipelinesQueueLength"
	KeyScaleOnInFlight = "scaleOnInFlight"
	KeyCapabilities    = "capabilities"
	KeyDemands         = "demands"
	KeyRequireAll      = "requireAllDemands"
	KeyRequireAllOnly  = "requireAllDemandsAndIgnoreOthers"
	KeyCaseInsensitive = "caseInsensitiveDemandsProcessing"
	KeyParent          = "parent"
	KeyJobsToFetch     = "jobsToFetch"
	KeyUnfinishedOnly  = "fetchUnfinishedJobsOnly"
	KeyPriority        = "priority"
	KeyRouting         = "routing"
	KeyAgentPattern    = "agentNamePattern"
)

// Routing modes (metadata key routing).
const (
	RoutingExclusive = "exclusive" // each job counts for one trigger of the pool
	RoutingShared    = "shared"    // count every accepted job, like KEDA's built-in
)

// keys are this scaler's metadata keys, in the README's order.
var keys = []string{KeyPoolName, KeyPoolID, KeyOrganization, KeyOrganizationURL, KeyOrganizationURL + "FromEnv",
	KeyTarget, KeyActivation, KeyScaleOnInFlight, KeyCapabilities, KeyDemands, KeyRequireAll, KeyRequireAllOnly,
	KeyCaseInsensitive, KeyParent, KeyPriority, KeyRouting, KeyAgentPattern, KeyJobsToFetch, KeyUnfinishedOnly}

// Keys lists the metadata keys the scaler reads (KEDA's own keys aside).
func Keys() []string { return append([]string(nil), keys...) }

// keysOfKEDA are set by KEDA itself for every external trigger.
var keysOfKEDA = map[string]bool{"scalerAddress": true, "enableTLS": true, "unsafeSsl": true}

// Bounds on metadata: over one, the trigger is InvalidArgument naming the
// key and the limit, before anything is sent to Azure DevOps. Azure DevOps
// publishes no length limit for pool or agent names; 256 characters is far
// above any in use.
const (
	MaxKeys      = 64   // keys in one trigger's metadata
	MaxKeyLength = 128  // of a key
	MaxName      = 256  // poolName, organization, parent, agentNamePattern
	MaxURL       = 2048 // organizationURL, scalerAddress
	MaxList      = 8192 // capabilities, demands
	MaxListItems = 100  // entries of capabilities or demands
	MaxShort     = 32   // numbers and booleans
	maxEcho      = 64   // of a value quoted in an error
)

// limits is the longest value of each key, in bytes.
var limits = map[string]int{
	KeyPoolName: MaxName, KeyPoolID: MaxShort, KeyOrganization: MaxName, KeyOrganizationURL: MaxURL,
	KeyOrganizationURL + "FromEnv": MaxURL, KeyTarget: MaxShort, KeyActivation: MaxShort, KeyScaleOnInFlight: MaxShort,
	KeyCapabilities: MaxList, KeyDemands: MaxList, KeyRequireAll: MaxShort, KeyRequireAllOnly: MaxShort,
	KeyCaseInsensitive: MaxShort, KeyParent: MaxName, KeyPriority: MaxShort, KeyRouting: MaxShort, KeyAgentPattern: MaxName,
	KeyJobsToFetch: MaxShort, KeyUnfinishedOnly: MaxShort,
	"scalerAddress": MaxURL, "enableTLS": MaxShort, "unsafeSsl": MaxShort,
}

// Limit is the longest value a metadata key accepts, in bytes.
func Limit(key string) int { return limits[key] }

// show quotes a value for an error message, cut to maxEcho bytes.
func show(v string) string { return strconv.Quote(secrets.Truncate(v, maxEcho)) }

// checkBounds applies the bounds before any other check.
func checkBounds(md map[string]string) error {
	if len(md) > MaxKeys {
		return bad("", "%d keys; at most %d", len(md), MaxKeys)
	}
	for k, v := range md {
		if len(k) > MaxKeyLength {
			return bad(k, "key longer than %d bytes", MaxKeyLength)
		}
		if limit, ok := limits[k]; ok && len(v) > limit {
			return bad(k, "%d bytes; at most %d", len(v), limit)
		}
	}
	for _, k := range []string{KeyCapabilities, KeyDemands} {
		if n := strings.Count(md[k], ",") + 1; md[k] != "" && n > MaxListItems {
			return bad(k, "%d entries; at most %d", n, MaxListItems)
		}
	}
	return nil
}

// Error is invalid metadata: the key and what is wrong with it.
type Error struct {
	Key     string
	Problem string
}

func (e *Error) Error() string {
	if e.Key == "" {
		return "trigger metadata: " + e.Problem
	}
	return fmt.Sprintf("trigger metadata %s: %s", show(e.Key), e.Problem)
}

func bad(key, format string, args ...any) *Error {
	return &Error{Key: key, Problem: fmt.Sprintf(format, args...)}
}

// Organizations is what the parser needs to know of the configured
// organizations.
type Organizations interface {
	// Names lists the configured organizations.
	Names() []string
	// URL returns the URL of a configured organization, normalized (lower
	// case, no trailing slash).
	URL(name string) (string, bool)
}

// Spec is a parsed trigger.
type Spec struct {
	Organization string // a configured organization's name
	PoolName     string // exactly one of PoolName and PoolID is set
	PoolID       int

	Target          int64
	Activation      int64
	ScaleOnInFlight bool
	Parent          string // the parent agent's name, when the trigger filters by parent

	// Priority orders the triggers of a pool that accept the same waiting
	// job: the highest counts it.
	Priority int64
	// Shared: the trigger counts every job it accepts (routing: shared).
	Shared bool
	// AgentPattern is a glob of the names of the trigger's agents; empty:
	// agents are named after their pods (<scaledjob>-<5>-<5>).
	AgentPattern string

	filter       func(*queue.Job) bool // nil: every job
	filterKey    string
	rank         int
	describe     string
	capabilities map[string]string
}

// Capabilities is the agent template's capabilities as the trigger lists
// them (names as written); nil unless the trigger filters by capabilities.
func (s *Spec) Capabilities() map[string]string { return s.capabilities }

// Accepts reports whether the trigger's filter accepts a job (its
// capabilities satisfy the job's demands, or its demands or parent match).
func (s *Spec) Accepts(j *queue.Job) bool { return s.filter == nil || s.filter(j) }

// Counts reports whether the trigger would count a job on its own, as
// KEDA's built-in scaler does: accepted, and not in flight unless
// scaleOnInFlight.
func (s *Spec) Counts(j *queue.Job) bool {
	if !s.ScaleOnInFlight && !j.Waiting() {
		return false
	}
	return s.Accepts(j)
}

// Rank is how capable the trigger's agent template is, for routing: the
// number of capabilities or demands it lists. A parent's capabilities are
// unknown, so parent triggers rank after every capabilities or demands
// trigger, and a trigger without a filter (it accepts every job) last.
func (s *Spec) Rank() int { return s.rank }

// Filter describes the trigger's filter, e.g. "capabilities=Agent.OS=Linux,docker".
func (s *Spec) Filter() string { return s.describe }

// Ranks of triggers whose template is not a list.
const (
	RankParent = 1 << 20
	RankAll    = 1 << 30
)

// CountKey identifies the trigger's filter and in-flight setting; the
// metric name is derived from it.
func (s *Spec) CountKey() string {
	return s.filterKey + "|inflight=" + strconv.FormatBool(s.ScaleOnInFlight)
}

// MetricName is stable and unique per organization, pool and filter, and
// within Kubernetes' metric name rules (lower case alphanumerics and '-').
// KEDA prefixes it with the trigger index.
func (s *Spec) MetricName(poolID int) string {
	sum := sha256.Sum256([]byte(s.CountKey()))
	org := slug(s.Organization, 24)
	return fmt.Sprintf("azdo-%s-pool%d-%s", org, poolID, hex.EncodeToString(sum[:6]))
}

func slug(s string, max int) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	out := b.String()
	if len(out) > max {
		out = out[:max]
	}
	out = strings.Trim(out, "-")
	if out == "" {
		return "org"
	}
	return out
}

// Parse validates trigger metadata. Errors are *Error.
func Parse(md map[string]string, orgs Organizations) (*Spec, error) {
	if err := checkBounds(md); err != nil {
		return nil, err
	}
	for key := range md {
		if !known(key) {
			return nil, unknownKey(key)
		}
	}
	s := &Spec{Target: 1, ScaleOnInFlight: true}
	var err error
	if s.Organization, err = parseOrganization(md, orgs); err != nil {
		return nil, err
	}

	name, hasName := md[KeyPoolName]
	idText, hasID := md[KeyPoolID]
	switch {
	case hasName && hasID:
		return nil, bad(KeyPoolID, "set either poolName or poolID, not both")
	case !hasName && !hasID:
		return nil, bad(KeyPoolName, "required: set poolName or poolID")
	case hasName:
		if s.PoolName = strings.TrimSpace(name); s.PoolName == "" {
			return nil, bad(KeyPoolName, "must not be empty")
		}
	default:
		id, err := strconv.Atoi(strings.TrimSpace(idText))
		if err != nil || id <= 0 {
			return nil, bad(KeyPoolID, "must be a positive integer, got %s", show(idText))
		}
		s.PoolID = id
	}

	if s.Target, err = parseInt(md, KeyTarget, 1, 1); err != nil {
		return nil, err
	}
	if s.Activation, err = parseInt(md, KeyActivation, 0, 0); err != nil {
		return nil, err
	}
	if s.ScaleOnInFlight, err = parseBool(md, KeyScaleOnInFlight, true); err != nil {
		return nil, err
	}
	// Accepted for drop-in compatibility with KEDA's scaler, and ignored:
	// this scaler always fetches every unfinished job and nothing else.
	if _, err = parseInt(md, KeyJobsToFetch, 250, 1); err != nil {
		return nil, err
	}
	if _, err = parseBool(md, KeyUnfinishedOnly, false); err != nil {
		return nil, err
	}
	if err := s.parseFilter(md); err != nil {
		return nil, err
	}
	if s.Priority, err = parseIntRange(md, KeyPriority, 0, -1000, 1000); err != nil {
		return nil, err
	}
	switch mode := strings.TrimSpace(md[KeyRouting]); mode {
	case "", RoutingExclusive:
	case RoutingShared:
		s.Shared = true
	default:
		return nil, bad(KeyRouting, "must be %q (default) or %q, got %s", RoutingExclusive, RoutingShared, show(md[KeyRouting]))
	}
	if pattern, ok := md[KeyAgentPattern]; ok {
		s.AgentPattern = strings.TrimSpace(pattern)
		if _, err := path.Match(s.AgentPattern, ""); err != nil || s.AgentPattern == "" {
			return nil, bad(KeyAgentPattern, "must be a glob of agent names, e.g. \"team-a-linux-*\", got %s", show(pattern))
		}
	}
	return s, nil
}

func (s *Spec) parseFilter(md map[string]string) error {
	var set []string
	for _, k := range []string{KeyCapabilities, KeyDemands, KeyParent} {
		if _, ok := md[k]; ok {
			set = append(set, k)
		}
	}
	if len(set) > 1 {
		return bad(set[1], "set at most one of capabilities, demands and parent (also set: %s)", set[0])
	}
	requireAll, err := parseBool(md, KeyRequireAll, false)
	if err != nil {
		return err
	}
	requireAllOnly, err := parseBool(md, KeyRequireAllOnly, false)
	if err != nil {
		return err
	}
	caseInsensitive, err := parseBool(md, KeyCaseInsensitive, false)
	if err != nil {
		return err
	}
	if _, hasDemands := md[KeyDemands]; !hasDemands {
		for k, v := range map[string]bool{KeyRequireAll: requireAll, KeyRequireAllOnly: requireAllOnly, KeyCaseInsensitive: caseInsensitive} {
			if v {
				return bad(k, "only applies together with demands")
			}
		}
	}

	switch {
	case hasKey(md, KeyCapabilities):
		caps, err := demands.ParseCapabilities(md[KeyCapabilities])
		if err != nil {
			return bad(KeyCapabilities, "%v (want NAME=VALUE or NAME, comma-separated)", err)
		}
		s.filterKey = "capabilities:" + canonicalCapabilities(md[KeyCapabilities])
		s.filter = func(j *queue.Job) bool { return !j.Unparsable && caps.SatisfiesAll(j.Demands) }
		s.rank, s.describe = caps.Len(), "capabilities="+md[KeyCapabilities]
		s.capabilities = map[string]string{}
		for _, item := range strings.Split(md[KeyCapabilities], ",") {
			name, value, _ := strings.Cut(strings.TrimSpace(item), "=")
			s.capabilities[strings.TrimSpace(name)] = strings.TrimSpace(value)
		}
	case hasKey(md, KeyDemands):
		list := md[KeyDemands]
		if strings.TrimSpace(list) == "" {
			return bad(KeyDemands, "must not be empty")
		}
		m := demands.NewKEDAMatcher(list, requireAll, requireAllOnly, caseInsensitive)
		s.filterKey = fmt.Sprintf("demands:%s|all=%t|only=%t|ci=%t", list, requireAll, requireAllOnly, caseInsensitive)
		s.filter = func(j *queue.Job) bool { return m.Matches(j.RawDemands) }
		s.rank, s.describe = m.Len(), "demands="+list
	case hasKey(md, KeyParent):
		parent := md[KeyParent]
		if strings.TrimSpace(parent) == "" {
			return bad(KeyParent, "must not be empty")
		}
		s.Parent = parent
		s.filterKey = "parent:" + parent
		s.rank, s.describe = RankParent, "parent="+parent
		s.filter = func(j *queue.Job) bool {
			for _, a := range j.MatchedAgents {
				if a == parent { // KEDA compares agent names exactly
					return true
				}
			}
			return false
		}
	default:
		s.filterKey = "all"
		s.rank, s.describe = RankAll, "(none: every job of the pool)"
	}
	return nil
}

// canonicalCapabilities orders the list, so that the same capabilities
// written in another order give the same metric and count cache.
func canonicalCapabilities(list string) string {
	var items []string
	for _, item := range strings.Split(list, ",") {
		name, value, _ := strings.Cut(strings.TrimSpace(item), "=")
		items = append(items, strings.ToLower(strings.TrimSpace(name))+"="+strings.TrimSpace(value))
	}
	sort.Strings(items)
	return strings.Join(items, ",")
}

func hasKey(md map[string]string, k string) bool {
	_, ok := md[k]
	return ok
}

func known(key string) bool {
	for _, k := range keys {
		if k == key {
			return true
		}
	}
	return keysOfKEDA[key]
}

func unknownKey(key string) *Error {
	if strings.HasPrefix(strings.ToLower(key), "personalaccesstoken") {
		// Never echo the value: KEDA resolves ...FromEnv keys and sends the token itself.
		return bad(key, "not accepted: the scaler authenticates with the PAT configured for the organization; remove this key (its value is a secret KEDA would send over gRPC)")
	}
	for _, k := range keys {
		if strings.EqualFold(k, key) {
			return bad(key, "unknown key; did you mean %q? (keys are case-sensitive)", k)
		}
	}
	return bad(key, "unknown key (see the README for the supported keys)")
}

func parseOrganization(md map[string]string, orgs Organizations) (string, error) {
	names := orgs.Names()
	name, hasName := md[KeyOrganization]
	urlKey := KeyOrganizationURL
	orgURL, hasURL := md[urlKey]
	if fromEnv, ok := md[KeyOrganizationURL+"FromEnv"]; ok {
		if hasURL {
			return "", bad(KeyOrganizationURL+"FromEnv", "set either organizationURL or organizationURLFromEnv, not both")
		}
		urlKey, orgURL, hasURL = KeyOrganizationURL+"FromEnv", fromEnv, true
	}
	if hasName {
		if _, ok := orgs.URL(name); !ok {
			return "", bad(KeyOrganization, "%s is not a configured organization (configured: %s)", show(name), strings.Join(names, ", "))
		}
	}
	if hasURL {
		want := strings.ToLower(strings.TrimRight(strings.TrimSpace(orgURL), "/"))
		match := ""
		for _, n := range names {
			if u, _ := orgs.URL(n); u == want {
				match = n
			}
		}
		if match == "" {
			// The scaler never sends a configured PAT to another URL.
			return "", bad(urlKey, "%s is not the URL of a configured organization", show(orgURL))
		}
		if hasName && match != name {
			return "", bad(urlKey, "%s is the URL of organization %q, not of %s", show(orgURL), match, show(name))
		}
		return match, nil
	}
	if hasName {
		return name, nil
	}
	if len(names) == 1 {
		return names[0], nil
	}
	return "", bad(KeyOrganization, "required: the scaler serves %d organizations (%s)", len(names), strings.Join(names, ", "))
}

func parseInt(md map[string]string, key string, def, minimum int64) (int64, error) {
	v, ok := md[key]
	if !ok {
		return def, nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < minimum {
		return 0, bad(key, "must be an integer >= %d, got %s", minimum, show(v))
	}
	return n, nil
}

func parseIntRange(md map[string]string, key string, def, lo, hi int64) (int64, error) {
	v, ok := md[key]
	if !ok {
		return def, nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, bad(key, "must be an integer from %d to %d, got %s", lo, hi, show(v))
	}
	return n, nil
}

func parseBool(md map[string]string, key string, def bool) (bool, error) {
	v, ok := md[key]
	if !ok {
		return def, nil
	}
	b, err := strconv.ParseBool(strings.TrimSpace(v))
	if err != nil {
		return false, bad(key, "must be true or false, got %s", show(v))
	}
	return b, nil
}
