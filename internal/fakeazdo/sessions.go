package fakeazdo

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
)

// What a running agent does, as the Azure Pipelines agent's listener does
// it: open a session (the agent is online while it lasts), long-poll
// messages (a job arrives as a PipelineAgentJobRequest), delete each
// message it took, renew its job request's lock and finish it with a
// result, and close the session (offline). Jobs are dispatched when an
// agent polls, the way Azure DevOps hands a job to a listening agent.

// JobMessageType is the message type of a job for the agent.
const JobMessageType = "PipelineAgentJobRequest"

// MessagePollTimeout is how long a message poll waits for a job before it
// answers that there is none (Azure DevOps waits about 50 seconds).
var MessagePollTimeout = 20 * time.Second

// JobMessage is the body of a PipelineAgentJobRequest message: the fields
// of the agent's AgentJobRequestMessage the stand-in agent uses, under
// their real names. Each step is a CmdLine task whose inputs.script runs;
// a container job names its container's alias in jobContainer and the
// container among the resources, as Azure Pipelines does.
type JobMessage struct {
	MessageType    string       `json:"messageType"`
	Plan           JobPlan      `json:"plan"`
	JobID          uuid.UUID    `json:"jobId"`
	JobDisplayName string       `json:"jobDisplayName"`
	JobName        string       `json:"jobName"`
	RequestID      uint64       `json:"requestId"`
	LockedUntil    time.Time    `json:"lockedUntil"`
	JobContainer   string       `json:"jobContainer,omitempty"`
	Resources      JobResources `json:"resources"`
	Steps          []TaskStep   `json:"steps"`
}

// JobResources are the resources a job uses (here only containers).
type JobResources struct {
	Containers []ContainerResource `json:"containers"`
}

// ContainerResource is a container of the job: its alias and properties
// (image; localimage when it is not to be pulled).
type ContainerResource struct {
	Alias      string         `json:"alias"`
	Properties map[string]any `json:"properties"`
}

// jobContainerAlias is the job container's alias, as if the pipeline had
// `resources: containers: - container: build` and `container: build`.
const jobContainerAlias = "build"

// JobPlan identifies the pipeline run a job belongs to.
type JobPlan struct {
	PlanType string    `json:"planType"`
	PlanID   uuid.UUID `json:"planId"`
}

// TaskStep is one step of a job.
type TaskStep struct {
	Type        string            `json:"type"`
	Name        string            `json:"name"`
	DisplayName string            `json:"displayName"`
	Inputs      map[string]string `json:"inputs"`
}

// session is an open agent session.
type session struct {
	id            uuid.UUID
	agent         *taskagent.TaskAgent
	nextMessage   uint64
	polls         int                         // message polls in progress
	lastPoll      time.Time                   // when the last one ended
	pending       *taskagent.TaskAgentMessage // delivered, not deleted yet
	deliveredJobs map[uint64]bool
}

// JobLockDuration is how long a job request stays locked to its agent
// without a renewal; past it the job fails, as Azure DevOps fails a job
// whose agent stopped responding.
var JobLockDuration = 5 * time.Minute

// SessionTimeout is how long a session lives without a message poll; then
// the agent is offline, as Azure DevOps marks an agent offline when its
// listener is gone.
var SessionTimeout = 2 * time.Minute

// expireLocked ends the sessions nobody polls and fails the jobs whose
// agent stopped renewing their lock.
func (o *Org) expireLocked(p *pool) {
	now := time.Now()
	for id, s := range o.sessions {
		if s.polls == 0 && now.Sub(s.lastPoll) > SessionTimeout && p.findAgent(*s.agent.Id) == s.agent {
			delete(o.sessions, id)
			setStatus(s.agent, false, time.Now().UTC())
		}
	}
	for _, r := range p.requests {
		if r.Result == nil && r.ReservedAgent != nil && r.LockedUntil != nil && now.After(r.LockedUntil.Time) {
			o.finishLocked(p, r, taskagent.TaskResultValues.Failed)
		}
	}
}

