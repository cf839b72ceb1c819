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
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/standby"
)

// Metadata keys.
const (
	KeyPoolName        = "poolName"
	KeyPoolID          = "poolID"
	KeyOrganization    = "organization"
	KeyOrganizationURL = "organizationURL"
	// KeyOrganizationURLFromEnv is resolved by KEDA from the scale
	// target's environment before it is sent.
	KeyOrganizationURLFromEnv = KeyOrganizationURL + "FromEnv"
	KeyTarget                 = "targetPipelinesQueueLength"
	KeyActivation             = "activationTargetPipelinesQueueLength"
	KeyScaleOnInFlight        = "scaleOnInFlight"
	KeyCapabilities           = "capabilities"
	KeyDemands                = "demands"
	KeyRequireAll             = "requireAllDemands"
	KeyRequireAllOnly         = "requireAllDemandsAndIgnoreOthers"
	KeyCaseInsensitive        = "caseInsensitiveDemandsProcessing"
	KeyParent                 = "parent"
	KeyJobsToFetch            = "jobsToFetch"
	KeyUnfinishedOnly         = "fetchUnfinishedJobsOnly"
	KeyPriority               = "priority"
	KeyRouting                = "routing"
	KeyAgentPattern           = "agentNamePattern"
	KeyStandby                = "standby"
	KeyStandbySchedule        = "standbySchedule"
	KeyStandbyTimeZone        = "standbyTimeZone"
	KeyStandbyPercentile      = "standbyPercentile"
	KeyStandbyMax             = "standbyMax"
)

// Routing modes (metadata key routing).
const (
	RoutingExclusive = "exclusive" // each job counts for one trigger of the pool
	RoutingShared    = "shared"    // count every accepted job, like KEDA's built-in
)

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
	MaxSchedule  = 2048 // standbySchedule
	maxEcho      = 64   // of a value quoted in an error
)

// A key is one metadata key, declared once: its name, the longest value it
// takes, the default its parser gets when it is absent ("": none), and its
// parser. Keys without a parser are read by the rules that span several
// keys (organization, pool, filter); KEDA's own keys are only bounded.
type key struct {
	name  string
	limit int
	def   string
	parse func(s *Spec, key, value string) error
	keda  bool // set by KEDA for every external trigger
}

// table lists the keys in the README's order.
var table = []key{
	{name: KeyPoolName, limit: MaxName},
	{name: KeyPoolID, limit: MaxShort},
	{name: KeyOrganization, limit: MaxName},
	{name: KeyOrganizationURL, limit: MaxURL},
	{name: KeyOrganizationURLFromEnv, limit: MaxURL},
	{name: KeyTarget, limit: MaxShort, def: "1", parse: intAtLeast(1, func(s *Spec, n int64) { s.Target = n })},
	{name: KeyActivation, limit: MaxShort, def: "0", parse: intAtLeast(0, func(s *Spec, n int64) { s.Activation = n })},
	{name: KeyScaleOnInFlight, limit: MaxShort, def: "true", parse: boolean(func(s *Spec, b bool) { s.ScaleOnInFlight = b })},
	{name: KeyCapabilities, limit: MaxList},
	{name: KeyDemands, limit: MaxList},
	{name: KeyRequireAll, limit: MaxShort, def: "false", parse: boolean(func(s *Spec, b bool) { s.requireAll = b })},
	{name: KeyRequireAllOnly, limit: MaxShort, def: "false", parse: boolean(func(s *Spec, b bool) { s.requireAllOnly = b })},
	{name: KeyCaseInsensitive, limit: MaxShort, def: "false", parse: boolean(func(s *Spec, b bool) { s.caseInsensitive = b })},
	{name: KeyParent, limit: MaxName},
	{name: KeyPriority, limit: MaxShort, def: "0", parse: intBetween(-1000, 1000, func(s *Spec, n int64) { s.Priority = n })},
	{name: KeyRouting, limit: MaxShort, def: RoutingExclusive, parse: parseRouting},
	{name: KeyAgentPattern, limit: MaxName, parse: parseAgentPattern},
	{name: KeyStandby, limit: MaxShort, def: "0", parse: parseStandby},
	{name: KeyStandbySchedule, limit: MaxSchedule},
	{name: KeyStandbyTimeZone, limit: MaxName},
	{name: KeyStandbyPercentile, limit: MaxShort, def: "50", parse: intBetween(10, 90, func(s *Spec, n int64) { s.Standby.Percentile = int(n) })},
	{name: KeyStandbyMax, limit: MaxShort, def: "10", parse: intBetween(0, standby.MaxCount, func(s *Spec, n int64) { s.Standby.Max = int(n) })},
	// Accepted for drop-in compatibility with KEDA's scaler, and ignored:
	// this scaler always fetches every unfinished job and nothing else.
	{name: KeyJobsToFetch, limit: MaxShort, parse: intAtLeast(1, nil)},
	{name: KeyUnfinishedOnly, limit: MaxShort, parse: boolean(nil)},

	{name: "scalerAddress", limit: MaxURL, keda: true},
	{name: "enableTLS", limit: MaxShort, keda: true},
	{name: "unsafeSsl", limit: MaxShort, keda: true},
}

