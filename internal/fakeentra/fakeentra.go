// Package fakeentra is a fake Microsoft Entra ID token endpoint for tests:
// the OpenID discovery document and the v2.0 token endpoint's
// client-credentials grant (a client secret, or a client assertion: a
// workload identity's federated token or a certificate's signed JWT), with
// Entra ID's JSON field names and AADSTS error shapes, so that azidentity
// and MSAL run against it unchanged. It serves whatever handler the test
// puts it on (httptest's TLS server: MSAL insists on https).
package fakeentra

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
)

// Server answers for any tenant. Its fields are set before use; the
// methods are safe for concurrent use.
type Server struct {
	// URL is the server's own base URL (https://host:port), for the
	// discovery document.
	URL string
	// ClientID and ClientSecret are the service principal's; a request with
	// a client assertion is accepted when Assertion accepts it.
	ClientID     string
	ClientSecret string
	Assertion    func(assertion string) bool
	// ExpiresIn and RefreshIn are the lifetimes of the tokens issued, in
	// seconds (RefreshIn 0: not sent).
	ExpiresIn, RefreshIn int
	// OnIssue is told each token issued (the fake Azure DevOps accepts it).
	OnIssue func(token string)

	mu      sync.Mutex
	issued  []string
	failing bool
	scopes  []string
}

// SetFailing makes the token endpoint refuse every request (Entra ID's
// invalid_client answer) until SetFailing(false).
func (s *Server) SetFailing(f bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failing = f
}

// Issued is how many tokens the server has issued.
func (s *Server) Issued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.issued)
}

// Tokens lists the tokens the server has issued, for tests that look for
// them where they must not be (logs, errors).
func (s *Server) Tokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.issued...)
}

// Scopes lists the scope of every token request.
func (s *Server) Scopes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.scopes...)
}

// ServeHTTP answers /{tenant}/v2.0/.well-known/openid-configuration and
// POST /{tenant}/oauth2/v2.0/token.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case len(parts) == 4 && parts[1] == "v2.0" && parts[3] == "openid-configuration":
		tenant := parts[0]
		writeJSON(w, http.StatusOK, map[string]any{
			"token_endpoint":         s.URL + "/" + tenant + "/oauth2/v2.0/token",
			"authorization_endpoint": s.URL + "/" + tenant + "/oauth2/v2.0/authorize",
			"issuer":                 s.URL + "/" + tenant + "/v2.0",
		})
	case len(parts) == 4 && parts[1] == "oauth2" && parts[3] == "token" && r.Method == http.MethodPost:
		s.token(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, aadError("invalid_request", "AADSTS900144: malformed body"))
		return
	}
	s.mu.Lock()
	s.scopes = append(s.scopes, r.PostForm.Get("scope"))
	failing := s.failing
	s.mu.Unlock()
	f := r.PostForm
	ok := f.Get("grant_type") == "client_credentials" && f.Get("client_id") == s.ClientID
	switch {
	case f.Get("client_assertion") != "":
		ok = ok && f.Get("client_assertion_type") == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" &&
			s.Assertion != nil && s.Assertion(f.Get("client_assertion"))
	default:
		ok = ok && s.ClientSecret != "" && f.Get("client_secret") == s.ClientSecret
	}
	if failing || !ok {
		writeJSON(w, http.StatusUnauthorized, aadError("invalid_client",
			"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.\r\n"+
				"Trace ID: 00000000-0000-0000-0000-000000000000\r\nCorrelation ID: 00000000-0000-0000-0000-000000000000\r\nTimestamp: 2026-01-01 00:00:00Z"))
		return
	}
	s.mu.Lock()
	tok := fmt.Sprintf("entra-access-token-%d", len(s.issued)+1)
	s.issued = append(s.issued, tok)
	s.mu.Unlock()
	if s.OnIssue != nil {
		s.OnIssue(tok)
	}
	body := map[string]any{"token_type": "Bearer", "expires_in": s.ExpiresIn, "ext_expires_in": s.ExpiresIn, "access_token": tok}
	if s.RefreshIn > 0 {
		body["refresh_in"] = s.RefreshIn
	}
	writeJSON(w, http.StatusOK, body)
}

func aadError(code, description string) map[string]any {
	return map[string]any{"error": code, "error_description": description, "error_codes": []int{7000215},
		"trace_id": "00000000-0000-0000-0000-000000000000", "correlation_id": "00000000-0000-0000-0000-000000000000"}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
