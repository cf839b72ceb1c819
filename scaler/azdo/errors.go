package azdo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/secrets"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7"
)

// Errors that callers test with errors.Is, whatever the call: any *Error
// whose HTTP status is 404 is ErrNotFound, and 409 is ErrConflict. Status
// checks live here only.
var (
	// ErrNotFound: the pool or agent does not exist (or the credential may
	// not see it).
	ErrNotFound = errors.New("not found")
	// ErrConflict: Azure DevOps refused a change that clashes with what it
	// has (an agent of that name is already registered).
	ErrConflict = errors.New("conflict")
	// ErrRefused: Azure DevOps refused the credential (401, 403, or its
	// sign-in page), or Entra ID refused to give a token for it (the token
	// source wraps this error).
	ErrRefused = errors.New("credential refused")
)

// maxErrorText bounds the text of an error from Azure DevOps.
const maxErrorText = 300

// Error is a failed call to Azure DevOps.
type Error struct {
	Op        string
	Status    int // HTTP status; 0 when there was no answer
	Retryable bool
	Err       error
	// Detail is the sanitized text of Err: Azure DevOps' message and type
	// key only, redacted and cut. Error() shows it, never Err's own text.
	Detail string
}

func (e *Error) Error() string {
	detail := e.Detail
	if detail == "" && e.Err != nil {
		detail = e.Err.Error() // an error this package made itself
	}
	if e.Status != 0 {
		return fmt.Sprintf("azure devops: %s: HTTP %d: %s", e.Op, e.Status, detail)
	}
	return fmt.Sprintf("azure devops: %s: %s", e.Op, detail)
}

func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrNotFound) true for a 404 and
// errors.Is(err, ErrConflict) true for a 409.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Status == http.StatusNotFound
	case ErrConflict:
		return e.Status == http.StatusConflict
	case ErrRefused: // or an Entra ID refusal the token source wraps (Unwrap)
		return e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden ||
			e.Status == http.StatusNonAuthoritativeInfo
	}
	return false
}

// classify turns any of the SDK's error shapes into an *Error: a
// *WrappedError or WrappedError value (JSON or text bodies), a decode error
// when the body was neither (status known only to the transport), or a
// transport error. Its Detail is sanitized (see the package comment).
func classify(op string, err error, seenStatus int, actx context.Context, set *secrets.Set) *Error {
	var already *Error
	if errors.As(err, &already) {
		return already
	}
	status := seenStatus
	var wrapped *azuredevops.WrappedError
	var wrappedValue azuredevops.WrappedError
	text := ""
	switch {
	case errors.As(err, &wrapped):
		text = wrappedText(wrapped)
		if wrapped.StatusCode != nil {
			status = *wrapped.StatusCode
		}
	case errors.As(err, &wrappedValue):
		text = wrappedText(&wrappedValue)
		if wrappedValue.StatusCode != nil {
			status = *wrappedValue.StatusCode
		}
	default:
		text = err.Error()
	}
	e := &Error{Op: op, Status: status, Err: err}
	var netErr net.Error
	switch {
	case errors.Is(actx.Err(), context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout()):
		e.Retryable, text = true, "timed out: "+text
	case status == http.StatusTooManyRequests || status >= 500:
		e.Retryable = true
	case status >= 200 && status < 300:
		e.Retryable = true // a 2xx the SDK could not decode: malformed JSON
	case status == 0:
		e.Retryable = true // no answer at all: connection refused or reset
	}
	if status == http.StatusNonAuthoritativeInfo {
		text, e.Retryable = "Azure DevOps answered with a sign-in page: the PAT is not valid", false
	}
	e.Detail = sanitize(set, text)
	return e
}

// sanitize is the one way a text from Azure DevOps, or about a call to
// it, becomes part of an Error: redacted, then cut.
func sanitize(set *secrets.Set, text string) string {
	return secrets.Truncate(set.Redact(text), maxErrorText)
}

// wrappedText is Azure DevOps' own message and type key, and nothing else
// of the body (a text/plain body is its message, whole: hence the cut).
func wrappedText(w *azuredevops.WrappedError) string {
	msg := ""
	if w.Message != nil {
		msg = strings.TrimSpace(*w.Message)
	}
	if msg == "" {
		msg = "no message"
	}
	if w.TypeKey != nil && *w.TypeKey != "" {
		msg += " (" + *w.TypeKey + ")"
	}
	return msg
}