// lookupKey finds a key of the table (KEDA's own too).
func lookupKey(name string) (*key, bool) {
	for i := range table {
		if table[i].name == name {
			return &table[i], true
		}
	}
	return nil, false
}

// Keys lists the metadata keys the scaler reads (KEDA's own keys aside),
// in the README's order.
func Keys() []string {
	var out []string
	for _, k := range table {
		if !k.keda {
			out = append(out, k.name)
		}
	}
	return out
}

// Limit is the longest value a metadata key accepts, in bytes.
func Limit(name string) int {
	if k, ok := lookupKey(name); ok {
		return k.limit
	}
	return 0
}

// Default is the value a key takes when it is absent ("": none).
func Default(name string) string {
	if k, ok := lookupKey(name); ok {
		return k.def
	}
	return ""
}

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
		if key, ok := lookupKey(k); ok && len(v) > key.limit {
			return bad(k, "%d bytes; at most %d", len(v), key.limit)
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
	// Standby: idle agents the trigger keeps ready (package standby).
	Standby standby.Settings

	// demands options, read by the filter rule
	requireAll, requireAllOnly, caseInsensitive bool

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
	s := &Spec{}
	var err error
	if s.Organization, err = parseOrganization(md, orgs); err != nil {
		return nil, err
	}
	if err := s.parsePool(md); err != nil {
		return nil, err
	}
	for i := range table {
		k := &table[i]
		v, ok := md[k.name]
		if !ok {
			v = k.def
		}
		if k.parse == nil || (!ok && k.def == "") {
			continue
		}
		if err := k.parse(s, k.name, v); err != nil {
			return nil, err
		}
	}
	if err := s.parseFilter(md); err != nil {
		return nil, err
	}
	if err := s.parseSchedule(md); err != nil {
		return nil, err
	}
	return s, nil
}

