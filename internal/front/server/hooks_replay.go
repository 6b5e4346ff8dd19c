package server

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/mageflow/mageflow/internal/platform/webhook"
)

// DefaultWebhookMaxAge is how old a push may be when its delivery arrives
// (Options.WebhookMaxAge, config server.webhook_max_age). GitHub delivers
// within seconds; an hour leaves room for a provider's delivery backlog
// while staying far below any Temporal namespace retention, so a delivery
// young enough to pass always meets its own build's workflow id.
const DefaultWebhookMaxAge = time.Hour

// keepEarlier bounds how many superseded commits are remembered per branch.
const keepEarlier = 64

// branchHead is the newest push the server accepted for one app's branch,
// and the commits that branch had before, so a replay of an older push is
// recognised even where the payload carries no push time.
type branchHead struct {
	commit   string
	pushedAt time.Time // zero when the provider gives no push time
	earlier  []string  // commits accepted before commit, oldest first
}

// headsMu makes "is this push older than the newest one? if not, it is the
// newest now" one step, so a replay racing a genuine push cannot slip in.
var headsMu sync.Mutex

func (s *server) now() time.Time {
	if s.opt.clock != nil {
		return s.opt.clock()
	}
	return time.Now()
}

// staleMessage returns why push is too old to build, or "" when it is
// fresh enough or carries no trustworthy push time (GitLab, Bitbucket).
func (s *server) staleMessage(push *webhook.Push, app string) string {
	window := s.opt.WebhookMaxAge
	if window == 0 {
		window = DefaultWebhookMaxAge
	}
	if window < 0 || push.PushedAt.IsZero() {
		return ""
	}
	age := s.now().Sub(push.PushedAt)
	if age <= window {
		return ""
	}
	return fmt.Sprintf("this delivery is of a push made at %s (%s ago), older than the %s the server accepts (server.webhook_max_age): "+
		"an old delivery, redelivered or replayed, is not built, so it cannot rebuild or redeploy an old commit. "+
		"Push again, or build it on purpose: mageflow build --app %s --ref %s",
		push.PushedAt.UTC().Format(time.RFC3339), age.Truncate(time.Second), window, app, push.After)
}

// claimHead records u as the newest push of app's branch unless a newer
// push was already accepted, in which case it returns that one and false.
// A redelivery of the current head is allowed (it joins the same build).
func (s *server) claimHead(app string, u webhook.Update, pushedAt time.Time) (newer branchHead, ok bool) {
	headsMu.Lock()
	defer headsMu.Unlock()
	key := app + "\x00" + u.Branch
	h, known := s.heads.get(key)
	switch {
	case !known:
		s.heads.add(key, branchHead{commit: u.After, pushedAt: pushedAt})
		return branchHead{}, true
	case h.commit == u.After:
		if pushedAt.After(h.pushedAt) {
			h.pushedAt = pushedAt
			s.heads.add(key, h)
		}
		return branchHead{}, true
	case !pushedAt.IsZero() && !h.pushedAt.IsZero():
		// Signed push times order the pushes, whatever their commits: a
		// force-push back to an earlier commit is newer and allowed.
		if pushedAt.Before(h.pushedAt) {
			return h, false
		}
	case slices.Contains(h.earlier, u.After):
		// No push times: a commit this branch already moved away from is a
		// replay (or a force-push back, which would only join the finished
		// build of that commit anyway).
		return h, false
	}
	earlier := slices.DeleteFunc(append(slices.Clone(h.earlier), h.commit), func(c string) bool { return c == u.After })
	if len(earlier) > keepEarlier {
		earlier = earlier[len(earlier)-keepEarlier:]
	}
	s.heads.add(key, branchHead{commit: u.After, pushedAt: pushedAt, earlier: earlier})
	return branchHead{}, true
}

// supersededMessage explains a refused older push and how to deploy its
// commit on purpose.
func supersededMessage(app, env string, u webhook.Update, newer branchHead) string {
	when := ""
	if !newer.pushedAt.IsZero() {
		when = " (pushed at " + newer.pushedAt.UTC().Format(time.RFC3339) + ")"
	}
	return fmt.Sprintf("push of %s to %s is older than the push of %s%s this server already accepted for app %s: "+
		"an older push is not built again, so a replayed delivery cannot move %s back. "+
		"To run that commit on purpose: mageflow build --app %s --ref %s, then mageflow deploy --app %s --env %s",
		short12(u.After), u.Branch, short12(newer.commit), when, app, orNone(env), app, u.After, app, orNone(env))
}

func short12(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

func orNone(env string) string {
	if env == "" {
		return "ENV"
	}
	return env
}
