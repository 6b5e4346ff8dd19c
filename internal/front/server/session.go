package server

import (
	"sync"
	"time"
)

// maxRevoked bounds the revocation set: a few hundred KiB. Only someone who
// can log in adds to it (one entry per logout of an unexpired session).
const maxRevoked = 10000

// Session kinds: how the session was obtained, which decides who it is for
// the requester-cannot-approve rule (see principal.Identity).
const (
	kindToken = "token"
	kindBasic = "basic"
)

type sessionData struct {
	User    string `json:"u"`
	Expires int64  `json:"e"`
	Nonce   string `json:"n"`
	// Issued is the login time (Unix milliseconds); Kind is kindToken or
	// kindBasic.
	Issued int64  `json:"i"`
	Kind   string `json:"k"`
}

// revocations remembers logged-out sessions until they expire, so a cookie
// copied before a logout is refused after it. The set is bounded: when it
// is full the entry issued earliest is dropped and every session issued at
// or before it is refused from then on (the watermark), which errs on the
// side of logging people out, never of forgetting a logout.
//
// It lives in the server process. The watermark starts at the process start,
// so a restart (which forgets the set) logs everyone out instead of reviving
// the sessions logged out before it. Several `mageflow serve` replicas do not
// share their sets: run one, or make the load balancer sticky.
type revocations struct {
	mu        sync.Mutex
	max       int
	nonces    map[string]revoked
	watermark int64 // sessions issued before or at this time are refused
}

type revoked struct{ issued, expires int64 }

func newRevocations(start time.Time, max int) *revocations {
	return &revocations{max: max, nonces: map[string]revoked{}, watermark: start.UnixMilli() - 1}
}

// valid reports whether a signed, unexpired session may still be used.
func (v *revocations) valid(s sessionData) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if s.Issued <= v.watermark {
		return false
	}
	_, gone := v.nonces[s.Nonce]
	return !gone
}

// revoke refuses s from now on.
func (v *revocations) revoke(s sessionData, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if s.Issued <= v.watermark {
		return // already refused
	}
	if len(v.nonces) >= v.max {
		v.prune(now.Unix())
	}
	for len(v.nonces) >= v.max {
		v.evictOldest()
	}
	v.nonces[s.Nonce] = revoked{issued: s.Issued, expires: s.Expires}
}

// prune drops entries whose session has expired anyway.
func (v *revocations) prune(now int64) {
	for n, r := range v.nonces {
		if r.expires < now {
			delete(v.nonces, n)
		}
	}
}

// evictOldest drops the entry issued earliest and raises the watermark to
// it, so that session (and every older one) stays refused.
func (v *revocations) evictOldest() {
	oldest, first := "", true
	var at int64
	for n, r := range v.nonces {
		if first || r.issued < at {
			oldest, at, first = n, r.issued, false
		}
	}
	delete(v.nonces, oldest)
	v.watermark = max(v.watermark, at)
	for n, r := range v.nonces {
		if r.issued <= v.watermark {
			delete(v.nonces, n)
		}
	}
}
