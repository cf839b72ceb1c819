package fakeazdo

import (
	"github.com/google/uuid"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7"
)

// Well-known ids of Azure DevOps' REST resources.
var (
	distributedTaskArea = uuid.MustParse("a85b8835-c1a1-4aac-ae97-1c3d0ba72dbd")
	locationArea        = uuid.MustParse("00d9565f-ed9c-4a06-9a50-00e7896ccab4")
)

type location struct {
	id, area, resource, route, min, max, released string
	resourceVersion                               int
}

// locations are the routes the SDK discovers with OPTIONS _apis; ids,
// templates and versions are those of Azure DevOps Services.
var locations = []location{
	{"e81700f7-3be2-46de-8624-2eb35882fcaa", "Location", "ResourceAreas", "_apis/{resource}/{areaId}", "3.2", "7.2", "0.0", 1},
	{"a8c47e17-4d56-4a56-92bb-de7ea7dc65be", "distributedtask", "pools", "_apis/{area}/{resource}/{poolId}", "3.0", "7.2", "7.1", 1},
	{"e298ef32-5878-4cab-993c-043836571f42", "distributedtask", "agents", "_apis/{area}/pools/{poolId}/{resource}/{agentId}", "3.0", "7.2", "7.1", 1},
	{"fc825784-c92a-4299-9221-998a02d1b54f", "distributedtask", "jobrequests", "_apis/{area}/pools/{poolId}/{resource}/{requestId}", "3.0", "7.2", "0.0", 1},
	{"134e239e-2df3-4794-a6f6-24f1f19ec8dc", "distributedtask", "sessions", "_apis/{area}/pools/{poolId}/{resource}/{sessionId}", "3.0", "7.2", "0.0", 1},
	{"c3a054f6-7a8a-49c0-944e-3a8e5d7adfd7", "distributedtask", "messages", "_apis/{area}/pools/{poolId}/{resource}/{messageId}", "3.0", "7.2", "0.0", 1},
	{"8ffcd551-079c-493a-9c02-54346299d144", "distributedtask", "packages", "_apis/{area}/{resource}/{packageType}/{platform}/{version}", "1.0", "6.0", "5.1", 2},
}

func locationFor(ep Endpoint) location {
	name := map[Endpoint]string{ResourceAreas: "ResourceAreas", Pools: "pools", Pool: "pools", Agents: "agents", DeleteAgent: "agents",
		AddAgent: "agents", JobRequests: "jobrequests", UpdateRequest: "jobrequests", CreateSession: "sessions", DeleteSession: "sessions",
		Messages: "messages", DeleteMessage: "messages", AgentPackages: "packages"}[ep]
	for _, l := range locations {
		if l.resource == name {
			return l
		}
	}
	return locations[0]
}

func locationList() []azuredevops.ApiResourceLocation {
	out := make([]azuredevops.ApiResourceLocation, 0, len(locations))
	for _, l := range locations {
		id := uuid.MustParse(l.id)
		out = append(out, azuredevops.ApiResourceLocation{Id: &id, Area: ptr(l.area), ResourceName: ptr(l.resource),
			RouteTemplate: ptr(l.route), ResourceVersion: ptr(l.resourceVersion), MinVersion: ptr(l.min),
			MaxVersion: ptr(l.max), ReleasedVersion: ptr(l.released)})
	}
	return out
}
