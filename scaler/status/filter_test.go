package status

import (
	"net/http/httptest"
	"testing"
)

// What explain sends is what the page and the API read.
func TestFilterQueryRoundTrip(t *testing.T) {
	f := Filter{Namespace: "team-a", Organization: "contoso", Pool: "linux", Run: "web ci&x"}
	if got := FilterOf(httptest.NewRequest("GET", "/api/v1/jobs?"+f.Query().Encode(), nil)); got != f {
		t.Fatalf("sent %+v, read %+v", f, got)
	}
	if q := (Filter{}).Query().Encode(); q != "" {
		t.Fatalf("an empty filter sends %q", q)
	}
}
