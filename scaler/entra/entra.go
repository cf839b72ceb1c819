// Package entra gets Microsoft Entra ID access tokens for Azure DevOps, so
// that an organization needs no personal access token: from the pod's
// federated token (Azure workload identity) or from a service principal's
// secret or certificate. Azure's own identity library (azidentity, over
// MSAL) does the OAuth exchange, caches the token and refreshes it before
// it expires; this package only chooses the credential, keeps it current
// when its Secret is rotated, and keeps its secret out of every error.
package entra

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/azdo"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/secrets"
)

// Scope is Azure DevOps' resource in Microsoft Entra ID (its well-known
// application id), as Microsoft documents it for service principals and
// managed identities.
const Scope = "499b84ac-1321-427f-aa17-267ca6975798/.default"

// The ways an organization authenticates (config key auth).
const (
	WorkloadIdentity = "workload-identity"
	ServicePrincipal = "service-principal"
)

// Options of a token source. Empty fields of a workload identity take the
// variables Azure's workload identity webhook sets in the pod
// (AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE,
// AZURE_AUTHORITY_HOST).
type Options struct {
	Auth     string // WorkloadIdentity or ServicePrincipal
	TenantID string
	ClientID string
	// A service principal's credential: one of the two files. A secret file
	// holds the client secret; a certificate file a PEM certificate with its
	// private key. Both are read again when they change (a rotated Secret).
	ClientSecretFile      string
	ClientCertificateFile string
	// TokenFile is a workload identity's federated token.
	TokenFile string
	// AuthorityHost is Entra ID's address; default the public cloud's (or
	// AZURE_AUTHORITY_HOST). Sovereign clouds and tests set it.
	AuthorityHost string
	// Transport carries the token requests; default azcore's, which uses
	// the proxy and CA settings of the environment. Tests set it.
	Transport policy.Transporter
	// Secrets: the client secret is added, so that no error shows it.
	Secrets *secrets.Set
	// CheckEvery bounds how often the secret or certificate file is read;
	// default 5s.
	CheckEvery time.Duration
}

// Source is an azdo.TokenSource.
type Source struct {
	o Options

	mu        sync.Mutex
	cred      azcore.TokenCredential
	fileSum   [32]byte // of the secret or certificate the credential was built from
	checkedAt time.Time
}