func (o *Org) createSession(p *pool, r *http.Request) (int, []byte) {
	var in taskagent.TaskAgentSession
	if err := decodeBody(r, &in); err != nil {
		return errorBody(http.StatusBadRequest, "InvalidRequestException", "The request body is not a TaskAgentSession: "+err.Error())
	}
	if in.Agent == nil || in.Agent.Id == nil {
		return errorBody(http.StatusBadRequest, "ArgumentException", "The session's agent is required.")
	}
	a := p.findAgent(*in.Agent.Id)
	if a == nil {
		return errorBody(http.StatusNotFound, "TaskAgentNotFoundException", fmt.Sprintf("Agent %d was not found in pool %d.", *in.Agent.Id, *p.info.Id))
	}
	for _, s := range o.sessions {
		if s.agent == a {
			return errorBody(http.StatusConflict, "TaskAgentSessionConflictException",
				fmt.Sprintf("A session for agent %s already exists.", *a.Name))
		}
	}
	// The listener sends the capabilities it finds at start; Azure DevOps
	// keeps them, so that a capability added since registration counts.
	if in.SystemCapabilities != nil {
		caps := *in.SystemCapabilities
		a.SystemCapabilities = &caps
	}
	s := &session{id: uuid.New(), agent: a, nextMessage: 1, deliveredJobs: map[uint64]bool{}, lastPoll: time.Now()}
	if o.sessions == nil {
		o.sessions = map[uuid.UUID]*session{}
	}
	o.sessions[s.id] = s
	setStatus(a, true, time.Now().UTC())
	out := taskagent.TaskAgentSession{SessionId: &s.id, Agent: reference(a), OwnerName: in.OwnerName, SystemCapabilities: a.SystemCapabilities}
	return marshal(http.StatusOK, out)
}

func (o *Org) deleteSession(p *pool, sessionID string) (int, []byte) {
	s, status, body := o.sessionOf(p, sessionID)
	if s == nil {
		return status, body
	}
	delete(o.sessions, s.id)
	setStatus(s.agent, false, time.Now().UTC())
	return http.StatusNoContent, nil
}

func (o *Org) sessionOf(p *pool, sessionID string) (*session, int, []byte) {
	id, err := uuid.Parse(sessionID)
	if err != nil {
		st, b := errorBody(http.StatusBadRequest, "ArgumentException", fmt.Sprintf("sessionId %q is not a session id.", sessionID))
		return nil, st, b
	}
	s := o.sessions[id]
	if s == nil || p.findAgent(*s.agent.Id) != s.agent {
		st, b := errorBody(http.StatusNotFound, "TaskAgentSessionExpiredException", fmt.Sprintf("The session %s has expired or does not exist.", sessionID))
		return nil, st, b
	}
	return s, 0, nil
}