// parseStandby reads standby: a number of idle agents, or auto.
func parseStandby(s *Spec, key, v string) error {
	v = strings.TrimSpace(v)
	if v == "auto" {
		s.Standby.Auto = true
		return nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > standby.MaxCount {
		return bad(key, "must be auto or an integer from 0 to %d, got %s", standby.MaxCount, show(v))
	}
	s.Standby.Fixed = n
	return nil
}

// parseSchedule reads standbySchedule in standbyTimeZone.
func (s *Spec) parseSchedule(md map[string]string) error {
	text, zone := md[KeyStandbySchedule], md[KeyStandbyTimeZone]
	if strings.TrimSpace(text) == "" {
		if zone != "" {
			return bad(KeyStandbyTimeZone, "set without standbySchedule")
		}
		return nil
	}
	sched, err := standby.ParseSchedule(text, strings.TrimSpace(zone))
	if err != nil {
		k := KeyStandbySchedule
		if strings.HasPrefix(err.Error(), "time zone") {
			k = KeyStandbyTimeZone
		}
		return bad(k, "%v", err)
	}
	s.Standby.Schedule = sched
	return nil
}

// parsePool reads poolName or poolID: exactly one.
func (s *Spec) parsePool(md map[string]string) error {
	name, hasName := md[KeyPoolName]
	idText, hasID := md[KeyPoolID]
	switch {
	case hasName && hasID:
		return bad(KeyPoolID, "set either poolName or poolID, not both")
	case !hasName && !hasID:
		return bad(KeyPoolName, "required: set poolName or poolID")
	case hasName:
		if s.PoolName = strings.TrimSpace(name); s.PoolName == "" {
			return bad(KeyPoolName, "must not be empty")
		}
	default:
		id, err := strconv.Atoi(strings.TrimSpace(idText))
		if err != nil || id <= 0 {
			return bad(KeyPoolID, "must be a positive integer, got %s", show(idText))
		}
		s.PoolID = id
	}
	return nil
}

func parseRouting(s *Spec, key, v string) error {
	switch mode := strings.TrimSpace(v); mode {
	case RoutingExclusive:
	case RoutingShared:
		s.Shared = true
	default:
		return bad(key, "must be %q (default) or %q, got %s", RoutingExclusive, RoutingShared, show(v))
	}
	return nil
}

func parseAgentPattern(s *Spec, key, v string) error {
	s.AgentPattern = strings.TrimSpace(v)
	if _, err := path.Match(s.AgentPattern, ""); err != nil || s.AgentPattern == "" {
		return bad(key, "must be a glob of agent names, e.g. \"team-a-linux-*\", got %s", show(v))
	}
	return nil
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
	requireAll, requireAllOnly, caseInsensitive := s.requireAll, s.requireAllOnly, s.caseInsensitive
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

func known(name string) bool {
	_, ok := lookupKey(name)
	return ok
}

func unknownKey(key string) *Error {
	if strings.HasPrefix(strings.ToLower(key), "personalaccesstoken") {
		// Never echo the value: KEDA resolves ...FromEnv keys and sends the token itself.
		return bad(key, "not accepted: the scaler authenticates with the PAT configured for the organization; remove this key (its value is a secret KEDA would send over gRPC)")
	}
	for _, k := range Keys() {
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
	if fromEnv, ok := md[KeyOrganizationURLFromEnv]; ok {
		if hasURL {
			return "", bad(KeyOrganizationURLFromEnv, "set either organizationURL or organizationURLFromEnv, not both")
		}
		urlKey, orgURL, hasURL = KeyOrganizationURLFromEnv, fromEnv, true
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

// intAtLeast parses an integer >= minimum into set (nil: validate only).
func intAtLeast(minimum int64, set func(*Spec, int64)) func(*Spec, string, string) error {
	return func(s *Spec, key, v string) error {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || n < minimum {
			return bad(key, "must be an integer >= %d, got %s", minimum, show(v))
		}
		if set != nil {
			set(s, n)
		}
		return nil
	}
}

// intBetween parses an integer from lo to hi into set.
func intBetween(lo, hi int64, set func(*Spec, int64)) func(*Spec, string, string) error {
	return func(s *Spec, key, v string) error {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || n < lo || n > hi {
			return bad(key, "must be an integer from %d to %d, got %s", lo, hi, show(v))
		}
		set(s, n)
		return nil
	}
}

// boolean parses true or false into set (nil: validate only).
func boolean(set func(*Spec, bool)) func(*Spec, string, string) error {
	return func(s *Spec, key, v string) error {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return bad(key, "must be true or false, got %s", show(v))
		}
		if set != nil {
			set(s, b)
		}
		return nil
	}
}
