package azdo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// PATSource supplies the current personal access token of an organization.
type PATSource interface {
	// PAT returns the current token. It is called before every call to
	// Azure DevOps, so it must be cheap.
	PAT() (string, error)
	// Refresh forgets any cached token: the client calls it on a 401,
	// since the token may have just been rotated.
	Refresh()
}

// TokenSource supplies a Microsoft Entra ID access token for Azure DevOps
// (package entra). It is called before every call to Azure DevOps, so it
// must cache the token and refresh it before it expires.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
}

// StaticPAT is a token that never changes (from AZDO_PAT, or a test).
type StaticPAT string

// PAT returns the token.
func (p StaticPAT) PAT() (string, error) {
	if strings.TrimSpace(string(p)) == "" {
		return "", errors.New("the personal access token is empty")
	}
	return strings.TrimSpace(string(p)), nil
}

// Refresh does nothing: a static token cannot change.
func (StaticPAT) Refresh() {}

// Both PAT sources are PATSources.
var (
	_ PATSource = StaticPAT("")
	_ PATSource = (*FilePAT)(nil)
)

// FilePAT reads the token from a file and reads it again when the file
// changes, so that a rotated Kubernetes Secret is picked up without a
// restart. Kubernetes updates a mounted Secret by swapping a symlink, which
// file watchers easily miss; reading a few bytes at most every CheckEvery is
// cheap and sure.
type FilePAT struct {
	Path       string
	CheckEvery time.Duration // default 5s

	mu        sync.Mutex
	pat       string
	checkedAt time.Time
	err       error
}

// PAT returns the token in the file as it is now.
func (f *FilePAT) PAT() (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	every := f.CheckEvery
	if every == 0 {
		every = 5 * time.Second
	}
	if !f.checkedAt.IsZero() && time.Since(f.checkedAt) < every {
		return f.pat, f.err
	}
	f.reload()
	return f.pat, f.err
}

// Refresh forgets the cached token, so the next PAT call reads the file.
func (f *FilePAT) Refresh() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.checkedAt = time.Time{}
}

func (f *FilePAT) reload() {
	f.checkedAt = time.Now()
	b, err := os.ReadFile(f.Path)
	if err != nil {
		f.pat, f.err = "", fmt.Errorf("reading the PAT file: %w", err)
		return
	}
	pat := strings.TrimSpace(string(b))
	if pat == "" {
		f.pat, f.err = "", fmt.Errorf("the PAT file %s is empty", f.Path)
		return
	}
	f.pat, f.err = pat, nil
}
