package fakeazdo

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
)

// An agent signs in as itself, not with the PAT it registered with: at
// registration it sends an RSA public key, Azure DevOps answers a client id
// and an authorization URL, and the running agent trades a JWT signed with
// its private key (a client assertion, RS256) for an access token at that
// URL. The fake checks the signature against the registered key.

// tokenPath is the organization's token endpoint, under /{org}/.
const tokenPath = "_apis/oauth2/token"

// authorizeAgent completes an agent's authorization at registration: its
// client id and where it gets tokens.
func (o *Org) authorizeAgent(auth *taskagent.TaskAgentAuthorization) {
	if auth == nil {
		return
	}
	auth.ClientId = ptr(uuid.New())
	auth.AuthorizationUrl = ptr(o.server.url + "/" + strings.ToLower(o.Name) + "/" + tokenPath)
}

// issueAgentToken answers the token endpoint's client-credentials grant.
func (o *Org) issueAgentToken(r *http.Request) (int, []byte) {
	if err := r.ParseForm(); err != nil {
		return oauthError("invalid_request", err.Error())
	}
	if r.PostForm.Get("grant_type") != "client_credentials" ||
		r.PostForm.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
		return oauthError("unsupported_grant_type", "client_credentials with a jwt-bearer client assertion is required")
	}
	o.server.mu.Lock()
	defer o.server.mu.Unlock()
	agent, err := o.verifyAssertion(r.PostForm.Get("client_assertion"))
	if err != nil {
		return oauthError("invalid_client", err.Error())
	}
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	token := "agent-" + hex.EncodeToString(b)
	if o.bearers == nil {
		o.bearers = map[string]bool{}
	}
	o.bearers[token] = true
	o.agentTokens = append(o.agentTokens, *agent.Name)
	return marshal(http.StatusOK, map[string]any{"access_token": token, "token_type": "bearer", "expires_in": 3600})
}

// verifyAssertion checks a client assertion: RS256, issued by and about a
// registered agent's client id, for this token endpoint, not expired, and
// signed with that agent's key.
func (o *Org) verifyAssertion(jwt string) (*taskagent.TaskAgent, error) {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return nil, errors.New("the client assertion is not a JWT")
	}
	var header struct{ Alg string }
	var claims struct {
		Iss, Sub, Aud string
		Exp, Nbf      int64
	}
	for i, v := range []any{&header, &claims} {
		raw, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			return nil, fmt.Errorf("the client assertion's part %d: %w", i+1, err)
		}
		if err := json.Unmarshal(raw, v); err != nil {
			return nil, fmt.Errorf("the client assertion's part %d: %w", i+1, err)
		}
	}
	if header.Alg != "RS256" {
		return nil, fmt.Errorf("the client assertion is signed with %q, not RS256", header.Alg)
	}
	now := time.Now().Unix()
	if claims.Exp < now || claims.Nbf > now+300 {
		return nil, errors.New("the client assertion has expired or is not valid yet")
	}
	if claims.Iss != claims.Sub {
		return nil, errors.New("the client assertion's issuer and subject differ")
	}
	agent := o.agentByClientID(claims.Sub)
	if agent == nil {
		return nil, fmt.Errorf("no agent has client id %s", claims.Sub)
	}
	if claims.Aud != *agent.Authorization.AuthorizationUrl {
		return nil, fmt.Errorf("the client assertion is for %q, not this token endpoint", claims.Aud)
	}
	key := agent.Authorization.PublicKey
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(*key.Modulus), E: int(new(big.Int).SetBytes(*key.Exponent).Int64())}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, err
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig); err != nil {
		return nil, fmt.Errorf("the client assertion's signature is not agent %s's: %w", *agent.Name, err)
	}
	return agent, nil
}

func (o *Org) agentByClientID(id string) *taskagent.TaskAgent {
	for _, p := range o.pools {
		for _, a := range p.agents {
			if a.Authorization != nil && a.Authorization.ClientId != nil && a.Authorization.ClientId.String() == id {
				return a
			}
		}
	}
	return nil
}

func oauthError(code, description string) (int, []byte) {
	b, _ := json.Marshal(map[string]string{"error": code, "error_description": description})
	return http.StatusBadRequest, b
}

// AgentTokens lists the agents, by name, that got an access token with
// their own key, in order.
func (o *Org) AgentTokens() []string {
	o.server.mu.Lock()
	defer o.server.mu.Unlock()
	return append([]string(nil), o.agentTokens...)
}
