// Package secrets keeps credentials out of every text the scaler emits:
// error messages (gRPC status, /readyz, the status page) and log lines.
// A Set knows the secrets in use (PATs, tokens) and the forms they travel
// in (an HTTP Basic header carries base64(":" + PAT)); Redact removes them,
// and any Authorization, Bearer or Basic value it does not know, from a
// text. It is the one redaction point: the Azure DevOps client passes
// every error text it keeps through it, and the logger, the gRPC server
// and the HTTP pages pass theirs through it again.
package secrets

import (
	"encoding/base64"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// Redacted replaces a secret.
const Redacted = "[REDACTED]"

// minLen is the shortest secret worth redacting: shorter ones would
// mangle ordinary words.
const minLen = 6

// Set is a set of secrets; its zero value is empty and ready.
type Set struct {
	mu      sync.RWMutex
	secrets []string // every form of every secret, longest first
	known   map[string]bool
	// rotating holds, per slot, the latest secrets of a value that changes
	// all the time (an access token refreshed hourly): only the last
	// keepRotating are redacted, so the set does not grow for ever.
	rotating map[string][]string
}

// keepRotating: the current token and the one before it (an error about
// a call made with it may still be on its way to a log).
const keepRotating = 2

// NewSet returns an empty set.
func NewSet() *Set { return &Set{} }

// Add registers a secret and the forms it takes on the wire: as is,
// base64(":"+secret) (an HTTP Basic header with an empty user, what the
// Azure DevOps SDK sends), and base64(secret).
func (s *Set) Add(secret string) {
	secret = strings.TrimSpace(secret)
	if len(secret) < minLen {
		return
	}
	s.mu.RLock()
	known := s.known[secret]
	s.mu.RUnlock()
	if known {
		return
	}
	forms := []string{secret}
	for _, raw := range []string{":" + secret, secret} {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			forms = append(forms, enc.EncodeToString([]byte(raw)))
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.known == nil {
		s.known = map[string]bool{}
	}
	s.known[secret] = true
	for _, f := range forms {
		if !s.known["form:"+f] {
			s.known["form:"+f] = true
			s.secrets = append(s.secrets, f)
		}
	}
	// Longest first, so that a form containing another is replaced whole.
	sort.SliceStable(s.secrets, func(i, j int) bool { return len(s.secrets[i]) > len(s.secrets[j]) })
}

// AddRotating registers the latest value of a secret that is replaced
// often (an access token), under a slot naming it; the values older than
// the last keepRotating of that slot are forgotten.
func (s *Set) AddRotating(slot, secret string) {
	secret = strings.TrimSpace(secret)
	if len(secret) < minLen {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rotating == nil {
		s.rotating = map[string][]string{}
	}
	vals := s.rotating[slot]
	if len(vals) > 0 && vals[len(vals)-1] == secret {
		return
	}
	vals = append(vals, secret)
	if len(vals) > keepRotating {
		vals = vals[len(vals)-keepRotating:]
	}
	s.rotating[slot] = vals
}

// rotatingForms are the current rotating secrets, as they may appear: the
// value itself and after a Bearer scheme (the patterns catch the rest).
func (s *Set) rotatingForms() []string {
	var out []string
	for _, vals := range s.rotating {
		out = append(out, vals...)
	}
	return out
}

// Credentials in any text, known or not: an Authorization header or
// field, a Basic or Bearer credential, and the fields OAuth token
// endpoints answer with.
var patterns = []*regexp.Regexp{
	regexp.MustCompile(`(?i)(authorization["']?\s*[:=]\s*["']?)(?:(?:basic|bearer|negotiate|ntlm)\s+)?[^"'\r\n,;}\s]+`),
	regexp.MustCompile(`(?i)\b((?:basic|bearer)\s+)[A-Za-z0-9+/=._~-]{8,}`),
	regexp.MustCompile(`(?i)((?:access_token|refresh_token|id_token|client_secret|client_assertion|password)["']?\s*[:=]\s*["']?)[^"'&\r\n,;}\s]+`),
}

// Redact returns text without any known secret and without any
// credential the patterns recognize.
func (s *Set) Redact(text string) string {
	if s != nil {
		s.mu.RLock()
		for _, f := range s.secrets {
			if strings.Contains(text, f) {
				text = strings.ReplaceAll(text, f, Redacted)
			}
		}
		for _, f := range s.rotatingForms() {
			if strings.Contains(text, f) {
				text = strings.ReplaceAll(text, f, Redacted)
			}
		}
		s.mu.RUnlock()
	}
	for _, p := range patterns {
		text = p.ReplaceAllString(text, "${1}"+Redacted)
	}
	return text
}

// Truncate cuts text to at most max bytes on a rune boundary, saying how
// long it was.
func Truncate(text string, max int) string {
	if len(text) <= max {
		return text
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(text[cut]) {
		cut--
	}
	return text[:cut] + "…(" + strconv.Itoa(len(text)) + " bytes)"
}
