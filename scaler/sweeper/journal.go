package sweeper

import (
	"sort"
	"sync"
	"time"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/queue"
)

// Journal keeps the last sweep of every pool, for the status page: what
// was decided about each agent and why. It holds no more than the last
// sweep per pool, and at most MaxJournalEntries decisions of it.
type Journal struct {
	mu    sync.Mutex
	pools map[queue.Key]PoolSweep
}

// MaxJournalEntries bounds the decisions kept per pool.
const MaxJournalEntries = 500

// Actions in the journal.
const (
	ActionDeleted        = "deleted"
	ActionWouldDelete    = "would delete (dry run)"
	ActionKept           = "kept"
	ActionDeleteFailed   = "delete failed"
	ActionAlreadyRemoved = "already removed"
	ActionNotDeleted     = "not deleted: lost the Lease"
)

// PoolSweep is one pool's last sweep.
type PoolSweep struct {
	Pool      queue.Pool
	At        time.Time
	DryRun    bool
	Error     string // why the sweep deleted nothing, if it failed
	Entries   []JournalEntry
	Truncated int // decisions left out beyond MaxJournalEntries
}

// JournalEntry is one agent's decision.
type JournalEntry struct {
	Agent      string
	Action     string
	Reason     string
	OfflineFor time.Duration // 0 when online or unknown
}

// NewJournal makes an empty journal.
func NewJournal() *Journal { return &Journal{pools: map[queue.Key]PoolSweep{}} }

func (j *Journal) record(s PoolSweep) {
	if j == nil {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.pools[s.Pool.Key] = s
}

// LastSweeps lists each pool's last sweep, by organization and pool name.
func (j *Journal) LastSweeps() []PoolSweep {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]PoolSweep, 0, len(j.pools))
	for _, s := range j.pools {
		out = append(out, s)
	}
	sort.Slice(out, func(a, b int) bool {
		if out[a].Pool.Org != out[b].Pool.Org {
			return out[a].Pool.Org < out[b].Pool.Org
		}
		return out[a].Pool.Name < out[b].Pool.Name
	})
	return out
}

// add appends an entry, within the bound.
func (s *PoolSweep) add(e JournalEntry) {
	if len(s.Entries) >= MaxJournalEntries {
		s.Truncated++
		return
	}
	s.Entries = append(s.Entries, e)
}
