package secrets

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
)

const pat = "z7q2xk5mdv4jlnp8rt3ws6hc9fyb0gae1uio2k4m6n8p0r2t4v6x"

func TestRedactEveryFormOfAKnownSecret(t *testing.T) {
	s := NewSet()
	s.Add(pat)
	for _, form := range []string{
		pat,
		base64.StdEncoding.EncodeToString([]byte(":" + pat)),
		base64.StdEncoding.EncodeToString([]byte(pat)),
		base64.RawURLEncoding.EncodeToString([]byte(":" + pat)),
	} {
		text := `{"message":"denied for ` + form + `"}`
		if got := s.Redact(text); strings.Contains(got, form) || !strings.Contains(got, Redacted) {
			t.Errorf("form %q survives: %s", form, got)
		}
	}
}

func TestRedactUnknownCredentials(t *testing.T) {
	s := NewSet() // knows nothing
	for _, text := range []string{
		"Authorization: Basic OmFiY2RlZmdoaWprbG1ub3A=",
		`{"headers":{"Authorization":"Bearer eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.e30.sig"}}`,
		"authorization=NTLM TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAGAbEdAAAADw==",
		"got bearer abcdefghijklmnopqrstuvwxyz0123 from proxy",
		`{"access_token":"abc.def.ghi","expires_in":3599}`,
		"client_secret=s3cr3t-value&grant_type=client_credentials",
	} {
		got := s.Redact(text)
		for _, secret := range []string{"OmFiY2RlZmdoaWprbG1ub3A=", "eyJ0eXAi", "TlRMTVNTUAAB", "abcdefghijklmnopqrstuvwxyz0123", "abc.def.ghi", "s3cr3t-value"} {
			if strings.Contains(got, secret) {
				t.Errorf("%q -> %q keeps %q", text, got, secret)
			}
		}
	}
	if got := s.Redact("pool linux: HTTP 503: Service Unavailable"); got != "pool linux: HTTP 503: Service Unavailable" {
		t.Errorf("ordinary text changed: %q", got)
	}
}

func TestShortSecretsAreIgnoredAndNilSetWorks(t *testing.T) {
	s := NewSet()
	s.Add("abc")
	if got := s.Redact("abcabc"); got != "abcabc" {
		t.Errorf("a 3-character secret mangled text: %q", got)
	}
	var none *Set
	if got := none.Redact("Authorization: Basic OmFiY2RlZmdoaWprbG1ub3A="); strings.Contains(got, "OmFi") {
		t.Errorf("nil set: %q", got)
	}
}

func TestTruncate(t *testing.T) {
	if got := Truncate("short", 10); got != "short" {
		t.Fatal(got)
	}
	long := strings.Repeat("é", 100) // 200 bytes
	got := Truncate(long, 11)
	if !strings.HasPrefix(got, strings.Repeat("é", 5)+"…(200 bytes)") {
		t.Fatalf("truncate = %q", got)
	}
}

// An access token refreshed every hour must not make the set grow for
// ever: only a slot's last two values are redacted.
func TestAddRotatingKeepsTheLastTwo(t *testing.T) {
	s := NewSet()
	for i := range 1000 {
		s.AddRotating("token of contoso", fmt.Sprintf("access-token-%04d", i))
	}
	got := s.Redact("access-token-0998 access-token-0999 access-token-0997")
	if got != "[REDACTED] [REDACTED] access-token-0997" {
		t.Errorf("Redact = %q", got)
	}
	if n := len(s.rotatingForms()); n != 2 {
		t.Errorf("%d rotating secrets kept, want 2", n)
	}
}
