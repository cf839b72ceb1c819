// Package config reads the scaler's settings: its flags, each with an
// AZDO_* environment variable (flags.go), and its optional YAML file of
// organizations (file.go). Defaults are the constants of the packages the
// settings belong to; nothing here writes one of its own.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/azdo"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/budget"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/placeholders"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/pools"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/routing"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/scaledjobs"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/sweeper"
)

// Flags are the command line settings.
type Flags struct {
	ConfigFile string
	OrgURL     string
	PATFile    string
	PAT        string // AZDO_PAT only: a flag would show in `ps`

	GRPCAddr        string
	HTTPAddr        string
	StandbyAddr     string
	TLSCertFile     string
	TLSKeyFile      string
	TLSClientCAFile string
	TLSClientNames  stringList

	ShowVersion bool

	RefreshInterval time.Duration
	MinRefresh      time.Duration
	DemandWait      time.Duration
	StaleAfter      time.Duration
	PollerIdle      time.Duration
	AzdoTimeout     time.Duration
	AzdoQPS         float64

	ReadCluster     bool
	ScalerAddresses stringList
	WatchNS         stringList
	StallGrace      time.Duration

	RoutingWarmup      time.Duration
	HoldBehindOlder    time.Duration
	ParallelJobs       string
	TriggerForgetPolls int
	TriggerForgetMin   time.Duration
	TriggerForgetMax   time.Duration

	SweepInterval       time.Duration
	SweepOfflineFor     time.Duration
	SweepFinishedFor    time.Duration
	SweepPools          stringList
	SweepAgentPattern   string
	SweepProtect        stringList
	SweepMaxDeletions   int
	SweepDryRun         bool
	LeaderElect         bool
	Kubeconfig          string
	LeaderElectNS       string
	LeaderElectLease    string
	LeaderElectIdentity string

	Placeholders            bool
	PlaceholderDryRun       bool
	PlaceholderPrefix       string
	PlaceholderGrace        time.Duration
	PlaceholderAgentVersion string

	LogFormat string
	LogLevel  string
	Demo      bool
}

type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			if _, err := path.Match(p, ""); err != nil {
				return fmt.Errorf("bad glob %q: %w", p, err)
			}
			*s = append(*s, p)
		}
	}
	return nil
}

// SweepPoolGlobs are the globs of the pools the sweeper lists from Azure
// DevOps: --sweep-pools, else every pool ("*") unless --read-cluster, where
// the pools ScaledJobs use are swept without listing the organization.
func (f *Flags) SweepPoolGlobs() []string {
	if len(f.SweepPools) == 0 && !f.ReadCluster {
		return []string{"*"}
	}
	return f.SweepPools
}