// nextMessage long-polls: a job assigned to the session's agent (dispatching
// the pool's waiting jobs first), or 202 Accepted with no body when none
// comes within MessagePollTimeout.
func (s *Server) nextMessage(o *Org, poolID int, r *http.Request) (int, []byte) {
	q := queryIgnoringCase(r)
	deadline := time.Now().Add(MessagePollTimeout)
	var polling *session
	defer func() {
		if polling != nil {
			s.mu.Lock()
			polling.polls--
			polling.lastPoll = time.Now()
			s.mu.Unlock()
		}
	}()
	for {
		s.mu.Lock()
		p, ok := o.pools[poolID]
		if !ok {
			s.mu.Unlock()
			return errorBody(http.StatusNotFound, "TaskAgentPoolNotFoundException", fmt.Sprintf("Agent pool %d could not be found.", poolID))
		}
		sess, status, body := o.sessionOf(p, q.Get("sessionid"))
		if sess == nil {
			s.mu.Unlock()
			return status, body
		}
		if polling == nil {
			polling = sess
			sess.polls++
		}
		if sess.pending == nil {
			o.expireLocked(p)
			o.dispatchLocked(p)
			if req := sess.agent.AssignedRequest; req != nil && !sess.deliveredJobs[*req.RequestId] {
				sess.pending = jobMessage(sess, req, p.steps[*req.RequestId])
				sess.deliveredJobs[*req.RequestId] = true
			}
		}
		if m := sess.pending; m != nil {
			s.mu.Unlock()
			return marshal(http.StatusOK, m)
		}
		s.mu.Unlock()
		if time.Now().After(deadline) {
			return http.StatusAccepted, nil
		}
		select {
		case <-r.Context().Done():
			return http.StatusAccepted, nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func jobMessage(sess *session, req *taskagent.TaskAgentJobRequest, job Job) *taskagent.TaskAgentMessage {
	locked := time.Now().UTC().Add(JobLockDuration)
	req.LockedUntil = &azuredevops.Time{Time: locked}
	m := JobMessage{
		MessageType: JobMessageType, Plan: JobPlan{PlanType: deref(req.PlanType), PlanID: *req.PlanId},
		JobID: *req.JobId, JobDisplayName: deref(req.JobName), JobName: deref(req.JobName), RequestID: *req.RequestId, LockedUntil: locked,
		Resources: JobResources{Containers: []ContainerResource{}},
		Steps:     []TaskStep{{Type: "task", Name: "CmdLine", DisplayName: "Script", Inputs: map[string]string{"script": job.Script}}},
	}
	if job.Container != "" {
		m.JobContainer = jobContainerAlias
		m.Resources.Containers = append(m.Resources.Containers, ContainerResource{Alias: jobContainerAlias, Properties: map[string]any{"image": job.Container}})
	}
	body, _ := json.Marshal(m)
	id := sess.nextMessage
	sess.nextMessage++
	return &taskagent.TaskAgentMessage{MessageId: &id, MessageType: ptr(JobMessageType), Body: ptr(string(body))}
}

func (o *Org) deleteMessage(p *pool, messageID int, r *http.Request) (int, []byte) {
	sess, status, body := o.sessionOf(p, queryIgnoringCase(r).Get("sessionid"))
	if sess == nil {
		return status, body
	}
	if sess.pending != nil && *sess.pending.MessageId == uint64(messageID) {
		sess.pending = nil
	}
	return http.StatusNoContent, nil
}

// updateRequest is PATCH jobrequests/{requestId}?lockToken=: a body with a
// result (and finish time) finishes the job, any other renews its lock.
func (o *Org) updateRequest(p *pool, requestID int, r *http.Request) (int, []byte) {
	var in taskagent.TaskAgentJobRequest
	if err := decodeBody(r, &in); err != nil {
		return errorBody(http.StatusBadRequest, "InvalidRequestException", "The request body is not a TaskAgentJobRequest: "+err.Error())
	}
	req, inPool := o.findRequest(uint64(requestID))
	if req == nil || inPool != p {
		return errorBody(http.StatusNotFound, "TaskAgentJobNotFoundException", fmt.Sprintf("Request %d was not found in pool %d.", requestID, *p.info.Id))
	}
	if req.Result != nil {
		return errorBody(http.StatusConflict, "TaskAgentJobTokenExpiredException", fmt.Sprintf("Request %d has already finished.", requestID))
	}
	if req.ReservedAgent == nil {
		return errorBody(http.StatusBadRequest, "TaskAgentJobNotFoundException", fmt.Sprintf("Request %d is not assigned to an agent.", requestID))
	}
	if in.Result == nil {
		req.LockedUntil = &azuredevops.Time{Time: time.Now().UTC().Add(JobLockDuration)}
		return marshal(http.StatusOK, req)
	}
	o.finishLocked(p, req, *in.Result)
	return marshal(http.StatusOK, req)
}

// finishLocked records a job's result and frees the agent that ran it.
func (o *Org) finishLocked(p *pool, req *taskagent.TaskAgentJobRequest, result taskagent.TaskResult) {
	now := nowTime()
	req.Result, req.FinishTime = &result, &now
	for _, a := range p.agents {
		if a.AssignedRequest == req {
			a.AssignedRequest = nil
			a.LastCompletedRequest = req
		}
	}
}

// setStatus sets an agent online or offline as of when.
func setStatus(a *taskagent.TaskAgent, online bool, when time.Time) {
	status := taskagent.TaskAgentStatusValues.Offline
	if online {
		status = taskagent.TaskAgentStatusValues.Online
	}
	a.Status = &status
	a.StatusChangedOn = &azuredevops.Time{Time: when}
}

func decodeBody(r *http.Request, v any) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
