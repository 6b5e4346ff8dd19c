package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
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

// Push is what a delivery says about one updated branch. Fields are copied
// verbatim from the payload and are only trustworthy once Verify succeeded.
type Push struct {
	Provider Provider
	// Event is the provider's event name (X-GitHub-Event, X-Gitlab-Event or
	// the payload's object_kind, X-Event-Key).
	Event string
	// DeliveryID identifies the delivery; a provider's redelivery of the same
	// event carries the same id, which is what duplicate detection keys on.
	DeliveryID string
	// RepoURLs lists every URL the payload gives for the repository (clone,
	// ssh, http, web page), so a configured URL in any of these forms matches.
	RepoURLs     []string
	RepoFullName string
	Ref          string
	Branch       string
	Tag          string
	// After is the new head commit (lower-case hex).
	After       string
	Deleted     bool
	Pusher      string
	HeadMessage string
}

// Parse decodes a delivery. It returns:
//
//   - (*Push, nil) for a push to a branch, with Branch and After set;
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
		return "", fmt.Errorf("%w: field %s %q is not a commit id", ErrMalformed, field, truncate(s, 80))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return "", fmt.Errorf("%w: field %s %q is not a commit id", ErrMalformed, field, truncate(s, 80))
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

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func appendURLs(dst []string, urls ...string) []string {
	for _, u := range urls {
		if u != "" {
			dst = append(dst, u)
		}
	}
	return dst
}

// --- GitHub ---------------------------------------------------------------

type githubPayload struct {
	Ref        string `json:"ref"`
	After      string `json:"after"`
	Deleted    bool   `json:"deleted"`
	Repository *struct {
		FullName string `json:"full_name"`
		CloneURL string `json:"clone_url"`
		SSHURL   string `json:"ssh_url"`
		HTMLURL  string `json:"html_url"`
		GitURL   string `json:"git_url"`
	} `json:"repository"`
	HeadCommit *struct {
		Message string `json:"message"`
	} `json:"head_commit"`
	Pusher *struct {
		Name string `json:"name"`
	} `json:"pusher"`
	Sender *struct {
		Login string `json:"login"`
	} `json:"sender"`
}

func parseGitHub(h http.Header, body []byte) (*Push, error) {
	event := h.Get("X-GitHub-Event")
	if event == "" {
		return nil, fmt.Errorf("%w: header X-GitHub-Event is missing; is this webhook configured as a GitHub webhook?", ErrMalformed)
	}
	var pl githubPayload
	if err := decodeJSON(body, &pl); err != nil {
		return nil, err
	}
	push := &Push{Provider: GitHub, Event: event, DeliveryID: h.Get("X-GitHub-Delivery"), Ref: pl.Ref, Deleted: pl.Deleted}
	if r := pl.Repository; r != nil {
		push.RepoFullName = r.FullName
		push.RepoURLs = appendURLs(nil, r.CloneURL, r.SSHURL, r.HTMLURL, r.GitURL)
	}
	if pl.Pusher != nil {
		push.Pusher = pl.Pusher.Name
	} else if pl.Sender != nil {
		push.Pusher = pl.Sender.Login
	}
	if pl.HeadCommit != nil {
		push.HeadMessage = pl.HeadCommit.Message
	}
	switch event {
	case "ping":
		return push, &Ignored{Reason: "ping event (webhook is reachable)"}
	case "push":
	default:
		return push, &Ignored{Reason: "event " + truncate(event, 64) + " is not a push"}
	}
	if pl.Repository == nil {
		return nil, fmt.Errorf("%w: field repository is missing", ErrMalformed)
	}
	if err := classifyRef(push); err != nil {
		return ignoredOrNil(push, err)
	}
	if pl.Deleted || isZeroSHA(pl.After) {
		push.Deleted = true
		return push, &Ignored{Reason: "deletion of branch " + push.Branch}
	}
	after, err := normalizeSHA("after", pl.After)
	if err != nil {
		return nil, err
	}
	push.After = after
	return push, nil
}

// --- GitLab ---------------------------------------------------------------

