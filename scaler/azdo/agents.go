package azdo

import (
	"context"
	"fmt"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
)

// Agents lists a pool's agents with their capabilities, assigned request
// and last completed request.
func (c *Client) Agents(ctx context.Context, poolID int) ([]taskagent.TaskAgent, error) {
	var agents *[]taskagent.TaskAgent
	yes := true
	err := c.do(ctx, fmt.Sprintf("list agents of pool %d", poolID), func(ctx context.Context, sdk *taskagent.ClientImpl) (err error) {
		agents, err = sdk.GetAgents(ctx, taskagent.GetAgentsArgs{PoolId: &poolID, IncludeCapabilities: &yes,
			IncludeAssignedRequest: &yes, IncludeLastCompletedRequest: &yes})
		return err
	})
	if err != nil {
		return nil, err
	}
	return *agents, nil
}

// AddAgent registers an agent in a pool, as config.sh does. It is not
// retried within the call: a registration that may have reached Azure
// DevOps is looked for again by the caller's next round.
func (c *Client) AddAgent(ctx context.Context, poolID int, agent taskagent.TaskAgent) (taskagent.TaskAgent, error) {
	var added *taskagent.TaskAgent
	err := c.doAttempts(ctx, fmt.Sprintf("register agent in pool %d", poolID), 1, func(ctx context.Context, sdk *taskagent.ClientImpl) (err error) {
		added, err = sdk.AddAgent(ctx, taskagent.AddAgentArgs{PoolId: &poolID, Agent: &agent})
		return err
	})
	if err != nil {
		return taskagent.TaskAgent{}, err
	}
	return *added, nil
}

// DeleteAgent removes an agent from a pool. It is never retried within the
// call: a failed delete is retried by the caller's next sweep.
func (c *Client) DeleteAgent(ctx context.Context, poolID, agentID int) error {
	return c.doAttempts(ctx, fmt.Sprintf("delete agent %d of pool %d", agentID, poolID), 1, func(ctx context.Context, sdk *taskagent.ClientImpl) error {
		return sdk.DeleteAgent(ctx, taskagent.DeleteAgentArgs{PoolId: &poolID, AgentId: &agentID})
	})
}
