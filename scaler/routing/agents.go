package routing

import (
	"path"
	"strings"
)

// Kubernetes' generateName keeps at most 58 characters of the base and
// adds 5 random lower-case alphanumerics (names are at most 63).
const (
	maxGeneratedBase = 58
	randomSuffix     = 5
)

// KEDAPodOwner returns the rule that tells a ScaledJob's agents apart when
// agents are named after their pods, as the reference pool chart names them:
// KEDA creates Jobs with generateName "<scaledjob>-" and the Job controller
// creates pods with generateName "<job>-", so a pod is
// "<scaledjob>-<5>-<5>" (truncated as Kubernetes truncates long names).
//
// The rule matches that exact shape, so a ScaledJob named "linux" never
// claims "linux-docker-x7k2p-abcde", an agent of ScaledJob "linux-docker".
// Names are compared ignoring case, as Azure DevOps compares agent names.
func KEDAPodOwner(scaledJob string) func(agent string) bool {
	jobBase := truncate(strings.ToLower(scaledJob)+"-", maxGeneratedBase)
	// '?' stands for one generated character.
	podBase := truncate(jobBase+strings.Repeat("?", randomSuffix)+"-", maxGeneratedBase)
	shape := podBase + strings.Repeat("?", randomSuffix)
	return func(agent string) bool {
		if len(agent) != len(shape) {
			return false
		}
		agent = strings.ToLower(agent)
		for i := 0; i < len(shape); i++ {
			c := agent[i]
			if shape[i] == '?' {
				if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
					return false
				}
			} else if c != shape[i] {
				return false
			}
		}
		return true
	}
}

// PatternOwner returns the rule for a trigger's own agentNamePattern: a
// glob (path.Match) matched ignoring case. A bad pattern matches nothing
// (metadata is validated before it gets here).
func PatternOwner(glob string) func(agent string) bool {
	glob = strings.ToLower(glob)
	return func(agent string) bool {
		ok, err := path.Match(glob, strings.ToLower(agent))
		return err == nil && ok
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