type gitlabPayload struct {
	ObjectKind   string  `json:"object_kind"`
	Ref          string  `json:"ref"`
	After        string  `json:"after"`
	CheckoutSHA  *string `json:"checkout_sha"`
	UserName     string  `json:"user_name"`
	UserUsername string  `json:"user_username"`
	Project      *struct {
		PathWithNamespace string `json:"path_with_namespace"`
		GitHTTPURL        string `json:"git_http_url"`
		GitSSHURL         string `json:"git_ssh_url"`
		WebURL            string `json:"web_url"`
	} `json:"project"`
	Commits []struct {
		ID      string `json:"id"`
		Message string `json:"message"`
	} `json:"commits"`
}

func parseGitLab(h http.Header, body []byte) (*Push, error) {
	var pl gitlabPayload
	if err := decodeJSON(body, &pl); err != nil {
		return nil, err
	}
	event := h.Get("X-Gitlab-Event")
	if event == "" {
		event = pl.ObjectKind
	}
	if event == "" {
		return nil, fmt.Errorf("%w: neither header X-Gitlab-Event nor field object_kind is set; is this webhook configured as a GitLab webhook?", ErrMalformed)
	}
	// Idempotency-Key stays the same across GitLab's retries of one event,
	// which is exactly what duplicate detection needs; older GitLab versions
	// only send X-Gitlab-Event-UUID.
	delivery := h.Get("Idempotency-Key")
	if delivery == "" {
		delivery = h.Get("X-Gitlab-Event-UUID")
	}
	push := &Push{Provider: GitLab, Event: event, DeliveryID: delivery, Ref: pl.Ref}
	if p := pl.Project; p != nil {
		push.RepoFullName = p.PathWithNamespace
		push.RepoURLs = appendURLs(nil, p.GitHTTPURL, p.GitSSHURL, p.WebURL)
	}
	push.Pusher = pl.UserUsername
	if push.Pusher == "" {
		push.Pusher = pl.UserName
	}
	switch pl.ObjectKind {
	case "push":
	case "tag_push":
		push.Tag = strings.TrimPrefix(pl.Ref, "refs/tags/")
		return push, &Ignored{Reason: "tag push " + truncate(push.Tag, 128) + " (only branch pushes build)"}
	case "":
		return nil, fmt.Errorf("%w: field object_kind is missing", ErrMalformed)
	default:
		return push, &Ignored{Reason: "event " + truncate(pl.ObjectKind, 64) + " is not a push"}
	}
	if pl.Project == nil {
		return nil, fmt.Errorf("%w: field project is missing", ErrMalformed)
	}
	if err := classifyRef(push); err != nil {
		return ignoredOrNil(push, err)
	}
	if isZeroSHA(pl.After) {
		push.Deleted = true
		return push, &Ignored{Reason: "deletion of branch " + push.Branch}
	}
	// checkout_sha is the commit GitLab considers the branch head; it equals
	// after for ordinary pushes and is preferred when present.
	head := pl.After
	if pl.CheckoutSHA != nil && *pl.CheckoutSHA != "" {
		head = *pl.CheckoutSHA
	}
	after, err := normalizeSHA("after", head)
	if err != nil {
		return nil, err
	}
	push.After = after
	for i := len(pl.Commits) - 1; i >= 0; i-- {
		if strings.EqualFold(pl.Commits[i].ID, after) {
			push.HeadMessage = pl.Commits[i].Message
			break
		}
	}
	return push, nil
}

// --- Bitbucket Cloud ------------------------------------------------------

type bitbucketRef struct {
	Type   string `json:"type"`
	Name   string `json:"name"`
	Target *struct {
		Hash    string `json:"hash"`
		Message string `json:"message"`
	} `json:"target"`
}

type bitbucketPayload struct {
	Actor *struct {
		DisplayName string `json:"display_name"`
		Nickname    string `json:"nickname"`
	} `json:"actor"`
	Repository *struct {
		FullName string `json:"full_name"`
		Links    struct {
			HTML struct {
				Href string `json:"href"`
			} `json:"html"`
		} `json:"links"`
	} `json:"repository"`
	Push *struct {
		Changes []struct {
			New *bitbucketRef `json:"new"`
			Old *bitbucketRef `json:"old"`
		} `json:"changes"`
	} `json:"push"`
}

