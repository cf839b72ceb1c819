package standby

import (
	"slices"
	"sync"
	"time"
)

// Buckets of demand: five minutes each, 2016 in a week.
const (
	Bucket         = 5 * time.Minute
	BucketsPerWeek = int64(7 * 24 * time.Hour / Bucket)
	// PastWeeks is how many past weeks a forecast reads; the history keeps
	// them and the current week, 20 KiB per trigger.
	PastWeeks = 4
)

// History is a trigger's demand: the jobs routed to it, counted by the
// five-minute bucket they were queued in, for the current week and
// PastWeeks before it. Memory is fixed, whatever the number of jobs; the
// caller adds each job once. Safe for concurrent use.
type History struct {
	mu    sync.Mutex
	since time.Time // demand before this is unknown, not zero
	weeks [PastWeeks + 1]week
}

type week struct {
	n      int64 // week number since the epoch; 0 with all zero: unused
	counts [BucketsPerWeek]uint16
}

// NewHistory starts an empty history that knows demand from since on.
func NewHistory(since time.Time) *History {
	return &History{since: since}
}

func bucketOf(t time.Time) int64 { return t.Unix() / int64(Bucket/time.Second) }

// Add counts a job queued at queued. A job older than the history's
// weeks is dropped.
func (h *History) Add(queued time.Time) {
	b := bucketOf(queued)
	if b < 0 {
		return // no queue time (or before 1970): nowhere to count it
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	wk, slot := b/BucketsPerWeek, b%BucketsPerWeek
	w := &h.weeks[wk%int64(len(h.weeks))]
	switch {
	case w.n == wk:
	case w.n < wk: // a newer week takes the slot of the oldest
		*w = week{n: wk}
	default:
		return
	}
	if w.counts[slot] < 1<<16-1 {
		w.counts[slot]++
	}
}

// Since is when the history starts; SetSince moves it earlier once older
// jobs are known (rebuilt from Azure DevOps after a restart).
func (h *History) Since() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.since
}

// SetSince sets the start of known demand.
func (h *History) SetSince(t time.Time) {
	h.mu.Lock()
	h.since = t
	h.mu.Unlock()
}

// samples returns the counts of bucket b in each past week whose bucket
// the history fully knows.
func (h *History) samples(b int64) []int {
	start := bucketOf(h.since) // the bucket it began in counts as known: a little low, never made up
	var out []int
	for w := int64(1); w <= PastWeeks; w++ {
		past := b - w*BucketsPerWeek
		if past < start {
			break
		}
		wk := &h.weeks[(past/BucketsPerWeek)%int64(len(h.weeks))]
		if wk.n == past/BucketsPerWeek {
			out = append(out, int(wk.counts[past%BucketsPerWeek]))
		} else {
			out = append(out, 0) // a week without a single job
		}
	}
	return out
}

// Forecast is the standby auto keeps at now: the percentile (nearest rank)
// of the demand of this five-minute bucket and of the next one in each
// past week the history knows, the larger of the two (so agents are ready
// when the next bucket's jobs arrive), at most limit. It also returns how
// many past weeks it read (0: no history of this time of the week).
func Forecast(h *History, now time.Time, percentile, limit int) (int, int) {
	if h == nil {
		return 0, 0
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	b := bucketOf(now)
	best, weeks := 0, 0
	for _, target := range []int64{b, b + 1} {
		s := h.samples(target)
		if len(s) == 0 {
			continue
		}
		weeks = len(s)
		best = max(best, Percentile(s, percentile))
	}
	return min(best, limit), weeks
}

// Percentile is the nearest-rank percentile p (1 to 100) of samples.
func Percentile(samples []int, p int) int {
	if len(samples) == 0 {
		return 0
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	rank := (p*len(s) + 99) / 100 // ceil(p/100 * n)
	return s[min(max(rank, 1), len(s))-1]
}
