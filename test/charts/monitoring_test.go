package charts

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	pb "github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/internal/fakeazdo/fakeazdotest"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/test/scalertest"
)

// targetLabels are the labels Prometheus adds to every series it scrapes
// through a ServiceMonitor: queries may group by them, and the scaler must
// not export them itself (they would be renamed exported_<name>).
var targetLabels = []string{"namespace", "pod", "instance", "job", "service", "endpoint", "container"}

// query is one PromQL expression the chart ships, and where it comes from.
type query struct {
	from, expr string
}

// selector is what one query asks of a metric: its name and label names.
type selector struct {
	metric string
	labels []string // in matchers, by (...) and label_values(..., label)
}

// TestMonitoringUsesExportedMetrics parses every query of the chart's
// PrometheusRule and Grafana dashboard with Prometheus' own PromQL parser
// and checks each metric and label name against what a running scaler
// exports on /metrics: a renamed metric fails here, not on a dashboard.
func TestMonitoringUsesExportedMetrics(t *testing.T) {
	queries := chartQueries(t)
	var want []selector
	for _, q := range queries {
		sels, err := selectors(q.expr)
		if err != nil {
			t.Fatalf("%s: %q does not parse: %v", q.from, q.expr, err)
		}
		if len(sels) == 0 {
			t.Errorf("%s: %q reads no metric", q.from, q.expr)
		}
		want = append(want, sels...)
	}
	if len(queries) < 20 {
		t.Fatalf("found only %d queries in the PrometheusRule and the dashboard", len(queries))
	}

	exported := scrapeRunningScaler(t, want)
	for _, s := range want {
		labels, ok := exported[s.metric]
		if !ok {
			t.Errorf("%s is used by the chart but not exported by the scaler", s.metric)
			continue
		}
		for _, l := range s.labels {
			if !slices.Contains(labels, l) && !slices.Contains(targetLabels, l) {
				t.Errorf("%s has no label %q (it has %v)", s.metric, l, labels)
			}
		}
	}
	for name, labels := range exported {
		for _, l := range labels {
			if strings.HasPrefix(name, "azdo_keda_scaler_") && slices.Contains(targetLabels, l) {
				t.Errorf("%s exports label %q, which Prometheus sets on every target", name, l)
			}
		}
	}
	t.Logf("%d queries, %d metric selectors checked against %d exported metrics", len(queries), len(want), len(exported))
}

// chartQueries renders the chart with its PrometheusRule and dashboard on
// and returns every query in them.
func chartQueries(t *testing.T) []query {
	t.Helper()
	_, objs, _, err := Render(scalerRelease(), "ci/production-values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var qs []query
	for _, o := range objs {
		switch typed := o.Typed.(type) {
		case *monitoringv1.PrometheusRule:
			for _, g := range typed.Spec.Groups {
				for _, r := range g.Rules {
					qs = append(qs, query{"alert " + r.Alert, r.Expr.String()})
				}
			}
		case *corev1.ConfigMap:
			if board, ok := typed.Data["azdo-keda-scaler.json"]; ok {
				qs = append(qs, dashboardQueries(t, board)...)
			}
		}
	}
	return qs
}

// dashboardQueries walks the dashboard JSON for panel targets ("expr") and
// template variables ("query" strings and objects).
func dashboardQueries(t *testing.T, board string) []query {
	t.Helper()
	var doc any
	if err := json.Unmarshal([]byte(board), &doc); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	var qs []query
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, child := range v {
				if s, ok := child.(string); ok && (k == "expr" || (k == "query" && strings.Contains(path, "templating"))) && s != "prometheus" {
					qs = append(qs, query{"dashboard " + path + "." + k, s})
					continue
				}
				walk(path+"."+k, child)
			}
		case []any:
			for i, child := range v {
				walk(fmt.Sprintf("%s[%d]", path, i), child)
			}
		}
	}
	walk("", doc)
	return qs
}

var labelValues = regexp.MustCompile(`^\s*label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$`)

