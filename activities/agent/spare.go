package agent

import (
	"context"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mageflow/mageflow/internal/host/hostops"
)

// spareWait bounds how long a Prepare waits for a spare still being
// staged before cancelling it: what is left of the staging is less work
// than the delta creating every directory itself.
const spareWait = 10 * time.Second

// spareNice is the staging thread's nice value: the host's PHP and nginx
// come first.
const spareNice = 10

// spares stages at most one spare tree per releases directory, in the
// background after Prune (hostops.StageSpare). Prepare and Prune settle
// the staging of their releases directory before touching the slot, so
// nothing else writes to it meanwhile. The zero value is ready to use.
type spares struct {
	mu      sync.Mutex
	running map[string]*staging
}

type staging struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// start stages a spare of release id under releasesDir unless one is
// being staged there already.
func (s *spares) start(releasesDir, id string) {
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
		t := time.Now()
		if err := hostops.StageSpare(ctx, releasesDir, id); err != nil {
			slog.Warn("no spare tree staged; the next delta prepare creates every directory", "release", id, "error", err)
			return
		}
		slog.Info("spare tree staged for the next delta prepare", "release", id, "seconds", time.Since(t).Seconds())
	}()
}

// settle waits up to wait for the staging under releasesDir to finish,
// then cancels it and waits for it to clean up.
func (s *spares) settle(releasesDir string, wait time.Duration) {
	s.mu.Lock()
	st := s.running[releasesDir]
	s.mu.Unlock()
	if st == nil {
		return
	}
	select {
	case <-st.done:
		return
	case <-time.After(wait):
	}
	st.cancel()
	<-st.done
}

// stopAll cancels every staging and waits for each to clean up.
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

// StopSpares cancels the spare trees being staged in the background and
// waits until their work directories are removed: on shutdown, and in
// tests before their directories go. A function, not a method: every
// exported method of HostActivities is registered as an activity.
func StopSpares(h *HostActivities) { h.spares.stopAll() }
