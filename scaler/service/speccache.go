package service

import (
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/trigger"
)

// specCache remembers parsed triggers by their metadata: KEDA sends the
// same metadata on every poll of every ScaledJob, and parsing capabilities
// on each call would be wasted work on the hot path. Bounded: when full it
// starts over, which only costs re-parsing.
type specCache struct {
	mu    sync.RWMutex
	max   int
	specs map[string]*trigger.Spec
}

func newSpecCache(max int) *specCache {
	return &specCache{max: max, specs: map[string]*trigger.Spec{}}
}

// parse returns the parsed trigger and the canonical form of its metadata.
func (c *specCache) parse(md map[string]string, orgs trigger.Organizations) (*trigger.Spec, string, error) {
	key := canonical(md)
	c.mu.RLock()
	spec, ok := c.specs[key]
	c.mu.RUnlock()
	if ok {
		return spec, key, nil
	}
	spec, err := trigger.Parse(md, orgs)
	if err != nil {
		return nil, "", err // errors are not cached: they are rare and cheap
	}
	c.mu.Lock()
	if len(c.specs) >= c.max {
		c.specs = map[string]*trigger.Spec{}
	}
	c.specs[key] = spec
	c.mu.Unlock()
	return spec, key, nil
}

// canonical serializes metadata unambiguously (keys sorted, lengths
// prefixed so that no key or value can imitate a separator).
func canonical(md map[string]string) string {
	keys := make([]string, 0, len(md))
	n := 0
	for k, v := range md {
		keys = append(keys, k)
		n += len(k) + len(v) + 8
	}
	sort.Strings(keys)
	var b strings.Builder
	b.Grow(n)
	for _, k := range keys {
		writeField(&b, k)
		writeField(&b, md[k])
	}
	return b.String()
}

func writeField(b *strings.Builder, s string) {
	b.WriteString(strconv.Itoa(len(s)))
	b.WriteByte(':')
	b.WriteString(s)
}
