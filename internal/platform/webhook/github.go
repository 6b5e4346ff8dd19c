package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/mageflow/mageflow/internal/platform/units"
)

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
		// PushedAt is a Unix time in push payloads (an RFC 3339 string in
		// other events). GitHub sets it when it receives the push.
		PushedAt json.RawMessage `json:"pushed_at"`
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

// formContentType is GitHub's default webhook content type: the JSON
// document is the value of the form field "payload".
const formContentType = "application/x-www-form-urlencoded"

// githubJSON returns the JSON document of a delivery sent either as
// application/json or as a form. The signature covers the raw body, form
// encoding included, so this must never be what Verify is given.
func githubJSON(h http.Header, body []byte) ([]byte, error) {
	mt, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	if mt != formContentType && !bytes.HasPrefix(body, []byte("payload=")) {
		return body, nil
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, fmt.Errorf("%w: form-encoded body cannot be decoded: %v", ErrMalformed, err)
	}
	payload := form["payload"]
	if len(payload) != 1 || len(form) != 1 {
		return nil, fmt.Errorf("%w: a form-encoded delivery must have exactly one field, payload (or set the webhook's content type to application/json)", ErrMalformed)
	}
	return []byte(payload[0]), nil
}

// parsePushedAt reads repository.pushed_at as Unix seconds or RFC 3339.
func parsePushedAt(raw json.RawMessage) (time.Time, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return time.Time{}, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return time.Time{}, fmt.Errorf("%w: field repository.pushed_at %q is not a time", ErrMalformed, units.Truncate(s, 40))
		}
		return t, nil
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil || n <= 0 || n > 1<<40 {
		return time.Time{}, fmt.Errorf("%w: field repository.pushed_at %s is not a Unix time", ErrMalformed, units.Truncate(string(raw), 40))
	}
	return time.Unix(n, 0).UTC(), nil
}

func parseGitHub(h http.Header, body []byte) (*Push, error) {
	event := h.Get("X-GitHub-Event")
	if event == "" {
		return nil, fmt.Errorf("%w: header X-GitHub-Event is missing; is this webhook configured as a GitHub webhook?", ErrMalformed)
	}
	doc, err := githubJSON(h, body)
	if err != nil {
		return nil, err
	}
	var pl githubPayload
	if err := decodeJSON(doc, &pl); err != nil {
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
		return push, &Ignored{Reason: "event " + units.Truncate(event, 64) + " is not a push"}
	}
	if pl.Repository == nil {
		return nil, fmt.Errorf("%w: field repository is missing", ErrMalformed)
	}
	if push.PushedAt, err = parsePushedAt(pl.Repository.PushedAt); err != nil {
		return nil, err
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
	singleUpdate(push)
	return push, nil
}
