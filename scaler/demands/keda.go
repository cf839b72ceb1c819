package demands

import "strings"

// KEDAMatcher reproduces the `demands` filter of KEDA's built-in
// azure-pipelines scaler (v2.21) exactly, quirks included, so that a
// ScaledJob moved from `type: azure-pipelines` to this scaler keeps counting
// the same jobs. It compares demand strings, not capabilities: "Agent.OS
// -equals Linux" only matches that literal string.
type KEDAMatcher struct {
	demands                   []string // the trigger's demands, Agent.Version ones removed
	requireAll                bool
	requireAllAndIgnoreOthers bool
	caseInsensitive           bool
}

// NewKEDAMatcher builds the matcher from the trigger's comma-separated demands.
func NewKEDAMatcher(demandList string, requireAll, requireAllAndIgnoreOthers, caseInsensitive bool) KEDAMatcher {
	return KEDAMatcher{
		demands:                   withoutAgentVersion(strings.Split(demandList, ",")),
		requireAll:                requireAll,
		requireAllAndIgnoreOthers: requireAllAndIgnoreOthers,
		caseInsensitive:           caseInsensitive,
	}
}

// withoutAgentVersion drops the strings KEDA drops: those starting with
// "Agent.Version" (case-sensitive prefix, as KEDA does).
func withoutAgentVersion(list []string) []string {
	var out []string
	for _, s := range list {
		if !strings.HasPrefix(s, AgentVersion) {
			out = append(out, s)
		}
	}
	return out
}

// Len is the number of the trigger's demands (Agent.Version ones aside).
func (m KEDAMatcher) Len() int { return len(m.demands) }

// Matches reports whether a job with these demand strings counts.
func (m KEDAMatcher) Matches(jobDemands []string) bool {
	inJob := withoutAgentVersion(jobDemands)
	// KEDA counts every (job demand, trigger demand) pair that matches, so a
	// duplicated trigger demand counts twice; kept for fidelity.
	matches := 0
	for _, j := range inJob {
		for _, s := range m.demands {
			if j == s || (m.caseInsensitive && strings.EqualFold(j, s)) {
				matches++
			}
		}
	}
	switch {
	case m.requireAll:
		return matches == len(inJob) && matches == len(m.demands)
	case m.requireAllAndIgnoreOthers:
		return matches == len(m.demands)
	default:
		return matches == len(inJob)
	}
}
