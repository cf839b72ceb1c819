package demo

import (
	"math/rand/v2"
	"testing"
)

// make run's organization reaches a steady state: over a simulated hour
// (3,600 ticks of a second) the unfinished jobs of every pool stay few,
// and jobs keep finishing. Before, arrivals outran the pods and the linux
// pool's backlog grew without bound (0 to 35 in 75 s).
func TestSimulationStaysBounded(t *testing.T) {
	o, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	s := &simulation{o: o, rng: rand.New(rand.NewPCG(1, 2))}
	most := 0
	for range 3600 {
		s.step()
		for _, id := range o.pools {
			most = max(most, len(o.org.UnfinishedJobs(id)))
		}
	}
	finished := s.finished
	if most > 15 {
		t.Fatalf("a pool had %d unfinished jobs at once over a simulated hour; want a small, steady backlog", most)
	}
	if finished < 1500 {
		t.Fatalf("%d jobs finished in a simulated hour; about 0.5 arrive per tick", finished)
	}
	t.Logf("simulated hour: at most %d unfinished jobs in a pool, %d finished", most, finished)
}
