package app

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	pb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo"
)

// leakPAT is long and random-looking, as real PATs are.
const leakPAT = "k3v9q2w8e7r6t5y4u3i2o1p0a9s8d7f6g5h4j3k2l1z0x9c8v7b6n5m4"

// encodings are the forms a PAT takes in a request: as is, and inside an
// HTTP Basic header.
func encodings(pat string) map[string]string {
	return map[string]string{
		"raw":             pat,
		"base64(:PAT)":    base64.StdEncoding.EncodeToString([]byte(":" + pat)),
		"base64(PAT)":     base64.StdEncoding.EncodeToString([]byte(pat)),
		"base64url(:PAT)": base64.RawURLEncoding.EncodeToString([]byte(":" + pat)),
	}
}

// Azure DevOps, or a proxy before it, answers errors whose bodies repeat
// the request's Authorization header: in JSON, as text, as HTML, with 401,
// 403 and 500. The PAT, in any encoding, must reach no gRPC status, no log
// line at any level, not /metrics, /readyz, nor the sweeper's logs.
func TestNoSecretInAnyOutput(t *testing.T) {
	fake, org, pool := startFake(t, leakPAT)
	org.QueueJob(pool, fakeazdo.Job{Demands: []string{"Agent.OS -equals Linux"}})
	org.AddAgent(pool, fakeazdo.Agent{Name: "linux-agents-abc12", StatusChangedOn: time.Now().Add(-time.Hour)})
	inst, logs := startAgainst(t, fake, leakPAT, "--refresh-interval", "1s",
		"--stale-after", "2s", "--azdo-timeout", "500ms", "--routing-warmup", "0s",
		"--sweep-interval", "200ms", "--sweep-agent-pattern", "linux-agents-*", "--log-format", "json")
	conn := dial(t, inst)
	client := pb.NewExternalScalerClient(conn)
	ref := &pb.ScaledObjectRef{Name: "linux", Namespace: "ns", ScalerMetadata: map[string]string{"poolName": "linux", "capabilities": "Agent.OS=Linux"}}
	if _, err := client.GetMetrics(context.Background(), &pb.GetMetricsRequest{ScaledObjectRef: ref}); err != nil {
		t.Fatal(err)
	}

	bodies := map[string]struct{ body, contentType string }{
		"json": {`{"$id":"1","message":"Unauthorized: request had Authorization: ` + fakeazdo.EchoAuthorization + `","typeKey":"UnauthorizedRequestException"}`, "application/json"},
		"text": {"Access denied. Headers: Authorization=" + fakeazdo.EchoAuthorization + "; try again", "text/plain"},
		"html": {"<html><body><pre>" + fakeazdo.EchoAuthorization + "</pre></body></html>", "text/html"},
	}
	var outputs []string
	for _, code := range []int{http.StatusUnauthorized, http.StatusForbidden, http.StatusInternalServerError} {
		for kind, b := range bodies {
			fake.ClearFaults()
			fake.InjectFault(fakeazdo.Fault{Status: code, Body: b.body, ContentType: b.contentType})
			// GetMetrics until the data is stale: Unavailable with the cause.
			var msg string
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) {
				_, err := client.GetMetrics(context.Background(), &pb.GetMetricsRequest{ScaledObjectRef: ref})
				if status.Code(err) == codes.Unavailable && strings.Contains(err.Error(), fmt.Sprintf("HTTP %d", code)) {
					msg = err.Error()
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if msg == "" {
				t.Fatalf("%d %s: no Unavailable naming HTTP %d", code, kind, code)
			}
			outputs = append(outputs, msg)
			_, ready := get(t, "http://"+inst.HTTPAddr+"/readyz")
			outputs = append(outputs, ready)
			// A new template makes the placeholder keeper list the pool's agents (another error path).
			_, _ = client.GetMetrics(context.Background(), &pb.GetMetricsRequest{ScaledObjectRef: &pb.ScaledObjectRef{
				Name: fmt.Sprintf("tpl-%d-%s", code, kind), Namespace: "ns",
				ScalerMetadata: map[string]string{"poolName": "linux", "capabilities": "Agent.OS=Linux,tool-" + kind}}})
			// A fresh trigger makes the scaler look the pool up again (another error path).
			_, err := client.IsActive(context.Background(), &pb.ScaledObjectRef{Name: "x", Namespace: "ns",
				ScalerMetadata: map[string]string{"poolName": fmt.Sprintf("other-%d-%s", code, kind)}})
			if err != nil {
				outputs = append(outputs, err.Error())
			}
		}
	}
	fake.ClearFaults()
	_, metrics := get(t, "http://"+inst.HTTPAddr+"/metrics")
	inst.Stop()
	all := strings.Join(append(outputs, metrics, logs.String()), "\n")
	for name, form := range encodings(leakPAT) {
		if strings.Contains(all, form) {
			t.Errorf("the PAT (%s) appears in the scaler's output", name)
		}
	}
	for _, want := range []string{"[REDACTED]", `"component":"sweeper"`, "listing the agent pools failed", `"component":"placeholders"`,
		"listing agents for the placeholders failed", `"level":"debug"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the logs lack %q: the test did not exercise that path", want)
		}
	}
	if !strings.Contains(strings.Join(outputs, "\n"), "UnauthorizedRequestException") {
		t.Error("the JSON error's type key is not in the gRPC message")
	}
	for _, o := range outputs {
		if len(o) > 1500 {
			t.Errorf("an output of %d bytes: error bodies must be cut", len(o))
		}
	}
}
