package azdo

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/google/uuid"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
)

// The job requests resource has no typed call in the SDK; its location id
// and route are those Azure DevOps publishes (see the fake's OPTIONS answer).
var (
	jobRequestsLocation = uuid.MustParse("fc825784-c92a-4299-9221-998a02d1b54f")
	distributedTaskArea = uuid.MustParse("a85b8835-c1a1-4aac-ae97-1c3d0ba72dbd")
)

// UnfinishedJobRequests lists a pool's job requests that have no result yet
// (queued and running), with the demands and matched agents of each.
//
// It asks for completedRequestCount=0 instead of KEDA's $top=250: the answer
// holds every unfinished request and no finished one, however busy the pool,
// and it keeps matchedAgents, which $top drops.
func (c *Client) UnfinishedJobRequests(ctx context.Context, poolID int) ([]taskagent.TaskAgentJobRequest, error) {
	return c.jobRequests(ctx, poolID, 0)
}

// FinishedJobRequests lists a pool's unfinished job requests and its n most
// recent finished ones (completedRequestCount=n): the pool's history, which
// standby auto rebuilds its forecast from after a restart. One call per
// pool and restart; the answer is large (about 1 KiB per request).
func (c *Client) FinishedJobRequests(ctx context.Context, poolID, n int) ([]taskagent.TaskAgentJobRequest, error) {
	return c.jobRequests(ctx, poolID, n)
}

func (c *Client) jobRequests(ctx context.Context, poolID, completed int) ([]taskagent.TaskAgentJobRequest, error) {
	var out []taskagent.TaskAgentJobRequest
	err := c.do(ctx, fmt.Sprintf("list job requests of pool %d", poolID), func(ctx context.Context, sdk *taskagent.ClientImpl) error {
		resp, err := sdk.Client.Send(ctx, http.MethodGet, jobRequestsLocation, apiVersion,
			map[string]string{"poolId": strconv.Itoa(poolID)}, url.Values{"completedRequestCount": {strconv.Itoa(completed)}},
			nil, "", "application/json", nil)
		if err != nil {
			return err
		}
		out = nil
		if err := sdk.Client.UnmarshalCollectionBody(resp, &out); err != nil {
			return &Error{Op: "decode job requests", Err: err, Retryable: true, Detail: sanitize(c.secrets, err.Error())}
		}
		return nil
	})
	return out, err
}
