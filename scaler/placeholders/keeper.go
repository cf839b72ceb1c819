package placeholders

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"math/big"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
	"github.com/sirupsen/logrus"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/azdo"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/queue"
	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/routing"
)

// Source is what the keeper needs of an organization's client.
type Source interface {
	Agents(ctx context.Context, poolID int) ([]taskagent.TaskAgent, error)
	AddAgent(ctx context.Context, poolID int, agent taskagent.TaskAgent) (taskagent.TaskAgent, error)
	DeleteAgent(ctx context.Context, poolID, agentID int) error
}

// Observer counts the keeper's actions (the metrics package).
type Observer interface {
	PlaceholderAction(k queue.Key, action, result string)
}

type nopObserver struct{}

func (nopObserver) PlaceholderAction(queue.Key, string, string) {}

// Defaults of Options, also the defaults of the flags that set them.
const (
	DefaultGrace  = time.Hour
	DefaultPrefix = "keda"
	// DefaultAgentVersion is the Agent.Version placeholders report unless
	// told otherwise: that of the reference agent image.
	DefaultAgentVersion = "4.261.0"
)

// Options configure a Keeper.
type Options struct {
	Sources map[string]Source // by organization
	Router  *routing.Router   // the triggers of each pool
	// Prefix of placeholder names: <prefix>-placeholder-<key>.
	Prefix string
	// AgentVersion placeholders report (Agent.Version), unless the
	// template lists one: jobs that demand a newer agent fail at once, as
	// they would with the template's pods.
	AgentVersion string
	Grace        time.Duration // an unneeded placeholder is removed after this
	Recheck      time.Duration // a pool whose templates did not change is listed again after this
	DryRun       bool          // log what would be registered or removed, do nothing
	Observer     Observer
	Logger       logrus.FieldLogger
	Now          func() time.Time
}

// Keeper keeps the placeholders of the pools its process knows triggers of.
type Keeper struct {
	o   Options
	log logrus.FieldLogger

	mu       sync.Mutex
	unneeded map[queue.Key]map[string]time.Time
	checked  map[queue.Key]check
	key      *rsa.PublicKey
}

type check struct {
	at     time.Time
	wanted string // the wanted keys then
}

// New builds a keeper.
func New(o Options) *Keeper {
	if o.Grace <= 0 {
		o.Grace = DefaultGrace
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.AgentVersion == "" {
		o.AgentVersion = DefaultAgentVersion
	}
	if o.Recheck <= 0 {
		o.Recheck = 5 * time.Minute
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	if o.Logger == nil {
		o.Logger = logrus.StandardLogger()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Keeper{o: o, log: o.Logger.WithFields(logrus.Fields{"component": "placeholders", "dryRun": o.DryRun}),
		unneeded: map[queue.Key]map[string]time.Time{}, checked: map[queue.Key]check{}}
}

// Run keeps the placeholders until ctx ends: at once when a pool's triggers
// change, and every poll otherwise.
func (k *Keeper) Run(ctx context.Context, poll time.Duration) {
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		changed := k.o.Router.Changed()
		k.Once(ctx)
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-t.C:
		}
	}
}

// Once goes over every pool this process knows triggers of.
func (k *Keeper) Once(ctx context.Context) {
	for _, tb := range k.o.Router.Tables() {
		if ctx.Err() != nil {
			return
		}
		triggers := tb.Triggers()
		if len(triggers) == 0 {
			continue // no trigger asks here: no knowledge, no action
		}
		wanted := map[string]map[string]string{}
		for _, t := range triggers {
			if t.Capabilities != nil {
				wanted[Key(t.Capabilities)] = t.Capabilities
			}
		}
		k.keepPool(ctx, tb.Key(), wanted)
	}
}

func (k *Keeper) keepPool(ctx context.Context, pool queue.Key, wanted map[string]map[string]string) {
	now := k.o.Now()
	wantedKeys := keysOf(wanted)
	k.mu.Lock()
	last, ok := k.checked[pool]
	k.mu.Unlock()
	hasUnneeded := len(k.unneededOf(pool)) > 0
	if ok && last.wanted == wantedKeys && now.Sub(last.at) < k.o.Recheck && !hasUnneeded {
		return
	}
	log := k.log.WithFields(logrus.Fields{"organization": pool.Org, "poolID": pool.ID})
	src, ok := k.o.Sources[pool.Org]
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	agents, err := src.Agents(ctx, pool.ID)
	if err != nil {
		log.WithError(err).Warn("listing agents for the placeholders failed; trying again later")
		k.o.Observer.PlaceholderAction(pool, "list", "error")
		return
	}
	existing := k.ours(agents)
	k.mu.Lock()
	since := k.unneeded[pool]
	if since == nil {
		since = map[string]time.Time{}
		k.unneeded[pool] = since
	}
	for _, e := range existing {
		if _, w := wanted[e.Key]; w {
			delete(since, e.Key)
		} else if _, seen := since[e.Key]; !seen {
			since[e.Key] = now
		}
	}
	unneeded := make(map[string]time.Time, len(since))
	for key, at := range since {
		unneeded[key] = at
	}
	k.mu.Unlock()

	failed := false
	for _, a := range Plan(wanted, existing, unneeded, now, k.o.Grace, k.o.Router.KnownFor(now)) {
		name := Name(k.o.Prefix, a.Key)
		alog := log.WithFields(logrus.Fields{"placeholder": name, "reason": a.Reason})
		action, done := "remove", "removed"
		if a.Register {
			action, done = "register", "registered"
			alog = alog.WithField("capabilities", a.Caps)
		}
		if k.o.DryRun {
			alog.Info("would " + action + " placeholder agent (dry run)")
			k.o.Observer.PlaceholderAction(pool, action, "dry-run")
			continue
		}
		if a.Register {
			err = k.register(ctx, src, pool.ID, name, a.Key, a.Caps)
		} else {
			err = src.DeleteAgent(ctx, pool.ID, a.AgentID)
			if err == nil || errors.Is(err, azdo.ErrNotFound) {
				err = nil
				k.mu.Lock()
				delete(since, a.Key)
				k.mu.Unlock()
			}
		}
		if err != nil {
			failed = true
			alog.WithError(err).Warn(action + " placeholder agent failed; trying again later")
			k.o.Observer.PlaceholderAction(pool, action, "error")
			continue
		}
		alog.Info(done + " placeholder agent")
		k.o.Observer.PlaceholderAction(pool, action, "ok")
	}
	if !failed {
		k.mu.Lock()
		k.checked[pool] = check{at: now, wanted: wantedKeys}
		k.mu.Unlock()
	}
}

func (k *Keeper) unneededOf(pool queue.Key) map[string]time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.unneeded[pool]
}

