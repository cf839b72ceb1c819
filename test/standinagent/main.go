// Command standinagent plays the Azure Pipelines agent where the real one
// cannot be downloaded: it is the agent image's config.sh and run.sh in the
// node tier. It speaks the agent's REST protocol with Azure DevOps (here
// the project's fake), as the agent does:
//
//	config.sh --unattended --url U --pool P --agent N --work W [--replace] [--disableupdate] --auth PAT
//	    (the PAT in VSTS_AGENT_INPUT_TOKEN) registers the agent with a new RSA
//	    public key and leaves .agent, .credentials and .credentials_rsaparams
//	    in the agent directory;
//	config.sh remove --unattended --auth PAT  deregisters it;
//	run.sh --once  signs in with the agent's own key (a JWT client assertion,
//	    never the PAT), opens a session with the capabilities it finds (its
//	    environment, as the agent's), long-polls for one job, prints
//	    "<time>: Running job: <name>", runs its script with bash, renews the
//	    job's lock while it runs, reports the result, and leaves. A job with
//	    a job container runs its script in that container, through the
//	    agent's docker commands (container.go).
//
// Under the name "node" (the agent's externals/node/bin/node) it only keeps
// running until SIGTERM: a job container's command.
//
// SIGTERM or SIGINT while idle closes the session and exits 0; during a job
// they cancel it (the script gets SIGTERM, then SIGKILL after 5 s), the job
// is reported canceled and the agent exits 0, as the agent does. What it
// does not do: Azure Pipelines' job and task model, logs and timelines,
// encryption of messages, auto-update.
package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Version is the agent version it reports.
const Version = "4.261.0"

// apiVersion is what it asks for every call.
const apiVersion = "7.1-preview.1"

func main() {
	if filepath.Base(os.Args[0]) == "node" {
		keepAlive() // the externals' node, as a job container's command
		return
	}
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: standinagent config|run ...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "config":
		err = configure(os.Args[2:])
	case "run":
		err = run(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: error: %v\n", stamp(), err)
		os.Exit(1)
	}
}

func stamp() string { return time.Now().UTC().Format("2006-01-02 15:04:05Z") }

// settings is .agent, as the agent writes it (the fields it reads back).
type settings struct {
	AgentID    int    `json:"agentId"`
	AgentName  string `json:"agentName"`
	PoolID     int    `json:"poolId"`
	PoolName   string `json:"poolName"`
	ServerURL  string `json:"serverUrl"`
	WorkFolder string `json:"workFolder"`
}

// credentials is .credentials: OAuth with the agent's own key.
type credentials struct {
	Scheme string `json:"scheme"`
	Data   struct {
		ClientID         string `json:"clientId"`
		AuthorizationURL string `json:"authorizationUrl"`
	} `json:"data"`
}

