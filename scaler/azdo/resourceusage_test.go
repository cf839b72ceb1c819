package azdo

import (
	"context"
	"testing"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo"
)

// The organization's parallel jobs, through the SDK's request pipeline:
// the fake holds a third private job back (2 parallel jobs), a public job
// runs anyway, and resourceusage names the running private ones.
func TestResourceUsage(t *testing.T) {
	s, org := startFake(t)
	pool := org.AddPool("linux")
	org.SetParallelJobs(2)
	for range 3 {
		org.AddAgent(pool, fakeazdo.Agent{Name: "static", Online: true})
	}
	a := org.QueueJob(pool, fakeazdo.Job{})
	b := org.QueueJob(pool, fakeazdo.Job{})
	c := org.QueueJob(pool, fakeazdo.Job{})
	pub := org.QueueJob(pool, fakeazdo.Job{Public: true})
	assigned := org.Dispatch(pool)
	if _, ok := assigned[c]; ok || len(assigned) != 3 || assigned[pub] == 0 {
		t.Fatalf("assigned %v: want the first two private jobs and the public one, not the third private job", assigned)
	}
	obs := &recordingObserver{}
	cl := newClient(t, s, StaticPAT(testPAT), func(o *Options) { o.Observer = obs })
	u, err := cl.ResourceUsage(context.Background(), "Private")
	if err != nil {
		t.Fatal(err)
	}
	if u.ResourceLimit == nil || *u.ResourceLimit.TotalCount != 2 || *u.UsedCount != 2 || u.RunningRequests == nil || len(*u.RunningRequests) != 2 {
		t.Fatalf("usage %+v: want 2 of 2 in use, naming 2 requests", u)
	}
	for _, r := range *u.RunningRequests {
		if id := *r.RequestId; id != a && id != b {
			t.Fatalf("running request %d is not one of %d, %d", id, a, b)
		}
	}
	if obs.calls["resourceusage 200"] != 1 {
		t.Fatalf("calls %v: want one resourceusage call named as such", obs.calls)
	}
	// The third private job gets its agent once one finishes.
	if err := org.FinishJob(a, "succeeded"); err != nil {
		t.Fatal(err)
	}
	if _, ok := org.Dispatch(pool)[c]; !ok {
		t.Fatal("the third private job got no agent after a parallel job freed up")
	}
	if org.MostRunning() != 2 {
		t.Fatalf("most private jobs at once %d, want 2", org.MostRunning())
	}
}

// A failing answer is an error (the budget then fails open), never zero.
func TestResourceUsageFailureIsAnError(t *testing.T) {
	s, _ := startFake(t)
	s.InjectFault(fakeazdo.Fault{Endpoint: fakeazdo.ResourceUsage, Status: 500, Body: `{"message":"down"}`, Times: 10})
	cl := newClient(t, s, StaticPAT(testPAT))
	if u, err := cl.ResourceUsage(context.Background(), "Private"); err == nil {
		t.Fatalf("got %+v and no error from a failing Azure DevOps", u)
	}
}