// ours are the pool's placeholders this keeper registered: name and
// marker both match.
func (k *Keeper) ours(agents []taskagent.TaskAgent) []Existing {
	var out []Existing
	for _, a := range agents {
		if a.Id == nil || a.Name == nil || a.SystemCapabilities == nil {
			continue
		}
		key := (*a.SystemCapabilities)[Marker]
		if key == "" || !strings.EqualFold(*a.Name, Name(k.o.Prefix, key)) {
			continue
		}
		out = append(out, Existing{ID: *a.Id, Name: *a.Name, Key: key, Busy: a.AssignedRequest != nil,
			Online: a.Status != nil && *a.Status == taskagent.TaskAgentStatusValues.Online})
	}
	return out
}

// register adds the placeholder: the template's capabilities as system
// capabilities (a real agent reports its environment so), Agent.Name,
// Agent.Version and the marker, and a public key nobody holds the private
// half of. A name the pool already has (another replica was first) is
// success.
func (k *Keeper) register(ctx context.Context, src Source, poolID int, name, key string, caps map[string]string) error {
	pub, err := k.publicKey()
	if err != nil {
		return err
	}
	system := map[string]string{"Agent.Name": name, "Agent.Version": k.o.AgentVersion, Marker: key}
	for c, v := range caps {
		if strings.EqualFold(c, "Agent.Version") {
			delete(system, "Agent.Version")
		}
		system[c] = v
	}
	version := system["Agent.Version"]
	for c, v := range system {
		if strings.EqualFold(c, "Agent.Version") {
			version = v
		}
	}
	exponent, modulus := big.NewInt(int64(pub.E)).Bytes(), pub.N.Bytes()
	enabled, one := true, 1
	osDesc := "azdo-keda-scaler placeholder: keeps jobs queued while the pool has no agent; never runs one"
	provisioned := "Provisioned"
	_, err = src.AddAgent(ctx, poolID, taskagent.TaskAgent{
		Name: &name, Version: &version, Enabled: &enabled, MaxParallelism: &one, OsDescription: &osDesc,
		ProvisioningState: &provisioned, SystemCapabilities: &system,
		Authorization: &taskagent.TaskAgentAuthorization{PublicKey: &taskagent.TaskAgentPublicKey{Exponent: &exponent, Modulus: &modulus}},
	})
	if errors.Is(err, azdo.ErrConflict) {
		return nil
	}
	return err
}

// publicKey is one RSA key per process; its private half is never kept.
func (k *Keeper) publicKey() (*rsa.PublicKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.key == nil {
		priv, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, err
		}
		k.key = &priv.PublicKey
	}
	return k.key, nil
}

func keysOf(m map[string]map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return strings.Join(keys, ",")
}