func configure(args []string) error {
	remove := len(args) > 0 && args[0] == "remove"
	if remove {
		args = args[1:]
	}
	fs := flag.NewFlagSet("config", flag.ContinueOnError)
	serverURL := fs.String("url", "", "organization URL")
	pool := fs.String("pool", "", "agent pool")
	name := fs.String("agent", "", "agent name")
	work := fs.String("work", "_work", "work folder")
	auth := fs.String("auth", "PAT", "PAT only")
	fs.Bool("unattended", false, "")
	replace := fs.Bool("replace", false, "replace an agent of the same name")
	fs.Bool("acceptTeeEula", false, "")
	fs.Bool("disableupdate", false, "the stand-in never updates itself")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !strings.EqualFold(*auth, "PAT") {
		return fmt.Errorf("--auth %s: the stand-in agent registers with a PAT only", *auth)
	}
	pat := os.Getenv("VSTS_AGENT_INPUT_TOKEN")
	if pat == "" {
		return errors.New("no PAT: VSTS_AGENT_INPUT_TOKEN is empty")
	}
	c := &client{auth: "Basic " + base64.StdEncoding.EncodeToString([]byte(":"+pat))}
	if remove {
		var s settings
		if err := readJSON(".agent", &s); err != nil {
			return fmt.Errorf("the agent is not configured: %w", err)
		}
		c.base = s.ServerURL
		if err := c.do(context.Background(), http.MethodDelete, fmt.Sprintf("distributedtask/pools/%d/agents/%d", s.PoolID, s.AgentID), nil, nil); err != nil {
			return fmt.Errorf("removing agent %s: %w", s.AgentName, err)
		}
		for _, f := range []string{".agent", ".credentials", ".credentials_rsaparams"} {
			_ = os.Remove(f)
		}
		fmt.Printf("%s: Agent %s removed.\n", stamp(), s.AgentName)
		return nil
	}
	if *serverURL == "" || *pool == "" || *name == "" {
		return errors.New("--url, --pool and --agent are required")
	}
	c.base = strings.TrimRight(*serverURL, "/")
	ctx := context.Background()
	var pools struct {
		Value []struct {
			ID   int    `json:"id"`
			Name string `json:"name"`
		} `json:"value"`
	}
	if err := c.do(ctx, http.MethodGet, "distributedtask/pools?poolName="+url.QueryEscape(*pool), nil, &pools); err != nil {
		return err
	}
	if len(pools.Value) != 1 {
		return fmt.Errorf("agent pool %q not found", *pool)
	}
	poolID := pools.Value[0].ID
	var existing struct {
		Value []struct {
			ID int `json:"id"`
		} `json:"value"`
	}
	if err := c.do(ctx, http.MethodGet, fmt.Sprintf("distributedtask/pools/%d/agents?agentName=%s", poolID, url.QueryEscape(*name)), nil, &existing); err != nil {
		return err
	}
	if len(existing.Value) > 0 {
		if !*replace {
			return fmt.Errorf("pool %s already has an agent named %s (use --replace)", *pool, *name)
		}
		if err := c.do(ctx, http.MethodDelete, fmt.Sprintf("distributedtask/pools/%d/agents/%d", poolID, existing.Value[0].ID), nil, nil); err != nil {
			return fmt.Errorf("replacing agent %s: %w", *name, err)
		}
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	hostname, _ := os.Hostname()
	agent := map[string]any{
		"name": *name, "version": Version, "osDescription": "Linux (stand-in agent)", "enabled": true, "maxParallelism": 1,
		"authorization":      map[string]any{"publicKey": map[string]any{"exponent": big.NewInt(int64(key.E)).Bytes(), "modulus": key.N.Bytes()}},
		"systemCapabilities": capabilities(*name, hostname),
	}
	var added struct {
		ID            int `json:"id"`
		Authorization struct {
			ClientID         string `json:"clientId"`
			AuthorizationURL string `json:"authorizationUrl"`
		} `json:"authorization"`
	}
	if err := c.do(ctx, http.MethodPost, fmt.Sprintf("distributedtask/pools/%d/agents", poolID), agent, &added); err != nil {
		return fmt.Errorf("registering agent %s: %w", *name, err)
	}
	s := settings{AgentID: added.ID, AgentName: *name, PoolID: poolID, PoolName: *pool, ServerURL: c.base, WorkFolder: *work}
	var cr credentials
	cr.Scheme = "OAuth"
	cr.Data.ClientID, cr.Data.AuthorizationURL = added.Authorization.ClientID, added.Authorization.AuthorizationURL
	if err := writeJSON(".agent", s); err != nil {
		return err
	}
	if err := writeJSON(".credentials", cr); err != nil {
		return err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(".credentials_rsaparams", keyPEM, 0o600); err != nil {
		return err
	}
	fmt.Printf("%s: Agent %s (id %d) registered in pool %s. Settings Saved.\n", stamp(), *name, added.ID, *pool)
	return nil
}

// capabilities are what the agent reports: its own facts and, as the agent
// does, every environment variable (so that an image's ENV docker=...
// gives the capability "docker").
func capabilities(name, hostname string) map[string]string {
	caps := map[string]string{}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "VSTS_") || strings.HasPrefix(k, "AZP_TOKEN") || k == "" {
			continue
		}
		caps[k] = v
	}
	for k, v := range map[string]string{"Agent.Name": name, "Agent.OS": "Linux", "Agent.OSArchitecture": "X64",
		"Agent.Version": Version, "Agent.ComputerName": hostname} {
		caps[k] = v
	}
	return caps
}