// EnvName is the environment variable of a flag: --stale-after is AZDO_STALE_AFTER.
func EnvName(flagName string) string {
	return "AZDO_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// NewFlagSet defines every flag on a new flag set.
func NewFlagSet(name string, f *Flags) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.StringVar(&f.ConfigFile, "config", "", "YAML file of organizations (several organizations, per-pool allowed namespaces); instead of --org-url")
	fs.StringVar(&f.OrgURL, "org-url", "", "URL of the one Azure DevOps organization, e.g. https://dev.azure.com/contoso")
	fs.StringVar(&f.PATFile, "pat-file", "", "file holding the organization's PAT, re-read when it changes (or set AZDO_PAT)")
	fs.StringVar(&f.GRPCAddr, "grpc-addr", ":6000", "address of the KEDA external scaler gRPC service")
	fs.StringVar(&f.HTTPAddr, "http-addr", ":8080", "address of /metrics, /healthz and /readyz")
	fs.StringVar(&f.StandbyAddr, "standby-addr", ":8081", "with --read-cluster: address of /api/v1/standby, which agent pods ask at their idle timeout whether they stay as standby agents (it answers and changes nothing); empty: off, idle pods leave")
	fs.StringVar(&f.TLSCertFile, "grpc-tls-cert", "", "server certificate for gRPC TLS (KEDA's enableTLS/caCert)")
	fs.StringVar(&f.TLSKeyFile, "grpc-tls-key", "", "server key for gRPC TLS")
	fs.StringVar(&f.TLSClientCAFile, "grpc-tls-client-ca", "", "CA that client certificates must chain to (KEDA's tlsClientCert/tlsClientKey); requires them")
	fs.Var(&f.TLSClientNames, "grpc-tls-client-name", "with --grpc-tls-client-ca: the client certificate's common name or a DNS name must be one of these (repeat or comma-separate)")
	fs.DurationVar(&f.RefreshInterval, "refresh-interval", pools.DefaultRefreshInterval, "how often each pool in use is fetched from Azure DevOps when no call asks sooner")
	fs.DurationVar(&f.MinRefresh, "min-refresh-interval", pools.DefaultMinRefresh, "a call that finds a pool's data older than this refreshes it first, once for all callers (at most one call per pool per interval; cut to --refresh-interval)")
	fs.DurationVar(&f.DemandWait, "refresh-wait", pools.DefaultDemandWait, "how long a call waits for that refresh before it answers from the data it has")
	fs.DurationVar(&f.StaleAfter, "stale-after", pools.DefaultStaleAfter, "while Azure DevOps fails, keep answering from data at most this old; then answer Unavailable")
	fs.DurationVar(&f.PollerIdle, "poller-idle-timeout", pools.DefaultIdleAfter, "stop polling a pool no trigger asked for in this long")
	fs.DurationVar(&f.AzdoTimeout, "azdo-timeout", azdo.DefaultTimeout, "timeout of one Azure DevOps request")
	fs.Float64Var(&f.AzdoQPS, "azdo-qps", 0, "most Azure DevOps requests per second, per organization; 0: twice the most the pools in use can ask for (pools / --min-refresh-interval), at least 10")
	fs.BoolVar(&f.ReadCluster, "read-cluster", false, "read the ScaledJobs and their pods from the Kubernetes API (list/watch; in a cluster, or --kubeconfig): triggers are the ScaledJobs' whose scalerAddress is one of --scaler-address, calls from anything else are refused, agents belong to the ScaledJob whose pod they are named after")
	fs.Var(&f.ScalerAddresses, "scaler-address", "with --read-cluster: an address ScaledJobs reach this scaler at, as written in scalerAddress, e.g. azdo-keda-scaler.keda.svc:6000 (repeat or comma-separate)")
	fs.DurationVar(&f.StallGrace, "stall-grace", scaledjobs.DefaultStallGrace, "with --read-cluster: a ScaledJob one of whose Jobs has had no pod that can start (none created, unschedulable, image or config errors) for this long is stalled: its waiting jobs go to the next template that can run them")
	fs.Var(&f.WatchNS, "watch-namespaces", "with --read-cluster: read only these namespaces (repeat or comma-separate; default: the whole cluster)")
	fs.DurationVar(&f.RoutingWarmup, "routing-warmup", routing.DefaultWarmup, "after the first call, count waiting jobs for no trigger this long, while every ScaledJob asks once (set to your longest pollingInterval)")
	fs.DurationVar(&f.HoldBehindOlder, "hold-behind-older", routing.DefaultHoldBehindOlder, "hold a waiting job's count while an older waiting job its template can also run waits for another template's pod, at most while that job is younger than this (Azure DevOps gives a free agent the oldest job it can run); 0: never")
	fs.StringVar(&f.ParallelJobs, "parallel-jobs", "auto", "each organization's budget of self-hosted parallel jobs, unless its configuration sets parallelJobs: auto (read from Azure DevOps once per --refresh-interval; waiting jobs beyond the free ones start no pod), off, or a fixed number")
	fs.IntVar(&f.TriggerForgetPolls, "trigger-forget-polls", routing.DefaultForgetAfterPolls, "forget a trigger (a deleted ScaledJob) after this many of its polling intervals without a call")
	fs.DurationVar(&f.TriggerForgetMin, "trigger-forget-min", routing.DefaultForgetMin, "never forget a trigger sooner than this")
	fs.DurationVar(&f.TriggerForgetMax, "trigger-forget-max", routing.DefaultForgetMax, "always forget a silent trigger after this")
	fs.DurationVar(&f.SweepInterval, "sweep-interval", sweeper.DefaultInterval, "how often stale offline agents are removed; 0 disables the sweeper")
	fs.DurationVar(&f.SweepOfflineFor, "sweep-offline-for", sweeper.DefaultOfflineFor, "remove an agent only after it has been offline this long")
	fs.DurationVar(&f.SweepFinishedFor, "sweep-finished-for", sweeper.DefaultFinishedFor, "remove an agent that completed a job (a single-run pod's) after it has been offline this long")
	fs.Var(&f.SweepPools, "sweep-pools", "globs of the self-hosted pools to sweep, listed from Azure DevOps at every sweep (repeat or comma-separate); default: * without --read-cluster, and with it only the pools ScaledJobs use (no listing of the organization)")
	fs.StringVar(&f.SweepAgentPattern, "sweep-agent-pattern", sweeper.DefaultPattern, "glob of the agent names the sweeper may remove; the default matches KEDA's pod names, <scaledjob>-<5>-<5>")
	fs.Var(&f.SweepProtect, "sweep-protect", "glob of agent names never removed (repeat or comma-separate)")
	fs.IntVar(&f.SweepMaxDeletions, "sweep-max-deletions", sweeper.DefaultMaxDeletions, "most agents removed per pool per sweep")
	fs.BoolVar(&f.SweepDryRun, "sweep-dry-run", false, "log what the sweeper would remove, remove nothing")
	fs.BoolVar(&f.LeaderElect, "leader-elect", false, "with several replicas, only the holder of a Kubernetes Lease sweeps (in a cluster only)")
	fs.StringVar(&f.Kubeconfig, "kubeconfig", "", "kubeconfig for --leader-elect outside a cluster (default: in-cluster config)")
	fs.StringVar(&f.LeaderElectNS, "leader-elect-namespace", "", "namespace of the Lease (default: the pod's namespace)")
	fs.StringVar(&f.LeaderElectLease, "leader-elect-lease", "azdo-keda-scaler-sweeper", "name of the Lease")
	fs.StringVar(&f.LeaderElectIdentity, "leader-elect-identity", "", "identity in the Lease (default: the host name)")
	fs.BoolVar(&f.Placeholders, "placeholders", true, "keep an offline placeholder agent registered for every pool and agent template in use, so that jobs queue while the pool is at zero")
	fs.BoolVar(&f.PlaceholderDryRun, "placeholder-dry-run", false, "log which placeholders would be registered or removed, change nothing")
	fs.StringVar(&f.PlaceholderPrefix, "placeholder-prefix", placeholders.DefaultPrefix, "placeholder agents are named <prefix>-placeholder-<hash>")
	fs.DurationVar(&f.PlaceholderGrace, "placeholder-grace", placeholders.DefaultGrace, "remove a placeholder no trigger has needed for this long")
	fs.StringVar(&f.PlaceholderAgentVersion, "placeholder-agent-version", placeholders.DefaultAgentVersion, "the Agent.Version placeholders report (that of your agent image), unless a template lists one")
	fs.StringVar(&f.LogFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&f.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.BoolVar(&f.Demo, "demo", false, "run against an embedded simulated organization (no Azure account needed)")
	fs.BoolVar(&f.ShowVersion, "version", false, "print the version and exit")
	fs.Usage = func() { usage(fs) }
	return fs
}

// usage lists every flag with its environment variable.
func usage(fs *flag.FlagSet) {
	out := fs.Output()
	fmt.Fprintf(out, "Usage: %s [flags]\n\n"+
		"A KEDA external scaler for Azure Pipelines agent pools, with a sweeper of stale offline agents.\n"+
		"Every flag can also be set through the environment variable shown under it; a flag on the\n"+
		"command line wins. AZDO_PAT holds the PAT of --org-url (prefer --pat-file).\n\n"+
		"  %s tls-secrets --help   the Secrets of mutual TLS with KEDA, without Helm\n\nFlags:\n", fs.Name(), fs.Name())
	fs.VisitAll(func(fl *flag.Flag) {
		kind, text := flag.UnquoteUsage(fl)
		fmt.Fprintf(out, "  --%s", fl.Name)
		if kind != "" {
			fmt.Fprintf(out, " %s", kind)
		}
		fmt.Fprintf(out, "\n      %s", text)
		if fl.DefValue != "" && fl.DefValue != "0" && fl.DefValue != "false" && fl.DefValue != "[]" {
			fmt.Fprintf(out, " (default %s)", fl.DefValue)
		}
		if fl.Name != "version" {
			fmt.Fprintf(out, "\n      env %s", EnvName(fl.Name))
		}
		fmt.Fprintln(out)
	})
}

// Parse parses args, then takes each flag not given on the command line
// from its AZDO_* environment variable.
func Parse(name string, args []string, getenv func(string) string, stderr io.Writer) (*Flags, error) {
	f := &Flags{}
	fs := NewFlagSet(name, f)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if f.ShowVersion {
		return f, nil
	}
	given := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { given[fl.Name] = true })
	var envErr error
	fs.VisitAll(func(fl *flag.Flag) {
		if given[fl.Name] || envErr != nil || fl.Name == "version" {
			return
		}
		if v, ok := lookup(getenv, EnvName(fl.Name)); ok {
			if err := fs.Set(fl.Name, v); err != nil {
				envErr = fmt.Errorf("%s: %w", EnvName(fl.Name), err)
			}
		}
	})
	if envErr != nil {
		return nil, envErr
	}
	f.PAT = getenv("AZDO_PAT")
	return f, f.validate()
}

