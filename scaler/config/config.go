// Package config reads the scaler's flags (each with an AZDO_* environment
// variable) and its optional YAML file of organizations.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/azdo"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/entra"
)

// Flags are the command line settings.
type Flags struct {
	ConfigFile string
	OrgURL     string
	PATFile    string
	PAT        string // AZDO_PAT only: a flag would show in `ps`

	GRPCAddr        string
	HTTPAddr        string
	TLSCertFile     string
	TLSKeyFile      string
	TLSClientCAFile string

	ShowVersion bool

	RefreshInterval time.Duration
	MinRefresh      time.Duration
	DemandWait      time.Duration
	StaleAfter      time.Duration
	PollerIdle      time.Duration
	AzdoTimeout     time.Duration
	AzdoQPS         float64

	RoutingWarmup      time.Duration
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
	fs.StringVar(&f.TLSCertFile, "grpc-tls-cert", "", "server certificate for gRPC TLS (KEDA's enableTLS/caCert)")
	fs.StringVar(&f.TLSKeyFile, "grpc-tls-key", "", "server key for gRPC TLS")
	fs.StringVar(&f.TLSClientCAFile, "grpc-tls-client-ca", "", "CA that client certificates must chain to (KEDA's tlsClientCert/tlsClientKey); requires them")
	fs.DurationVar(&f.RefreshInterval, "refresh-interval", 10*time.Second, "how often each pool in use is fetched from Azure DevOps when no call asks sooner")
	fs.DurationVar(&f.MinRefresh, "min-refresh-interval", 2*time.Second, "a call that finds a pool's data older than this refreshes it first, once for all callers (at most one call per pool per interval; cut to --refresh-interval)")
	fs.DurationVar(&f.DemandWait, "refresh-wait", 2*time.Second, "how long a call waits for that refresh before it answers from the data it has")
	fs.DurationVar(&f.StaleAfter, "stale-after", 2*time.Minute, "while Azure DevOps fails, keep answering from data at most this old; then answer Unavailable")
	fs.DurationVar(&f.PollerIdle, "poller-idle-timeout", 10*time.Minute, "stop polling a pool no trigger asked for in this long")
	fs.DurationVar(&f.AzdoTimeout, "azdo-timeout", 10*time.Second, "timeout of one Azure DevOps request")
	fs.Float64Var(&f.AzdoQPS, "azdo-qps", 0, "most Azure DevOps requests per second, per organization; 0: twice the most the pools in use can ask for (pools / --min-refresh-interval), at least 10")
	fs.DurationVar(&f.RoutingWarmup, "routing-warmup", 30*time.Second, "after the first call, count waiting jobs for no trigger this long, while every ScaledJob asks once (set to your longest pollingInterval)")
	fs.IntVar(&f.TriggerForgetPolls, "trigger-forget-polls", 3, "forget a trigger (a deleted ScaledJob) after this many of its polling intervals without a call")
	fs.DurationVar(&f.TriggerForgetMin, "trigger-forget-min", 30*time.Second, "never forget a trigger sooner than this")
	fs.DurationVar(&f.TriggerForgetMax, "trigger-forget-max", 2*time.Minute, "always forget a silent trigger after this")
	fs.DurationVar(&f.SweepInterval, "sweep-interval", 30*time.Second, "how often stale offline agents are removed; 0 disables the sweeper")
	fs.DurationVar(&f.SweepOfflineFor, "sweep-offline-for", 15*time.Minute, "remove an agent only after it has been offline this long")
	fs.DurationVar(&f.SweepFinishedFor, "sweep-finished-for", 30*time.Second, "remove an agent that completed a job (a single-run pod's) after it has been offline this long")
	fs.Var(&f.SweepPools, "sweep-pools", "globs of the self-hosted pools to sweep, listed from Azure DevOps (repeat or comma-separate; default *)")
	fs.StringVar(&f.SweepAgentPattern, "sweep-agent-pattern", "*-?????-?????", "glob of the agent names the sweeper may remove; the default matches KEDA's pod names, <scaledjob>-<5>-<5>")
	fs.Var(&f.SweepProtect, "sweep-protect", "glob of agent names never removed (repeat or comma-separate)")
	fs.IntVar(&f.SweepMaxDeletions, "sweep-max-deletions", 50, "most agents removed per pool per sweep")
	fs.BoolVar(&f.SweepDryRun, "sweep-dry-run", false, "log what the sweeper would remove, remove nothing")
	fs.BoolVar(&f.LeaderElect, "leader-elect", false, "with several replicas, only the holder of a Kubernetes Lease sweeps (in a cluster only)")
	fs.StringVar(&f.Kubeconfig, "kubeconfig", "", "kubeconfig for --leader-elect outside a cluster (default: in-cluster config)")
	fs.StringVar(&f.LeaderElectNS, "leader-elect-namespace", "", "namespace of the Lease (default: the pod's namespace)")
	fs.StringVar(&f.LeaderElectLease, "leader-elect-lease", "azdo-keda-scaler-sweeper", "name of the Lease")
	fs.StringVar(&f.LeaderElectIdentity, "leader-elect-identity", "", "identity in the Lease (default: the host name)")
	fs.BoolVar(&f.Placeholders, "placeholders", true, "keep an offline placeholder agent registered for every pool and agent template in use, so that jobs queue while the pool is at zero")
	fs.BoolVar(&f.PlaceholderDryRun, "placeholder-dry-run", false, "log which placeholders would be registered or removed, change nothing")
	fs.StringVar(&f.PlaceholderPrefix, "placeholder-prefix", "keda", "placeholder agents are named <prefix>-placeholder-<hash>")
	fs.DurationVar(&f.PlaceholderGrace, "placeholder-grace", time.Hour, "remove a placeholder no trigger has needed for this long")
	fs.StringVar(&f.PlaceholderAgentVersion, "placeholder-agent-version", "4.261.0", "the Agent.Version placeholders report (that of your agent image), unless a template lists one")
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
		"command line wins. AZDO_PAT holds the PAT of --org-url (prefer --pat-file).\n\nFlags:\n", fs.Name())
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
	if len(f.SweepPools) == 0 {
		f.SweepPools = stringList{"*"}
	}
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
	if f.RoutingWarmup < 0 {
		errs = append(errs, errors.New("--routing-warmup must not be negative"))
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

// File is the YAML configuration file.
type File struct {
	Organizations []Organization `json:"organizations"`
}

// Organization is one Azure DevOps organization.
type Organization struct {
	// Name is how triggers refer to the organization (metadata key
	// organization); default: the last segment of the URL.
	Name string `json:"name,omitempty"`
	URL  string `json:"url"`
	// Auth is how the scaler signs in: pat (default), workload-identity or
	// service-principal (Microsoft Entra ID tokens, package entra).
	Auth string `json:"auth,omitempty"`
	// PATFile holds the PAT (auth: pat); it is re-read when it changes.
	PATFile string `json:"patFile,omitempty"`
	// Entra ID (auth: workload-identity or service-principal). A workload
	// identity's empty fields come from the webhook's AZURE_* variables.
	TenantID              string `json:"tenantId,omitempty"`
	ClientID              string `json:"clientId,omitempty"`
	ClientSecretFile      string `json:"clientSecretFile,omitempty"`
	ClientCertificateFile string `json:"clientCertificateFile,omitempty"`
	TokenFile             string `json:"tokenFile,omitempty"`
	AuthorityHost         string `json:"authorityHost,omitempty"`
	// AllowedNamespaces restricts which namespaces' triggers may use the
	// organization's pools not listed under pools (globs; empty: all).
	AllowedNamespaces []string `json:"allowedNamespaces,omitempty"`
	Pools             []Pool   `json:"pools,omitempty"`

	pat azdo.PATSource
}

// Pool is a pool listed in the configuration: its allowed namespaces, and
// that it is swept even when no trigger uses it.
type Pool struct {
	Name              string   `json:"name,omitempty"`
	ID                int      `json:"id,omitempty"`
	AllowedNamespaces []string `json:"allowedNamespaces,omitempty"`
}

// PAT is where the organization's token comes from.
func (o *Organization) PAT() azdo.PATSource { return o.pat }

// NormalizedURL is the URL as the SDK uses it.
func (o *Organization) NormalizedURL() string { return strings.ToLower(strings.TrimRight(o.URL, "/")) }

// LoadFile reads and validates a configuration file; unknown fields are errors.
func LoadFile(file string) (*File, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var cfg File
	if err := yaml.UnmarshalStrict(b, &cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	for i := range cfg.Organizations {
		if err := cfg.Organizations[i].checkAuth(); err != nil {
			return nil, fmt.Errorf("%s: organizations[%d] (%s): %w", file, i, cfg.Organizations[i].URL, err)
		}
	}
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return &cfg, nil
}

// Auth modes (key auth of an organization).
const (
	AuthPAT              = "pat"
	AuthWorkloadIdentity = "workload-identity"
	AuthServicePrincipal = "service-principal"
)

// checkAuth checks that the organization's keys fit its auth mode, and
// sets its PAT source for auth: pat.
func (o *Organization) checkAuth() error {
	entraKeys := map[string]string{"tenantId": o.TenantID, "clientId": o.ClientID, "clientSecretFile": o.ClientSecretFile,
		"clientCertificateFile": o.ClientCertificateFile, "tokenFile": o.TokenFile, "authorityHost": o.AuthorityHost}
	switch o.Auth {
	case "", AuthPAT:
		o.Auth = AuthPAT
		if o.PATFile == "" {
			return errors.New("patFile is required (or set auth: workload-identity or service-principal)")
		}
		for _, k := range slices.Sorted(maps.Keys(entraKeys)) {
			if entraKeys[k] != "" {
				return fmt.Errorf("%s is for auth: workload-identity or service-principal, not auth: pat", k)
			}
		}
		o.pat = &azdo.FilePAT{Path: o.PATFile}
	case AuthWorkloadIdentity, AuthServicePrincipal:
		if o.PATFile != "" {
			return fmt.Errorf("patFile is for auth: pat, not auth: %s", o.Auth)
		}
		return o.EntraOptions().Check()
	default:
		return fmt.Errorf("auth %q: want pat, workload-identity or service-principal", o.Auth)
	}
	return nil
}

// EntraOptions are the organization's Entra ID settings (auth:
// workload-identity or service-principal), for package entra.
func (o *Organization) EntraOptions() entra.Options {
	return entra.Options{Auth: o.Auth, TenantID: o.TenantID, ClientID: o.ClientID, ClientSecretFile: o.ClientSecretFile,
		ClientCertificateFile: o.ClientCertificateFile, TokenFile: o.TokenFile, AuthorityHost: o.AuthorityHost}
}

// SingleOrganization is the configuration of --org-url.
func SingleOrganization(orgURL, patFile, pat string) (*File, error) {
	o := Organization{URL: orgURL, PATFile: patFile, Auth: AuthPAT}
	if patFile != "" {
		o.pat = &azdo.FilePAT{Path: patFile}
	} else {
		o.pat = azdo.StaticPAT(pat)
	}
	cfg := &File{Organizations: []Organization{o}}
	return cfg, cfg.validate()
}

// WithPAT builds a one-organization configuration with a given token source
// (the demo and tests).
func WithPAT(name, orgURL string, pat azdo.PATSource) *File {
	return &File{Organizations: []Organization{{Name: name, URL: orgURL, Auth: AuthPAT, pat: pat}}}
}

func (c *File) validate() error {
	if len(c.Organizations) == 0 {
		return errors.New("no organizations configured")
	}
	names := map[string]bool{}
	urls := map[string]bool{}
	for i := range c.Organizations {
		o := &c.Organizations[i]
		u, err := url.Parse(o.URL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("organizations[%d]: url %q is not an http(s) URL", i, o.URL)
		}
		if o.Name == "" {
			o.Name = defaultName(u)
		}
		if names[o.Name] {
			return fmt.Errorf("organizations[%d]: name %q is used twice", i, o.Name)
		}
		if urls[o.NormalizedURL()] {
			return fmt.Errorf("organizations[%d]: url %q is configured twice", i, o.URL)
		}
		names[o.Name], urls[o.NormalizedURL()] = true, true
		for _, g := range o.AllowedNamespaces {
			if _, err := path.Match(g, ""); err != nil {
				return fmt.Errorf("organizations[%d].allowedNamespaces: bad glob %q", i, g)
			}
		}
		for j, p := range o.Pools {
			if (p.Name == "") == (p.ID == 0) {
				return fmt.Errorf("organizations[%d].pools[%d]: set exactly one of name and id", i, j)
			}
			for _, g := range p.AllowedNamespaces {
				if _, err := path.Match(g, ""); err != nil {
					return fmt.Errorf("organizations[%d].pools[%d].allowedNamespaces: bad glob %q", i, j, g)
				}
			}
		}
	}
	return nil
}

// defaultName is ORG of https://dev.azure.com/ORG or https://ORG.visualstudio.com.
func defaultName(u *url.URL) string {
	if p := strings.Trim(u.Path, "/"); p != "" {
		parts := strings.Split(p, "/")
		return parts[len(parts)-1]
	}
	host := u.Hostname()
	if i := strings.IndexByte(host, '.'); i > 0 {
		return host[:i]
	}
	return host
}

// Names lists the organizations (trigger.Organizations).
func (c *File) Names() []string {
	out := make([]string, len(c.Organizations))
	for i, o := range c.Organizations {
		out[i] = o.Name
	}
	return out
}

// URL returns an organization's normalized URL (trigger.Organizations).
func (c *File) URL(name string) (string, bool) {
	if o := c.find(name); o != nil {
		return o.NormalizedURL(), true
	}
	return "", false
}

func (c *File) find(name string) *Organization {
	for i := range c.Organizations {
		if c.Organizations[i].Name == name {
			return &c.Organizations[i]
		}
	}
	return nil
}

// Allowed applies allowedNamespaces (service.Access): the pool's own list
// if it is listed with one, else the organization's, else every namespace.
func (c *File) Allowed(org string, pool azdo.Pool, namespace string) bool {
	o := c.find(org)
	if o == nil {
		return false
	}
	globs := o.AllowedNamespaces
	for _, p := range o.Pools {
		if (p.ID != 0 && p.ID == pool.ID) || (p.Name != "" && strings.EqualFold(p.Name, pool.Name)) {
			if len(p.AllowedNamespaces) > 0 {
				globs = p.AllowedNamespaces
			}
			break
		}
	}
	if len(globs) == 0 {
		return true
	}
	for _, g := range globs {
		if ok, _ := path.Match(g, namespace); ok {
			return true
		}
	}
	return false
}