func run(args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	once := fs.Bool("once", false, "run one job, then leave")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !*once {
		return errors.New("the stand-in agent runs with --once only")
	}
	var s settings
	var cr credentials
	if err := readJSON(".agent", &s); err != nil {
		return fmt.Errorf("the agent is not configured (.agent): %w", err)
	}
	if err := readJSON(".credentials", &cr); err != nil {
		return fmt.Errorf("no agent credentials: %w", err)
	}
	keyPEM, err := os.ReadFile(".credentials_rsaparams")
	if err != nil {
		return err
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return errors.New(".credentials_rsaparams holds no key")
	}
	key, err := x509.ParsePKCS1PrivateKey(block.Bytes)
	if err != nil {
		return err
	}
	stop := make(chan os.Signal, 2)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)

	token, err := signIn(cr, key)
	if err != nil {
		return fmt.Errorf("signing in as agent %s: %w", s.AgentName, err)
	}
	c := &client{base: s.ServerURL, auth: "Bearer " + token}
	ctx := context.Background()
	var sess struct {
		SessionID string `json:"sessionId"`
	}
	hostname, _ := os.Hostname()
	// As the agent's listener does, the session carries the capabilities
	// found now (this container's environment), not the register's.
	body := map[string]any{"agent": map[string]any{"id": s.AgentID, "name": s.AgentName, "version": Version}, "ownerName": hostname,
		"systemCapabilities": capabilities(s.AgentName, hostname)}
	if err := c.do(ctx, http.MethodPost, fmt.Sprintf("distributedtask/pools/%d/sessions", s.PoolID), body, &sess); err != nil {
		return fmt.Errorf("creating a session: %w", err)
	}
	closeSession := func() {
		_ = c.do(context.Background(), http.MethodDelete, fmt.Sprintf("distributedtask/pools/%d/sessions/%s", s.PoolID, sess.SessionID), nil, nil)
	}
	fmt.Printf("%s: Listening for Jobs\n", stamp())

	pollCtx, cancelPoll := context.WithCancel(ctx)
	defer cancelPoll()
	msgs := make(chan message)
	pollErr := make(chan error, 1)
	go func() {
		m, err := c.nextJob(pollCtx, s.PoolID, sess.SessionID)
		if err != nil {
			pollErr <- err
			return
		}
		msgs <- m
	}()
	var job message
	select {
	case sig := <-stop:
		cancelPoll()
		closeSession()
		fmt.Printf("%s: Exiting on %s while idle\n", stamp(), sig)
		return nil
	case err := <-pollErr:
		closeSession()
		return err
	case job = <-msgs:
	}
	fmt.Printf("%s: Running job: %s\n", stamp(), job.JobDisplayName)
	result := runJob(c, s, job, stop)
	finish := map[string]any{"requestId": job.RequestID, "result": result, "finishTime": time.Now().UTC()}
	if err := c.do(ctx, http.MethodPatch, fmt.Sprintf("distributedtask/pools/%d/jobrequests/%d?lockToken=00000000-0000-0000-0000-000000000000", s.PoolID, job.RequestID), finish, nil); err != nil {
		closeSession()
		return fmt.Errorf("reporting job %s: %w", job.JobDisplayName, err)
	}
	fmt.Printf("%s: Job %s completed with result: %s\n", stamp(), job.JobDisplayName, result)
	closeSession()
	return nil
}

// message is the part of a PipelineAgentJobRequest the stand-in uses.
type message struct {
	JobDisplayName string    `json:"jobDisplayName"`
	RequestID      uint64    `json:"requestId"`
	LockedUntil    time.Time `json:"lockedUntil"`
	JobContainer   string    `json:"jobContainer"`
	Resources      struct {
		Containers []struct {
			Alias      string         `json:"alias"`
			Properties map[string]any `json:"properties"`
		} `json:"containers"`
	} `json:"resources"`
	Steps []struct {
		Inputs map[string]string `json:"inputs"`
	} `json:"steps"`
}

// container is the job container's image and whether it is local only
// (the resource's localimage), or "" for a job on the agent's host.
func (m message) container() (image string, localImage bool, err error) {
	if m.JobContainer == "" {
		return "", false, nil
	}
	for _, c := range m.Resources.Containers {
		if c.Alias != m.JobContainer {
			continue
		}
		image, _ = c.Properties["image"].(string)
		localImage, _ = c.Properties["localimage"].(bool)
		if image == "" {
			return "", false, fmt.Errorf("container %s has no image", c.Alias)
		}
		return image, localImage, nil
	}
	return "", false, fmt.Errorf("the job container %s is not among the job's resources", m.JobContainer)
}

// nextJob long-polls until a job message arrives, deleting each message it
// takes, as the agent does.
func (c *client) nextJob(ctx context.Context, poolID int, sessionID string) (message, error) {
	var last uint64
	for {
		var m struct {
			MessageID   uint64 `json:"messageId"`
			MessageType string `json:"messageType"`
			Body        string `json:"body"`
		}
		path := fmt.Sprintf("distributedtask/pools/%d/messages?sessionId=%s&lastMessageId=%d", poolID, sessionID, last)
		status, err := c.call(ctx, http.MethodGet, path, nil, &m)
		if err != nil {
			if ctx.Err() != nil {
				return message{}, ctx.Err()
			}
			time.Sleep(time.Second) // the agent retries a failed poll
			continue
		}
		if status != http.StatusOK || m.MessageID == 0 {
			continue // no message within the server's wait
		}
		last = m.MessageID
		_ = c.do(ctx, http.MethodDelete, fmt.Sprintf("distributedtask/pools/%d/messages/%d?sessionId=%s", poolID, m.MessageID, sessionID), nil, nil)
		if m.MessageType != "PipelineAgentJobRequest" {
			continue
		}
		var job message
		if err := json.Unmarshal([]byte(m.Body), &job); err != nil {
			return message{}, fmt.Errorf("a job message the stand-in cannot read: %w", err)
		}
		return job, nil
	}
}

