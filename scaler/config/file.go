package config

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/azdo"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/budget"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/entra"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/queue"
	"sigs.k8s.io/yaml"
)

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
	// ParallelJobs is the organization's parallel-job budget: auto (read
	// from Azure DevOps), off, or a number; empty: --parallel-jobs.
	ParallelJobs string `json:"parallelJobs,omitempty"`

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
		if _, err := budget.ParseSetting(cfg.Organizations[i].ParallelJobs); err != nil {
			return nil, fmt.Errorf("%s: organizations[%d] (%s): parallelJobs: %w", file, i, cfg.Organizations[i].URL, err)
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
func (c *File) Allowed(pool queue.Pool, namespace string) bool {
	o := c.find(pool.Org)
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
