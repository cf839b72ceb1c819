package azdo

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/queue"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
)

// PoolByName finds a pool by its name.
func (c *Client) PoolByName(ctx context.Context, name string) (queue.Pool, error) {
	var pools *[]taskagent.TaskAgentPool
	err := c.do(ctx, "get pool "+strconv.Quote(name), func(ctx context.Context, sdk *taskagent.ClientImpl) (err error) {
		pools, err = sdk.GetAgentPools(ctx, taskagent.GetAgentPoolsArgs{PoolName: &name})
		return err
	})
	if err != nil {
		return queue.Pool{}, err
	}
	var found []queue.Pool
	for _, p := range *pools {
		if p.Id != nil && p.Name != nil && strings.EqualFold(*p.Name, name) {
			found = append(found, c.pool(*p.Id, *p.Name))
		}
	}
	switch len(found) {
	case 0:
		return queue.Pool{}, fmt.Errorf("agent pool %q: %w in organization %s", name, ErrNotFound, c.name)
	case 1:
		return found[0], nil
	default:
		return queue.Pool{}, fmt.Errorf("agent pool name %q matches %d pools in organization %s; use poolID", name, len(found), c.name)
	}
}

// CheckCredential makes one cheap call (a pool list filtered to a name no
// pool has) to learn whether Azure DevOps accepts the credential:
// errors.Is(err, ErrRefused) when it does not.
func (c *Client) CheckCredential(ctx context.Context) error {
	name := "azdo-keda-scaler credential check"
	return c.do(ctx, "check the credential", func(ctx context.Context, sdk *taskagent.ClientImpl) error {
		_, err := sdk.GetAgentPools(ctx, taskagent.GetAgentPoolsArgs{PoolName: &name})
		return err
	})
}

// PoolByID finds a pool by its id.
func (c *Client) PoolByID(ctx context.Context, id int) (queue.Pool, error) {
	var pool *taskagent.TaskAgentPool
	err := c.do(ctx, "get pool "+strconv.Itoa(id), func(ctx context.Context, sdk *taskagent.ClientImpl) (err error) {
		pool, err = sdk.GetAgentPool(ctx, taskagent.GetAgentPoolArgs{PoolId: &id})
		return err
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return queue.Pool{}, fmt.Errorf("agent pool %d: %w in organization %s", id, ErrNotFound, c.name)
		}
		return queue.Pool{}, err
	}
	if pool.Id == nil || pool.Name == nil {
		return queue.Pool{}, &Error{Op: "get pool " + strconv.Itoa(id), Err: errors.New("the answer has no pool id or name"), Retryable: true}
	}
	return c.pool(*pool.Id, *pool.Name), nil
}

// SelfHostedPools lists the organization's self-hosted agent pools
// (automation pools, not Microsoft-hosted ones).
func (c *Client) SelfHostedPools(ctx context.Context) ([]queue.Pool, error) {
	var pools *[]taskagent.TaskAgentPool
	automation := taskagent.TaskAgentPoolTypeValues.Automation
	err := c.do(ctx, "list agent pools", func(ctx context.Context, sdk *taskagent.ClientImpl) (err error) {
		pools, err = sdk.GetAgentPools(ctx, taskagent.GetAgentPoolsArgs{PoolType: &automation})
		return err
	})
	if err != nil {
		return nil, err
	}
	var out []queue.Pool
	for _, p := range *pools {
		if p.Id == nil || p.Name == nil {
			return nil, &Error{Op: "list agent pools", Err: errors.New("a pool in the answer has no id or name"), Retryable: true}
		}
		if p.IsHosted != nil && *p.IsHosted {
			continue
		}
		out = append(out, c.pool(*p.Id, *p.Name))
	}
	return out, nil
}

// pool is a pool of this client's organization.
func (c *Client) pool(id int, name string) queue.Pool {
	return queue.Pool{Key: queue.Key{Org: c.name, ID: id}, Name: name}
}
