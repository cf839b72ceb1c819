package status

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ExplainCommandName is the subcommand that asks a running scaler why
// jobs wait: `azdo-keda-scaler explain --namespace team-a`.
const ExplainCommandName = "explain"

// Explain runs `azdo-keda-scaler explain [flags]`: it reads /api/v1/jobs
// of a running scaler (through `kubectl port-forward`, or in its pod with
// `kubectl exec`) and prints, per pool, each job with who counts it and
// why.
func Explain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("azdo-keda-scaler "+ExplainCommandName, flag.ContinueOnError)
	fs.SetOutput(stderr)
	base := fs.String("url", "http://127.0.0.1:8080", "the scaler's HTTP address (--http-addr)")
	var f Filter
	fs.StringVar(&f.Namespace, "namespace", "", "only the pools ScaledJobs of this namespace use")
	fs.StringVar(&f.Organization, "organization", "", "only this organization's pools")
	fs.StringVar(&f.Pool, "pool", "", "only this pool (name or id)")
	fs.StringVar(&f.Run, "run", "", "only jobs whose pipeline, run or job name contains this, or with this request id")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the answer")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	u, err := url.Parse(strings.TrimRight(*base, "/") + "/api/v1/jobs")
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--url %q is not an http(s) address", *base)
	}
	u.RawQuery = f.Query().Encode()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("asking the scaler: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the scaler answered %s", resp.Status)
	}
	var p Page
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		return fmt.Errorf("reading the scaler's answer: %w", err)
	}
	return printExplanation(stdout, p)
}

func printExplanation(w io.Writer, p Page) error {
	if len(p.Pools) == 0 {
		_, err := fmt.Fprintln(w, "No pool in use matches on this replica: a pool is polled once a KEDA trigger asks about it. "+
			"With several replicas and without --read-cluster, ask the replica KEDA calls.")
		return err
	}
	var b strings.Builder
	for _, pool := range p.Pools {
		fmt.Fprintf(&b, "%s / %s (pool %d): %d waiting, %d running, data %s old\n", pool.Organization, pool.Name, pool.ID, pool.Waiting, pool.Running, pool.Age)
		if pool.Problem != "" {
			fmt.Fprintf(&b, "  refreshing this pool fails: %s\n", pool.Problem)
		}
		for _, t := range pool.Triggers {
			fmt.Fprintf(&b, "  ScaledJob %s (%s, %s) counts %d", t.Label, t.Filter, t.Routing, t.Count)
			if t.Stalled != "" {
				fmt.Fprintf(&b, "; its pods cannot start: %s", t.Stalled)
			}
			if sb := t.Standby; sb != nil {
				fmt.Fprintf(&b, "; keeps %d standby agent(s) (%s), %d idle at the last question, %d job(s) found one ready", sb.Wanted, sb.Why, sb.Ready, sb.Used)
			}
			b.WriteString("\n")
		}
		if len(pool.Jobs) == 0 {
			b.WriteString("  no unfinished job matches\n")
		}
		for _, j := range pool.Jobs {
			name := fmt.Sprintf("request %d", j.ID)
			if j.Pipeline != "" {
				name = fmt.Sprintf("%s %s / %s (request %d)", j.Pipeline, j.Run, j.Job, j.ID)
			}
			fmt.Fprintf(&b, "  - %s: %s", name, j.State)
			if j.For != "" {
				fmt.Fprintf(&b, " for %s", j.For)
			}
			fmt.Fprintf(&b, "\n      %s\n", j.Why)
			if j.URL != "" {
				fmt.Fprintf(&b, "      %s\n", j.URL)
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