// New checks the options and builds the credential. It makes no request.
func New(o Options) (*Source, error) {
	if o.Secrets == nil {
		o.Secrets = secrets.NewSet()
	}
	if o.CheckEvery <= 0 {
		o.CheckEvery = 5 * time.Second
	}
	// azidentity reads AZURE_AUTHORITY_HOST for the token endpoint but
	// still asks the public cloud's instance discovery about it (which a
	// sovereign or private authority never passes); as the configured
	// authorityHost, it gets both the endpoint and no discovery.
	if o.AuthorityHost == "" {
		o.AuthorityHost = os.Getenv("AZURE_AUTHORITY_HOST")
	}
	if err := o.Check(); err != nil {
		return nil, err
	}
	s := &Source{o: o}
	switch o.Auth {
	case WorkloadIdentity:
		opts := &azidentity.WorkloadIdentityCredentialOptions{ClientOptions: s.clientOptions(),
			ClientID: o.ClientID, TenantID: o.TenantID, TokenFilePath: o.TokenFile, DisableInstanceDiscovery: o.AuthorityHost != ""}
		cred, err := azidentity.NewWorkloadIdentityCredential(opts)
		if err != nil {
			return nil, fmt.Errorf("workload identity: %w (does the pod have the label azure.workload.identity/use: \"true\" and its service account the client-id annotation?)", err)
		}
		s.cred = cred
	case ServicePrincipal:
		if err := s.reloadLocked(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Check tells whether the options fit their auth mode, without reading
// a file or the environment: the configuration's loader calls it too.
func (o Options) Check() error {
	if o.AuthorityHost != "" {
		if u, err := url.Parse(o.AuthorityHost); err != nil || u.Scheme != "https" || u.Host == "" {
			return fmt.Errorf("authorityHost %q is not an https URL", o.AuthorityHost)
		}
	}
	switch o.Auth {
	case WorkloadIdentity:
		if o.ClientSecretFile != "" || o.ClientCertificateFile != "" {
			return errors.New("a workload identity uses the pod's federated token: clientSecretFile and clientCertificateFile are for auth: service-principal")
		}
	case ServicePrincipal:
		switch {
		case o.TenantID == "" || o.ClientID == "":
			return errors.New("a service principal needs tenantId and clientId")
		case (o.ClientSecretFile == "") == (o.ClientCertificateFile == ""):
			return errors.New("a service principal needs exactly one of clientSecretFile and clientCertificateFile")
		case o.TokenFile != "":
			return errors.New("tokenFile is for auth: workload-identity")
		}
	default:
		return fmt.Errorf("auth %q: want %s or %s", o.Auth, WorkloadIdentity, ServicePrincipal)
	}
	return nil
}

// clientOptions: the authority host and transport, and no retries of
// azcore's own: the Azure DevOps client already retries each call with
// backoff, and a token request must fit in one call's timeout.
func (s *Source) clientOptions() azcore.ClientOptions {
	co := azcore.ClientOptions{Retry: policy.RetryOptions{MaxRetries: -1}, Transport: s.o.Transport}
	if s.o.AuthorityHost != "" {
		co.Cloud = cloud.Configuration{ActiveDirectoryAuthorityHost: s.o.AuthorityHost}
	}
	return co
}

// reloadLocked reads the service principal's file and, when it changed,
// builds a new credential from it (with an empty token cache: the next
// Token asks Entra ID with the new secret).
func (s *Source) reloadLocked() error {
	s.checkedAt = time.Now()
	file := s.o.ClientSecretFile + s.o.ClientCertificateFile // exactly one is set
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("reading the service principal's credential: %w", err)
	}
	sum := sha256.Sum256(b)
	if s.cred != nil && sum == s.fileSum {
		return nil
	}
	var cred azcore.TokenCredential
	if s.o.ClientSecretFile != "" {
		secret := strings.TrimSpace(string(b))
		if secret == "" {
			return fmt.Errorf("the client secret file %s is empty", file)
		}
		s.o.Secrets.Add(secret)
		cred, err = azidentity.NewClientSecretCredential(s.o.TenantID, s.o.ClientID, secret,
			&azidentity.ClientSecretCredentialOptions{ClientOptions: s.clientOptions(), DisableInstanceDiscovery: s.o.AuthorityHost != ""})
	} else {
		certs, key, perr := azidentity.ParseCertificates(b, nil)
		if perr != nil {
			return fmt.Errorf("the client certificate file %s: %w", file, perr)
		}
		cred, err = azidentity.NewClientCertificateCredential(s.o.TenantID, s.o.ClientID, certs, key,
			&azidentity.ClientCertificateCredentialOptions{ClientOptions: s.clientOptions(), DisableInstanceDiscovery: s.o.AuthorityHost != ""})
	}
	if err != nil {
		return fmt.Errorf("service principal: %s", s.o.Secrets.Redact(err.Error()))
	}
	s.cred, s.fileSum = cred, sum
	return nil
}

// Token returns a valid access token for Azure DevOps: azidentity's cached
// one, or a new one when it is due for refresh. Its errors name the cause
// (Entra ID's AADSTS code and message) and never a secret or token.
func (s *Source) Token(ctx context.Context) (string, error) {
	s.mu.Lock()
	if s.o.Auth == ServicePrincipal && time.Since(s.checkedAt) >= s.o.CheckEvery {
		if err := s.reloadLocked(); err != nil {
			s.mu.Unlock()
			return "", err
		}
	}
	cred := s.cred
	s.mu.Unlock()
	tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{Scope}})
	if err != nil {
		msg := errors.New(firstLines(s.o.Secrets.Redact(err.Error())))
		// Entra ID answered and refused (a 4xx: wrong secret, unknown
		// client, no such tenant): a verdict on the credential, which makes
		// the scaler unready; anything else (no answer) is an outage.
		var refused *azidentity.AuthenticationFailedError
		if errors.As(err, &refused) && refused.RawResponse != nil && refused.RawResponse.StatusCode >= 400 && refused.RawResponse.StatusCode < 500 {
			return "", fmt.Errorf("%w: %w", azdo.ErrRefused, msg)
		}
		return "", msg
	}
	return tok.Token, nil
}

var (
	responseLine     = regexp.MustCompile(`(?m)^RESPONSE (\d+)`)
	errorDescription = regexp.MustCompile(`"error_description":\s*"([^"]*)"`)
)

// firstLines keeps azidentity's summary, the HTTP status and Entra ID's
// error description (its AADSTS code and message) of azidentity's
// multi-line message, and drops the rest (the raw answer, a link).
func firstLines(text string) string {
	summary, _, _ := strings.Cut(text, "\n")
	out := strings.TrimSpace(summary)
	if m := responseLine.FindStringSubmatch(text); m != nil {
		out += " (HTTP " + m[1] + ")"
	}
	if m := errorDescription.FindStringSubmatch(text); m != nil {
		out += ": " + m[1]
	}
	return out
}