// runJob runs the job's scripts in the work folder, renewing the job's
// lock, and returns its result: succeeded, failed or canceled.
func runJob(c *client, s settings, job message, stop <-chan os.Signal) string {
	work := s.WorkFolder
	if !filepath.IsAbs(work) {
		work, _ = filepath.Abs(work)
	}
	_ = os.MkdirAll(work, 0o755)
	renewCtx, stopRenew := context.WithCancel(context.Background())
	defer stopRenew()
	go renewLock(renewCtx, c, s.PoolID, job)
	image, localImage, err := job.container()
	if err != nil {
		fmt.Printf("%s: ##[error]%v\n", stamp(), err)
		return "failed"
	}
	var ctr *jobContainer
	if image != "" {
		root, _ := os.Getwd()
		fmt.Printf("%s: Initialize containers: %s\n", stamp(), image)
		ctr, err = startJobContainer(containerRoots{root: root, work: work, externals: filepath.Join(root, "externals"), tools: filepath.Join(work, "_tool")}, image, localImage)
		defer ctr.stop()
		if err != nil {
			fmt.Printf("%s: ##[error]Initialize containers failed: %v\n", stamp(), err)
			return "failed"
		}
	}
	for _, step := range job.Steps {
		script := step.Inputs["script"]
		if script == "" {
			continue
		}
		cmd := exec.Command("bash", "-c", script)
		cmd.Dir = work
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if ctr != nil {
			if cmd, err = ctr.step(script); err != nil {
				fmt.Printf("%s: ##[error]%v\n", stamp(), err)
				return "failed"
			}
		}
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			fmt.Printf("%s: ##[error]%v\n", stamp(), err)
			return "failed"
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				fmt.Printf("%s: ##[error]the script failed: %v\n", stamp(), err)
				return "failed"
			}
		case sig := <-stop:
			fmt.Printf("%s: Job %s cancelled on %s\n", stamp(), job.JobDisplayName, sig)
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				<-done
			}
			return "canceled"
		}
	}
	return "succeeded"
}

// renewLock renews the job request's lock when half of it is left.
func renewLock(ctx context.Context, c *client, poolID int, job message) {
	until := job.LockedUntil
	for {
		wait := time.Until(until) / 2
		if wait < time.Second {
			wait = time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		var renewed struct {
			LockedUntil time.Time `json:"lockedUntil"`
		}
		if err := c.do(ctx, http.MethodPatch, fmt.Sprintf("distributedtask/pools/%d/jobrequests/%d?lockToken=00000000-0000-0000-0000-000000000000", poolID, job.RequestID),
			map[string]any{"requestId": job.RequestID}, &renewed); err == nil && !renewed.LockedUntil.IsZero() {
			until = renewed.LockedUntil
		}
	}
}

// signIn trades a client assertion signed with the agent's key for a token.
func signIn(cr credentials, key *rsa.PrivateKey) (string, error) {
	now := time.Now().Unix()
	header := b64json(map[string]string{"alg": "RS256", "typ": "JWT"})
	claims := b64json(map[string]any{"iss": cr.Data.ClientID, "sub": cr.Data.ClientID, "aud": cr.Data.AuthorizationURL,
		"jti": fmt.Sprint(now, "-", os.Getpid()), "nbf": now - 60, "iat": now, "exp": now + 300})
	digest := sha256.Sum256([]byte(header + "." + claims))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:])
	if err != nil {
		return "", err
	}
	form := url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion": {header + "." + claims + "." + base64.RawURLEncoding.EncodeToString(sig)}}
	resp, err := http.PostForm(cr.Data.AuthorizationURL, form)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error_description"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.AccessToken == "" {
		return "", fmt.Errorf("HTTP %d: %s %v", resp.StatusCode, out.Error, err)
	}
	return out.AccessToken, nil
}

func b64json(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

// client calls the organization's REST API.
type client struct {
	base string // organization URL
	auth string // Authorization header
}

func (c *client) do(ctx context.Context, method, path string, in, out any) error {
	status, err := c.call(ctx, method, path, in, out)
	if err == nil && status >= 300 {
		err = fmt.Errorf("%s %s: HTTP %d", method, path, status)
	}
	return err
}

func (c *client) call(ctx context.Context, method, path string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+"/_apis/"+path+sep+"api-version="+apiVersion, body)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", c.auth)
	req.Header.Set("X-TFS-FedAuthRedirect", "Suppress")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode >= 300 {
		return resp.StatusCode, fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}
