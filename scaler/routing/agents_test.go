package routing

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// generateName is Kubernetes' SimpleNameGenerator: the base cut to 58
// characters, then 5 characters of its alphabet.
func generateName(r *rand.Rand, base string) string {
	const alphabet = "bcdfghjklmnpqrstvwxz2456789"
	if len(base) > maxGeneratedBase {
		base = base[:maxGeneratedBase]
	}
	var b strings.Builder
	b.WriteString(base)
	for range randomSuffix {
		b.WriteByte(alphabet[r.IntN(len(alphabet))])
	}
	return b.String()
}

// podOf is the name of a pod of a Job KEDA created for the ScaledJob.
func podOf(r *rand.Rand, scaledJob string) string {
	return generateName(r, generateName(r, scaledJob+"-")+"-")
}

func TestKEDAPodOwner(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	names := []string{"linux", "linux-docker", "linux-docker-gpu", "a", "l",
		strings.Repeat("x", 51), strings.Repeat("y", 52), strings.Repeat("z", 57), strings.Repeat("w", 63)}
	for _, sj := range names {
		owns := KEDAPodOwner(sj)
		for range 200 {
			pod := podOf(r, sj)
			if !owns(pod) || !owns(strings.ToUpper(pod)) {
				t.Fatalf("%q does not own its pod %q", sj, pod)
			}
			for _, other := range names {
				if other != sj && KEDAPodOwner(other)(pod) {
					t.Fatalf("%q claims %q, a pod of %q", other, pod, sj)
				}
			}
		}
	}
	linux := KEDAPodOwner("linux")
	for _, agent := range []string{"linux-docker-x7k2p-abcde", "linux-x7k2p", "linux-x7k2p-abcde-fghij", "linux-x7k2p-abc_e",
		"linuxx-7k2p-abcde", "static-vm-1", "", "linux-x7k2-pabcde"} {
		if linux(agent) {
			t.Errorf("ScaledJob linux claims agent %q", agent)
		}
	}
	if !linux("linux-x7k2p-abcde") {
		t.Error("ScaledJob linux does not claim linux-x7k2p-abcde")
	}
}

func TestPatternOwner(t *testing.T) {
	owns := PatternOwner("Team-A-*")
	if !owns("team-a-vm-1") || owns("team-b-vm-1") {
		t.Fatal("agentNamePattern must match its glob, ignoring case")
	}
	if PatternOwner("[")("anything") {
		t.Fatal("a bad glob must match nothing")
	}
}
