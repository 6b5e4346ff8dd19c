package server

import (
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

const (
	// limitWindow is how long failed credentials are counted, and how long
	// an address (or everyone, past the global limit) stays blocked once
	// over the limit.
	limitWindow = time.Minute
	// limitPerAddr failures per window block one client address.
	limitPerAddr = 5
	// limitGlobal failures per window from all addresses together block
	// every password check: a guesser with many addresses gets no more than
	// this many tries a minute.
	limitGlobal = 100
	// limitAddrs bounds the per-address counters kept (least recently
	// failing addresses are forgotten first; the global limit still counts
	// them).
	limitAddrs = 10000
)

// failWindow counts failures since start.
type failWindow struct {
	start time.Time
	fails int
}

// limiter counts failed credentials per client address and overall. A
// blocked address is refused before its credentials are even checked, so
// a right password sent while blocked is refused too and the block cannot
// be used to test guesses. Addresses are r.RemoteAddr only (IPv6 by /64):
// X-Forwarded-For is set by whoever sends the request, so behind a reverse
// proxy every client shares the proxy's budget.
type limiter struct {
	mu     sync.Mutex
	now    func() time.Time
	byAddr *lru[*failWindow]
	global failWindow
}

func newLimiter(now func() time.Time) *limiter {
	return &limiter{now: now, byAddr: newCache[*failWindow](limitAddrs)}
}

// clientKey is the address a request is counted under.
func clientKey(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// blocked returns how long r's address (or everyone) must still wait; zero
// when it may try.
func (l *limiter) blocked(r *http.Request) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	wait := l.global.remaining(now, limitGlobal)
	if w, ok := l.byAddr.get(clientKey(r)); ok {
		wait = max(wait, w.remaining(now, limitPerAddr))
	}
	return wait
}

// fail records a failed check from r's address.
func (l *limiter) fail(r *http.Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.global.add(now)
	key := clientKey(r)
	w, ok := l.byAddr.get(key)
	if !ok {
		w = &failWindow{}
		l.byAddr.add(key, w)
	}
	w.add(now)
}

func (w *failWindow) add(now time.Time) {
	if now.Sub(w.start) >= limitWindow {
		w.start, w.fails = now, 0
	}
	w.fails++
}

func (w *failWindow) remaining(now time.Time, limit int) time.Duration {
	if w.fails < limit {
		return 0
	}
	return max(0, w.start.Add(limitWindow).Sub(now))
}

// retryAfterSeconds rounds a wait up to whole seconds for Retry-After.
func retryAfterSeconds(d time.Duration) int {
	return int((d + time.Second - 1) / time.Second)
}
