package azdo

import (
	"context"
	"net/http"
	"net/url"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
)

// resourceUsageVersion is the version Azure DevOps' own clients ask the
// resource usage route for. The route has no location id the SDK knows, so
// the call names it, on distributedtask's base URL, as those clients do.
const resourceUsageVersion = "5.1-preview.2"

// ResourceUsage reads the organization's parallel jobs of one kind:
// parallelismTag "Private" or "Public", self-hosted (poolIsHosted=false),
// with the requests that hold one (runningRequests).
func (c *Client) ResourceUsage(ctx context.Context, parallelismTag string) (*taskagent.ResourceUsage, error) {
	var out *taskagent.ResourceUsage
	err := c.do(ctx, "read parallel jobs ("+parallelismTag+")", func(ctx context.Context, sdk *taskagent.ClientImpl) error {
		q := url.Values{"parallelismTag": {parallelismTag}, "poolIsHosted": {"false"}, "includeRunningRequests": {"true"}}
		c.mu.Lock()
		base := c.locationURL
		c.mu.Unlock()
		req, err := sdk.Client.CreateRequestMessage(ctx, http.MethodGet, base+"/_apis/distributedtask/resourceusage?"+q.Encode(),
			resourceUsageVersion, nil, "", "application/json", nil)
		if err != nil {
			return err
		}
		resp, err := sdk.Client.SendRequest(req)
		if err != nil {
			return err
		}
		var u taskagent.ResourceUsage
		if err := sdk.Client.UnmarshalBody(resp, &u); err != nil {
			return &Error{Op: "decode parallel jobs", Err: err, Retryable: true, Detail: sanitize(c.secrets, err.Error())}
		}
		out = &u
		return nil
	})
	return out, err
}
