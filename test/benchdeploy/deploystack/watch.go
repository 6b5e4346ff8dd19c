package deploystack

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/mageflow/mageflow/internal/host/hostops"
)

// Observation is what the watcher saw of one host's current.
type Observation struct {
	// At is when the read finished: the switch it shows happened before.
	At      time.Time
	Host    string
	Release string
	// Problem is set when current pointed at something not servable: a
	// release without .mageflow-complete, a missing target, or not a
	// symlink at all.
	Problem string
}

func (o Observation) String() string {
	if o.Problem != "" {
		return fmt.Sprintf("%s %s: %s", o.At.Format("15:04:05.000000"), o.Host, o.Problem)
	}
	return fmt.Sprintf("%s %s -> %s", o.At.Format("15:04:05.000000"), o.Host, o.Release)
}

// Watcher polls every host's current: each change is recorded with the time
// it was first seen (an upper bound of when the switch completed, at most
// one interval late), and every read that finds current pointing at an
// incomplete release is recorded as a problem.
type Watcher struct {
	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	changes []Observation
	bad     []Observation
	polls   int
}

// Watch starts polling every interval until Stop.
func (s *Stack) Watch(interval time.Duration) *Watcher {
	w := &Watcher{stop: make(chan struct{})}
	w.wg.Go(func() {
		last := map[string]string{}
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			for _, h := range s.Hosts {
				o := s.look(h)
				w.mu.Lock()
				w.polls++
				if o.Problem != "" {
					w.bad = append(w.bad, o)
				} else if o.Release != last[h.Name] {
					last[h.Name] = o.Release
					w.changes = append(w.changes, o)
				}
				w.mu.Unlock()
			}
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
		}
	})
	return w
}

// look reads current the way nginx resolves it: the link, then the
// release's complete marker.
func (s *Stack) look(h *Host) Observation {
	o := Observation{Host: h.Name}
	link := hostops.CurrentLink(h.Root, s.App)
	target, err := os.Readlink(link)
	o.At = time.Now()
	if errors.Is(err, fs.ErrNotExist) {
		return o // nothing deployed yet
	}
	if err != nil {
		o.Problem = fmt.Sprintf("readlink %s: %v", link, err)
		return o
	}
	o.Release = filepath.Base(target)
	if !filepath.IsAbs(target) {
		target = filepath.Join(filepath.Dir(link), target)
	}
	if fi, err := os.Lstat(filepath.Join(target, hostops.CompleteMarker)); err != nil || !fi.Mode().IsRegular() {
		// Prune never removes current; a missing marker means the
		// switch went to a release Prepare had not finished.
		o.Problem = fmt.Sprintf("current -> %s, which has no %s (%v)", target, hostops.CompleteMarker, err)
	}
	return o
}

// Stop ends polling.
func (w *Watcher) Stop() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	w.wg.Wait()
}

// Changes lists every change seen, in order.
func (w *Watcher) Changes() []Observation {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Observation(nil), w.changes...)
}

// Problems lists every read that found current not servable.
func (w *Watcher) Problems() []Observation {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Observation(nil), w.bad...)
}

// Polls counts the reads so far.
func (w *Watcher) Polls() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.polls
}

// SwitchedAt is when host was first seen on release at or after since.
func (w *Watcher) SwitchedAt(host, release string, since time.Time) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, o := range w.changes {
		if o.Host == host && o.Release == release && !o.At.Before(since) {
			return o.At, true
		}
	}
	return time.Time{}, false
}

// AllSwitchedAt is when the last of hosts was first seen on release at or
// after since: from then on, every new request is served by it.
func (w *Watcher) AllSwitchedAt(hosts []string, release string, since time.Time) (time.Time, error) {
	var last time.Time
	for _, h := range hosts {
		t, ok := w.SwitchedAt(h, release, since)
		if !ok {
			return time.Time{}, fmt.Errorf("host %s was never seen on release %s after %s", h, release, since.Format("15:04:05.000"))
		}
		if t.After(last) {
			last = t
		}
	}
	return last, nil
}