func lookup(getenv func(string) string, k string) (string, bool) {
	v := getenv(k)
	return v, v != ""
}

func (f *Flags) validate() error {
	var errs []error
	if f.RefreshInterval < time.Second {
		errs = append(errs, errors.New("--refresh-interval must be at least 1s"))
	}
	if f.MinRefresh < 100*time.Millisecond || f.DemandWait <= 0 {
		errs = append(errs, errors.New("--min-refresh-interval must be at least 100ms, and --refresh-wait positive"))
	}
	if f.StaleAfter < f.RefreshInterval {
		errs = append(errs, errors.New("--stale-after must be at least --refresh-interval"))
	}
	if f.AzdoQPS < 0 {
		errs = append(errs, errors.New("--azdo-qps must not be negative (0: automatic)"))
	}
	if f.AzdoTimeout <= 0 || f.AzdoTimeout >= f.StaleAfter {
		errs = append(errs, errors.New("--azdo-timeout must be positive and shorter than --stale-after, so that a failure's cause is known before the data is stale"))
	}
	if f.ReadCluster && len(f.ScalerAddresses) == 0 {
		errs = append(errs, errors.New("--read-cluster needs --scaler-address: the addresses ScaledJobs reach this scaler at"))
	}
	if f.StallGrace <= 0 {
		errs = append(errs, errors.New("--stall-grace must be positive"))
	}
	if !f.ReadCluster && (len(f.ScalerAddresses) > 0 || len(f.WatchNS) > 0) {
		errs = append(errs, errors.New("--scaler-address and --watch-namespaces apply only with --read-cluster"))
	}
	if f.RoutingWarmup < 0 {
		errs = append(errs, errors.New("--routing-warmup must not be negative"))
	}
	if _, err := budget.ParseSetting(f.ParallelJobs); err != nil {
		errs = append(errs, fmt.Errorf("--parallel-jobs: %w", err))
	}
	if f.HoldBehindOlder < 0 {
		errs = append(errs, errors.New("--hold-behind-older must not be negative"))
	}
	if f.TriggerForgetPolls < 1 || f.TriggerForgetMin <= 0 || f.TriggerForgetMax < f.TriggerForgetMin {
		errs = append(errs, errors.New("--trigger-forget-polls must be at least 1, and --trigger-forget-max at least --trigger-forget-min (> 0)"))
	}
	if f.SweepInterval < 0 || f.SweepOfflineFor < 0 || f.SweepMaxDeletions < 0 {
		errs = append(errs, errors.New("--sweep-interval, --sweep-offline-for and --sweep-max-deletions must not be negative"))
	}
	if f.SweepFinishedFor < 0 || f.PlaceholderGrace <= 0 {
		errs = append(errs, errors.New("--sweep-finished-for must not be negative and --placeholder-grace must be positive"))
	}
	if !placeholderPrefix.MatchString(f.PlaceholderPrefix) {
		errs = append(errs, fmt.Errorf("--placeholder-prefix %q: 1 to 30 lower-case letters, digits and dashes", f.PlaceholderPrefix))
	}
	if _, err := path.Match(f.SweepAgentPattern, ""); err != nil || f.SweepAgentPattern == "" {
		errs = append(errs, fmt.Errorf("--sweep-agent-pattern %q is not a glob", f.SweepAgentPattern))
	}
	if (f.TLSCertFile == "") != (f.TLSKeyFile == "") {
		errs = append(errs, errors.New("--grpc-tls-cert and --grpc-tls-key go together"))
	}
	if f.TLSClientCAFile != "" && f.TLSCertFile == "" {
		errs = append(errs, errors.New("--grpc-tls-client-ca needs --grpc-tls-cert and --grpc-tls-key"))
	}
	if len(f.TLSClientNames) > 0 && f.TLSClientCAFile == "" {
		errs = append(errs, errors.New("--grpc-tls-client-name needs --grpc-tls-client-ca"))
	}
	if f.LogFormat != "text" && f.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("--log-format must be text or json, not %q", f.LogFormat))
	}
	if !f.Demo {
		switch {
		case f.ConfigFile != "" && f.OrgURL != "":
			errs = append(errs, errors.New("set either --config or --org-url, not both"))
		case f.ConfigFile == "" && f.OrgURL == "":
			errs = append(errs, errors.New("set --org-url (with --pat-file or AZDO_PAT), --config, or --demo"))
		case f.OrgURL != "" && f.PATFile == "" && f.PAT == "":
			errs = append(errs, errors.New("--org-url needs --pat-file or AZDO_PAT"))
		}
	}
	return errors.Join(errs...)
}

var placeholderPrefix = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,29}$`)