// Bitbucket Cloud webhooks carry no clone URLs, only the web page; the clone
// URLs are derived from it so configs written with either form match.
func bitbucketURLs(fullName, html string) []string {
	urls := appendURLs(nil, html)
	if fullName != "" {
		urls = append(urls,
			"https://bitbucket.org/"+fullName+".git",
			"git@bitbucket.org:"+fullName+".git")
	}
	return urls
}

func parseBitbucket(h http.Header, body []byte) (*Push, error) {
	event := h.Get("X-Event-Key")
	if event == "" {
		return nil, fmt.Errorf("%w: header X-Event-Key is missing; is this webhook configured as a Bitbucket Cloud webhook?", ErrMalformed)
	}
	var pl bitbucketPayload
	if err := decodeJSON(body, &pl); err != nil {
		return nil, err
	}
	push := &Push{Provider: Bitbucket, Event: event, DeliveryID: h.Get("X-Request-UUID")}
	if r := pl.Repository; r != nil {
		push.RepoFullName = r.FullName
		push.RepoURLs = bitbucketURLs(r.FullName, r.Links.HTML.Href)
	}
	if a := pl.Actor; a != nil {
		push.Pusher = a.Nickname
		if push.Pusher == "" {
			push.Pusher = a.DisplayName
		}
	}
	if event != "repo:push" {
		return push, &Ignored{Reason: "event " + truncate(event, 64) + " is not a push"}
	}
	if pl.Repository == nil {
		return nil, fmt.Errorf("%w: field repository is missing", ErrMalformed)
	}
	if pl.Push == nil || len(pl.Push.Changes) == 0 {
		return nil, fmt.Errorf("%w: field push.changes is missing or empty", ErrMalformed)
	}
	// One Bitbucket delivery may bundle several ref updates. The first
	// branch update wins; a delivery updating several branches at once is
	// rare (git push --all) and each branch builds again on its next push.
	var ignored *Ignored
	for _, ch := range pl.Push.Changes {
		if ch.New != nil && ch.New.Type == "branch" {
			if ch.New.Name == "" {
				return nil, fmt.Errorf("%w: field push.changes[].new.name is missing", ErrMalformed)
			}
			if ch.New.Target == nil {
				return nil, fmt.Errorf("%w: field push.changes[].new.target is missing", ErrMalformed)
			}
			after, err := normalizeSHA("push.changes[].new.target.hash", ch.New.Target.Hash)
			if err != nil {
				return nil, err
			}
			*push = Push{Provider: push.Provider, Event: push.Event, DeliveryID: push.DeliveryID,
				RepoURLs: push.RepoURLs, RepoFullName: push.RepoFullName, Pusher: push.Pusher,
				Ref: "refs/heads/" + ch.New.Name, Branch: ch.New.Name, After: after,
				HeadMessage: ch.New.Target.Message}
			return push, nil
		}
		if ignored != nil {
			continue // describe the first non-building change only
		}
		switch {
		case ch.New == nil && ch.Old != nil && ch.Old.Type == "branch":
			push.Deleted, push.Branch, push.Ref = true, ch.Old.Name, "refs/heads/"+ch.Old.Name
			ignored = &Ignored{Reason: "deletion of branch " + truncate(ch.Old.Name, 128)}
		case ch.New == nil:
			push.Deleted = true
			ignored = &Ignored{Reason: "ref deletion"}
		case ch.New.Type == "tag" || ch.New.Type == "annotated_tag":
			push.Tag, push.Ref = ch.New.Name, "refs/tags/"+ch.New.Name
			ignored = &Ignored{Reason: "tag push " + truncate(ch.New.Name, 128) + " (only branch pushes build)"}
		default:
			ignored = &Ignored{Reason: "update of a " + truncate(ch.New.Type, 32) + " ref"}
		}
	}
	return push, ignored
}
