package agent

import (
	"context"
	"log/slog"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mageflow/mageflow/internal/build/artifact"
	"github.com/mageflow/mageflow/internal/host/hostops"
)

// spareWait bounds how long a Prepare waits for a spare still being
// staged before cancelling it and creating every directory itself (about
// a second for a Magento-sized release): a staging at nice 10 on a busy
// host can take ten (benchdeploy), and a deploy must not wait for it.
const spareWait = 2 * time.Second

// spareMinFree is the least free space a spare staging leaves on the
// releases' file system (or the host's min_free_bytes when larger).
const spareMinFree = 1 << 30

// spareNice is the background thread's nice value: the host's PHP and
// nginx come first.
const spareNice = 10

// spares runs, per releases directory, the background work after Prune
// (at most one at a time): stage a spare tree into an empty recycle slot
// (hostops.StageSpare), then hash current's files into the agent's
// VerifiedInodes once its links and Prune's unlinks are RacyMargin old,
// so the next delta need not read them. Prepare and Prune settle it
// before touching releases/. The zero value is ready to use.
type spares struct {
	mu      sync.Mutex
	running map[string]*staging
}

type staging struct {
	cancel  context.CancelFunc
	done    chan struct{}
	hashing atomic.Bool // past the staging: cancelling loses nothing
}

// start runs the background work for release id under releasesDir
// (stage: a spare goes into the slot, in place of replace's tree when
// that is not "") unless it runs there already.
func (s *spares) start(releasesDir, id string, stage bool, replace string, minFree uint64, v *artifact.VerifiedInodes) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running == nil {
		s.running = map[string]*staging{}
	}
	if _, busy := s.running[releasesDir]; busy {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	st := &staging{cancel: cancel, done: make(chan struct{})}
	s.running[releasesDir] = st
	go func() {
		defer func() {
			s.mu.Lock()
			delete(s.running, releasesDir)
			s.mu.Unlock()
			cancel()
			close(st.done)
		}()
		// The thread is discarded when this goroutine ends locked, so
		// its nice value never reaches other goroutines.
		runtime.LockOSThread()
		_ = unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), spareNice)
		if stage {
			t := time.Now()
			if err := hostops.StageSpare(ctx, releasesDir, id, replace, minFree); ctx.Err() != nil {
				slog.Info("spare staging cancelled: a prepare or prune came first", "release", id)
				return
			} else if err != nil {
				slog.Warn("no spare tree staged; the next delta prepare creates every directory", "release", id, "error", err)
			} else {
				slog.Info("spare tree staged for the next delta prepare", "release", id, "seconds", time.Since(t).Seconds())
			}
		}
		st.hashing.Store(true)
		hashCurrent(ctx, filepath.Join(releasesDir, id), v)
	}()
}

// hashCurrent waits until the last links and unlinks are RacyMargin old,
// then hashes the release dir into v.
func hashCurrent(ctx context.Context, dir string, v *artifact.VerifiedInodes) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(artifact.RacyMargin + 100*time.Millisecond):
	}
	t := time.Now()
	n, err := v.HashTree(ctx, dir)
	if err != nil && ctx.Err() == nil {
		slog.Warn("hashing current for the next delta prepare failed; it reads every file", "dir", dir, "error", err)
		return
	}
	slog.Info("current hashed for the next delta prepare", "dir", dir, "files", n, "seconds", time.Since(t).Seconds())
}

// settle lets the work under releasesDir finish its staging, up to wait,
// then cancels it (hashing is cancelled at once: what it recorded stays
// valid) and waits for it to clean up.
func (s *spares) settle(releasesDir string, wait time.Duration) {
	s.mu.Lock()
	st := s.running[releasesDir]
	s.mu.Unlock()
	if st == nil {
		return
	}
	if !st.hashing.Load() {
		timer := time.NewTimer(wait)
		defer timer.Stop()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
	waiting:
		for !st.hashing.Load() {
			select {
			case <-st.done:
				return
			case <-timer.C:
				break waiting
			case <-tick.C:
			}
		}
	}
	st.cancel()
	<-st.done
}

// stopAll cancels every background work and waits for each to clean up.
func (s *spares) stopAll() {
	s.mu.Lock()
	var all []*staging
	for _, st := range s.running {
		all = append(all, st)
	}
	s.mu.Unlock()
	for _, st := range all {
		st.cancel()
		<-st.done
	}
}

// WarmUp does, for every app with a current release on this agent's
// host, the background work Prune starts after a deploy: a spare of
// current when the recycle slot is empty (a staging the last agent
// stopped was removed, not finished) or unlike current, and the hashing
// of current's files, whose record lives in memory only. Without it the
// first delta after an agent restart reads every base file, and may find
// nothing to recycle. One app at a time, until ctx ends; Prepare and
// Prune settle it like the work after Prune. The agent runs it once as it
// starts. A function, not a method, for the reason StopSpares gives.
func WarmUp(ctx context.Context, h *HostActivities) {
	if h.Config == nil {
		return
	}
	for _, name := range h.Config.AppNames() {
		if ctx.Err() != nil {
			return
		}
		c, err := h.resolve(HostTarget{Host: h.Host, App: name})
		if err != nil {
			return // the host is not configured: every activity says so
		}
		cur, err := hostops.ReadCurrent(c.root, name)
		if err != nil || cur == "" {
			continue // not deployed here, or current is not ours
		}
		slot, err := hostops.RecycleSlot(c.releases())
		if err != nil {
			slog.Warn("warm-up: cannot read the recycle slot", "app", name, "error", err)
			continue
		}
		h.startBackground(c, cur, slot)
		h.spares.wait(ctx, c.releases())
	}
}

// wait returns once the work under releasesDir ended, or ctx did.
func (s *spares) wait(ctx context.Context, releasesDir string) {
	s.mu.Lock()
	st := s.running[releasesDir]
	s.mu.Unlock()
	if st == nil {
		return
	}
	select {
	case <-st.done:
	case <-ctx.Done():
	}
}

// StopSpares cancels the background work after Prune and waits until a
// spare tree half staged is removed: on shutdown, and in tests before
// their directories go. A function, not a method: every exported method
// of HostActivities is registered as an activity.
func StopSpares(h *HostActivities) { h.spares.stopAll() }
