package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/mageflow/mageflow/internal/platform/units"
)

// ErrMalformed is returned (wrapped with a reason) by Parse when a delivery
// cannot be decoded or lacks a field a build needs.
var ErrMalformed = errors.New("webhook payload malformed")

// Ignored is returned by Parse for a well-formed delivery that must not start
// a build: pings, tag pushes, branch deletions and events other than pushes.
// It is an expected outcome, not a failure; the server answers 202.
type Ignored struct {
	Reason string
}

func (e *Ignored) Error() string { return "ignored: " + e.Reason }

// Push is what a delivery says about the branches it updated. Fields are
// copied verbatim from the payload and are only trustworthy once Verify
// succeeded.
type Push struct {
	Provider Provider
	// Event is the provider's event name (X-GitHub-Event, X-Gitlab-Event or
	// the payload's object_kind, X-Event-Key).
	Event string
	// DeliveryID identifies the delivery; a provider's redelivery of the same
	// event carries the same id, which is what duplicate detection keys on.
	// It comes from a header, which no provider signs.
	DeliveryID string
	// RepoURLs lists every URL the payload gives for the repository (clone,
	// ssh, http, web page), so a configured URL in any of these forms matches.
	RepoURLs     []string
	RepoFullName string
	// Ref, Branch, After and HeadMessage describe the first branch update
	// (the only one for GitHub and GitLab); Updates lists all of them.
	Ref    string
	Branch string
	Tag    string
	// After is the new head commit (lower-case hex).
	After       string
	Deleted     bool
	Pusher      string
	HeadMessage string
	// Updates lists every branch the delivery moved, in payload order. A
	// Bitbucket delivery of `git push --all` carries several.
	Updates []Update
	// PushedAt is when the provider says the push happened, from a field the
	// provider sets inside the signed body (GitHub: repository.pushed_at).
	// Zero when the payload carries no such time: GitLab and Bitbucket Cloud
	// push payloads only have commit dates, which the committer chooses.
	PushedAt time.Time
}

// Update is one branch a delivery moved.
type Update struct {
	Ref         string // refs/heads/<Branch>
	Branch      string
	After       string // new head commit, lower-case hex
	HeadMessage string
}

// Parse decodes a delivery. It returns:
//
//   - (*Push, nil) for a push to one or more branches, with Updates set and
//     Branch and After naming the first;
//   - (*Push, *Ignored) for a well-formed delivery that must not build. The
//     Push is still returned, with whatever repository it names, because the
//     caller has to authenticate the delivery against that repository's
//     secret before answering anything but "unknown repository";
//   - (nil, error wrapping ErrMalformed) for anything undecodable.
//
// Parse does not authenticate; call Verify before acting on the result.
func Parse(p Provider, h http.Header, body []byte) (*Push, error) {
	switch p {
	case GitHub:
		return parseGitHub(h, body)
	case GitLab:
		return parseGitLab(h, body)
	case Bitbucket:
		return parseBitbucket(h, body)
	default:
		return nil, fmt.Errorf("%w: unknown provider %q (supported: github, gitlab, bitbucket)", ErrMalformed, p)
	}
}

// decodeJSON decodes exactly one JSON value; trailing data is rejected so a
// payload cannot smuggle a second document past a signature check done on
// the whole body.
func decodeJSON(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: invalid JSON: %v", ErrMalformed, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data after the JSON document", ErrMalformed)
	}
	return nil
}

// classifyRef fills Branch or Tag from a full ref name and returns an
// Ignored reason for refs that are not branches.
func classifyRef(push *Push) error {
	switch {
	case strings.HasPrefix(push.Ref, "refs/heads/"):
		push.Branch = strings.TrimPrefix(push.Ref, "refs/heads/")
		if push.Branch == "" {
			return fmt.Errorf("%w: ref %q names no branch", ErrMalformed, push.Ref)
		}
	case strings.HasPrefix(push.Ref, "refs/tags/"):
		push.Tag = strings.TrimPrefix(push.Ref, "refs/tags/")
		return &Ignored{Reason: "tag push " + push.Tag + " (only branch pushes build)"}
	case push.Ref == "":
		return fmt.Errorf("%w: field ref is missing", ErrMalformed)
	default:
		return &Ignored{Reason: "push to " + push.Ref + " is not a branch"}
	}
	return nil
}

// normalizeSHA validates a commit id (SHA-1 or SHA-256 object format) and
// returns it in lower case.
func normalizeSHA(field, s string) (string, error) {
	if len(s) != 40 && len(s) != 64 {
		return "", fmt.Errorf("%w: field %s %q is not a commit id", ErrMalformed, field, units.Truncate(s, 80))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return "", fmt.Errorf("%w: field %s %q is not a commit id", ErrMalformed, field, units.Truncate(s, 80))
		}
	}
	return strings.ToLower(s), nil
}

// ignoredOrNil keeps the contract that a malformed delivery yields no Push
// while an ignored one still reports its repository.
func ignoredOrNil(push *Push, err error) (*Push, error) {
	var ig *Ignored
	if errors.As(err, &ig) {
		return push, err
	}
	return nil, err
}

func isZeroSHA(s string) bool {
	return s != "" && strings.Trim(s, "0") == ""
}

func appendURLs(dst []string, urls ...string) []string {
	for _, u := range urls {
		if u != "" {
			dst = append(dst, u)
		}
	}
	return dst
}

// singleUpdate records the one branch update of a GitHub or GitLab push.
func singleUpdate(push *Push) {
	push.Updates = []Update{{Ref: push.Ref, Branch: push.Branch, After: push.After, HeadMessage: push.HeadMessage}}
}
