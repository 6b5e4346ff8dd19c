package webhook

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/mageflow/mageflow/internal/platform/units"
)

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
	// Idempotency-Key stays the same across GitLab's retries and manual
	// resends of one event, which is exactly what duplicate detection needs;
	// older GitLab versions only send X-Gitlab-Event-UUID (one per event).
	// X-Gitlab-Webhook-UUID is not used: it changes with every attempt.
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
		return push, &Ignored{Reason: "tag push " + units.Truncate(push.Tag, 128) + " (only branch pushes build)"}
	case "":
		return nil, fmt.Errorf("%w: field object_kind is missing", ErrMalformed)
	default:
		return push, &Ignored{Reason: "event " + units.Truncate(pl.ObjectKind, 64) + " is not a push"}
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
	singleUpdate(push)
	return push, nil
}
