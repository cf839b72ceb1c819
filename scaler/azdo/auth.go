package azdo

import (
	"context"
	"crypto/sha256"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
)

// authorization is the Authorization header of the next call: a PAT's
// changes when its Secret is rotated, an access token's when the token
// source refreshes it before it expires.
func (c *Client) authorization(ctx context.Context) (string, error) {
	if c.token != nil {
		tok, err := c.token.Token(ctx)
		if err != nil {
			return "", &Error{Op: "get an access token", Err: err, Retryable: true, Detail: sanitize(c.secrets, err.Error())}
		}
		c.secrets.AddRotating("access token of "+c.name, tok)
		return "Bearer " + tok, nil
	}
	pat, err := c.pat.PAT()
	if err != nil {
		return "", &Error{Op: "read PAT", Err: err, Detail: sanitize(c.secrets, err.Error())}
	}
	c.secrets.Add(pat)
	return azuredevops.CreateBasicAuthHeaderValue("", pat), nil
}

// sdkClient returns the SDK client for the current PAT or token, building
// it (and, once, discovering distributedtask's location) when needed.
func (c *Client) sdkClient(ctx context.Context) (*taskagent.ClientImpl, error) {
	auth, err := c.authorization(ctx)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(auth))
	c.mu.Lock()
	if c.sdk != nil && c.sdkAuth == sum {
		sdk := c.sdk
		c.mu.Unlock()
		return sdk, nil
	}
	locationURL := c.locationURL
	c.mu.Unlock()

	conn := &azuredevops.Connection{AuthorizationString: auth, BaseUrl: c.url, SuppressFedAuthRedirect: true}
	if locationURL == "" {
		// What taskagent.NewClient does, but on our HTTP client so that these
		// calls are timed, limited and counted like the others.
		areas, err := azuredevops.NewClientWithOptions(conn, c.url, azuredevops.WithHTTPClient(c.http)).GetResourceAreas(ctx)
		if err != nil {
			return nil, err
		}
		locationURL = c.url // on-premises servers answer an empty list
		for _, a := range *areas {
			if a.Id != nil && *a.Id == distributedTaskArea && a.LocationUrl != nil {
				locationURL = normalizeURL(*a.LocationUrl)
			}
		}
	}
	sdk := &taskagent.ClientImpl{Client: *azuredevops.NewClientWithOptions(conn, locationURL, azuredevops.WithHTTPClient(c.http))}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sdk != nil && c.sdkAuth != sum {
		if c.pat != nil {
			c.log.Info("personal access token changed; using the new one")
		} else {
			c.log.Debug("access token refreshed; using the new one")
		}
	}
	c.sdk, c.sdkAuth, c.locationURL = sdk, sum, locationURL
	return sdk, nil
}