// selectors parses a query (Grafana's label_values() and $__rate_interval
// included) and returns the metrics it reads with the labels it uses.
func selectors(expr string) ([]selector, error) {
	var extraLabel string
	if m := labelValues.FindStringSubmatch(expr); m != nil {
		expr, extraLabel = m[1], m[2]
	}
	expr = strings.ReplaceAll(expr, "$__rate_interval", "5m")
	node, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var sels []selector
	var grouping []string
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.AggregateExpr:
			grouping = append(grouping, n.Grouping...)
		case *parser.VectorSelector:
			s := selector{metric: n.Name}
			for _, m := range n.LabelMatchers {
				if m.Name != model.MetricNameLabel {
					s.labels = append(s.labels, m.Name)
				}
			}
			if extraLabel != "" {
				s.labels = append(s.labels, extraLabel)
			}
			sels = append(sels, s)
		}
		return nil
	})
	// A by (...) label must exist on the metric the aggregation reads; every
	// query here aggregates one metric.
	for i := range sels {
		sels[i].labels = append(sels[i].labels, grouping...)
	}
	return sels, nil
}

// scrapeRunningScaler runs the scaler against a fake Azure DevOps, makes
// it do everything its metrics count, and returns the metric names (with
// their label names) on /metrics once every wanted name is there.
func scrapeRunningScaler(t *testing.T, want []selector) map[string][]string {
	t.Helper()
	fake := fakeazdotest.Start(t)
	const pat = "monitoring-test-pat"
	org := fake.AddOrg("contoso", pat)
	pool := org.AddPool("linux")
	org.SetRateLimit(1000, time.Minute) // answers carry X-RateLimit-Remaining
	busy := org.AddAgent(pool, fakeazdo.Agent{Name: "linux-abcde-fghij", Online: true, Capabilities: map[string]string{"Agent.OS": "Linux"}})
	if err := org.AssignJob(org.QueueJob(pool, fakeazdo.Job{Demands: []string{"Agent.OS -equals Linux"}}), busy); err != nil {
		t.Fatal(err)
	}
	org.QueueJob(pool, fakeazdo.Job{Demands: []string{"Agent.OS -equals Linux"}})
	org.QueueJob(pool, fakeazdo.Job{Demands: []string{"gpu"}}) // nobody can run it
	org.AddAgent(pool, fakeazdo.Agent{Name: "linux-zzzzz-yyyyy", StatusChangedOn: time.Now().Add(-time.Hour)})
	fake.InjectFault(fakeazdo.Fault{Endpoint: fakeazdo.DeleteAgent, Times: 1, Status: http.StatusInternalServerError}) // one sweeper error, then the delete

	patFile := filepath.Join(t.TempDir(), "pat")
	if err := os.WriteFile(patFile, []byte(pat), 0o600); err != nil {
		t.Fatal(err)
	}
	inst := scalertest.Start(t, io.Discard, "--org-url", fake.OrgURL("contoso"), "--pat-file", patFile, "--refresh-interval", "1s",
		"--routing-warmup", "0s", "--sweep-interval", "200ms", "--azdo-qps", "2")

	conn, err := grpc.NewClient(inst.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ref := &pb.ScaledObjectRef{Name: "linux", Namespace: "ci", ScalerMetadata: map[string]string{"poolName": "linux", "capabilities": "Agent.OS=Linux"}}
	if _, err := pb.NewExternalScalerClient(conn).GetMetrics(ctx, &pb.GetMetricsRequest{ScaledObjectRef: ref, MetricName: "m"}); err != nil {
		t.Fatal(err)
	}

	var exported map[string][]string
	var missing []string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		exported = scrape(t, "http://"+inst.HTTPAddr+"/metrics")
		missing = missing[:0]
		for _, s := range want {
			if _, ok := exported[s.metric]; !ok && !slices.Contains(missing, s.metric) {
				missing = append(missing, s.metric)
			}
		}
		if len(missing) == 0 {
			break
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Logf("after 30s the scaler still exports none of %v", missing)
	}
	return exported
}

// scrape reads /metrics with Prometheus' own text parser; a histogram's
// _bucket, _sum and _count series are named as Prometheus stores them.
func scrape(t *testing.T, url string) map[string][]string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	textParser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := textParser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for name, f := range families {
		var labels []string
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if !slices.Contains(labels, l.GetName()) {
					labels = append(labels, l.GetName())
				}
			}
		}
		names := []string{name}
		if f.GetType().String() == "HISTOGRAM" {
			names = []string{name + "_bucket", name + "_sum", name + "_count"}
		}
		for _, n := range names {
			out[n] = labels
			if strings.HasSuffix(n, "_bucket") {
				out[n] = append(slices.Clone(labels), "le")
			}
		}
	}
	return out
}
