package webhook

import (
	"fmt"
	"net/http"

	"github.com/mageflow/mageflow/internal/platform/units"
)

type bitbucketRef struct {
	Type   string `json:"type"`
	Name   string `json:"name"`
	Target *struct {
		Hash    string `json:"hash"`
		Message string `json:"message"`
	} `json:"target"`
}

type bitbucketChange struct {
	New *bitbucketRef `json:"new"`
	Old *bitbucketRef `json:"old"`
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
		Changes []bitbucketChange `json:"changes"`
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
	// X-Request-UUID names the delivery and stays the same across
	// Bitbucket's retries (X-Attempt-Number counts them); X-Hook-UUID names
	// the webhook, the same for every delivery, and is no delivery id.
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
		return push, &Ignored{Reason: "event " + units.Truncate(event, 64) + " is not a push"}
	}
	if pl.Repository == nil {
		return nil, fmt.Errorf("%w: field repository is missing", ErrMalformed)
	}
	if pl.Push == nil || len(pl.Push.Changes) == 0 {
		return nil, fmt.Errorf("%w: field push.changes is missing or empty", ErrMalformed)
	}
	// One delivery may bundle several ref updates (git push --all): every
	// branch update is returned, so a mapped branch is never hidden behind
	// an unmapped one or a tag.
	var ignored *Ignored
	for _, ch := range pl.Push.Changes {
		if ch.New != nil && ch.New.Type == "branch" {
			u, err := bitbucketUpdate(ch.New)
			if err != nil {
				return nil, err
			}
			push.Updates = append(push.Updates, u)
			continue
		}
		if ignored == nil && len(push.Updates) == 0 {
			ignored = describeSkipped(push, ch) // the first non-building change
		}
	}
	if len(push.Updates) == 0 {
		return push, ignored
	}
	first := push.Updates[0]
	push.Ref, push.Branch, push.After, push.HeadMessage = first.Ref, first.Branch, first.After, first.HeadMessage
	push.Deleted, push.Tag = false, ""
	return push, nil
}

func bitbucketUpdate(n *bitbucketRef) (Update, error) {
	if n.Name == "" {
		return Update{}, fmt.Errorf("%w: field push.changes[].new.name is missing", ErrMalformed)
	}
	if n.Target == nil {
		return Update{}, fmt.Errorf("%w: field push.changes[].new.target is missing", ErrMalformed)
	}
	after, err := normalizeSHA("push.changes[].new.target.hash", n.Target.Hash)
	if err != nil {
		return Update{}, err
	}
	return Update{Ref: "refs/heads/" + n.Name, Branch: n.Name, After: after, HeadMessage: n.Target.Message}, nil
}

// describeSkipped records on push why a change does not build.
func describeSkipped(push *Push, ch bitbucketChange) *Ignored {
	switch {
	case ch.New == nil && ch.Old != nil && ch.Old.Type == "branch":
		push.Deleted, push.Branch, push.Ref = true, ch.Old.Name, "refs/heads/"+ch.Old.Name
		return &Ignored{Reason: "deletion of branch " + units.Truncate(ch.Old.Name, 128)}
	case ch.New == nil:
		push.Deleted = true
		return &Ignored{Reason: "ref deletion"}
	case ch.New.Type == "tag" || ch.New.Type == "annotated_tag":
		push.Tag, push.Ref = ch.New.Name, "refs/tags/"+ch.New.Name
		return &Ignored{Reason: "tag push " + units.Truncate(ch.New.Name, 128) + " (only branch pushes build)"}
	default:
		return &Ignored{Reason: "update of a " + units.Truncate(ch.New.Type, 32) + " ref"}
	}
}
