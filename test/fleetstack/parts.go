package fleetstack

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	dockerfleet "github.com/mageflow/mageflow/internal/fleet/docker"
)

// Forwarder relays TCP connections from Addr to a target: the tests' one
// Temporal dev server listens on loopback, which containers cannot reach,
// so the stack exposes it on the docker network's gateway.
type Forwarder struct {
	Addr   string
	ln     net.Listener
	target string
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
}

// Forward listens on listen ("gateway:0" for a free port) and relays every
// connection to target.
func Forward(listen, target string) (*Forwarder, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("fleetstack: listen on %s for the Temporal relay: %w", listen, err)
	}
	f := &Forwarder{Addr: ln.Addr().String(), ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	f.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.wg.Go(func() { f.relay(c) })
		}
	})
	return f, nil
}

func (f *Forwarder) track(c net.Conn, add bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if add {
		f.conns[c] = struct{}{}
	} else {
		delete(f.conns, c)
	}
}

func (f *Forwarder) relay(in net.Conn) {
	out, err := net.DialTimeout("tcp", f.target, 5*time.Second)
	if err != nil {
		in.Close()
		return
	}
	f.track(in, true)
	f.track(out, true)
	defer func() {
		f.track(in, false)
		f.track(out, false)
		in.Close()
		out.Close()
	}()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(out, in); done <- struct{}{} }()
	go func() { _, _ = io.Copy(in, out); done <- struct{}{} }()
	<-done
}

// Close stops listening and cuts every relayed connection.
func (f *Forwarder) Close() {
	f.ln.Close()
	f.mu.Lock()
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// BuildStaticWorker compiles bin/mageflow-worker without cgo into dir: the
// control worker the stack runs.
func BuildStaticWorker(ctx context.Context, dir string) (string, error) {
	return buildStatic(ctx, dir, "mageflow-worker", "github.com/mageflow/mageflow/worker")
}

// BuildStaticAgent compiles bin/mageflow-agent without cgo into dir: the
// agent every instance mounts and runs (--serve-web). MAGEFLOW_AGENT_BIN
// names a prebuilt one (make test builds it once).
func BuildStaticAgent(ctx context.Context, dir string) (string, error) {
	if p := os.Getenv("MAGEFLOW_AGENT_BIN"); p != "" {
		return p, nil
	}
	return buildStatic(ctx, dir, "mageflow-agent", "github.com/mageflow/mageflow/worker/agent")
}

func buildStatic(ctx context.Context, dir, name, pkg string) (string, error) {
	bin := filepath.Join(dir, name)
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("fleetstack: CGO_ENABLED=0 go build %s: %v\n%s", pkg, err, out)
	}
	return bin, nil
}

// DeriveImage makes a new image from base with files added (path → content,
// mode 0644) and tagged ref: a new image id the way a rebuilt AMI is one,
// made by committing a never-started container (no registry, no build).
func DeriveImage(ctx context.Context, docker *client.Client, base, ref string, files map[string]string) (string, error) {
	c, err := docker.ContainerCreate(ctx, &container.Config{Image: base, Cmd: []string{"/bin/true"}}, nil, nil, nil, "")
	if err != nil {
		return "", fmt.Errorf("fleetstack: create a container of %s (build it: internal/fleet/docker/image/build.sh): %w", base, err)
	}
	defer func() {
		_ = docker.ContainerRemove(context.WithoutCancel(ctx), c.ID, container.RemoveOptions{Force: true})
	}()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		body := files[p]
		if err := tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(p, "/"), Mode: 0o644, Size: int64(len(body)), ModTime: time.Unix(0, 0)}); err != nil {
			return "", err
		}
		if _, err := io.WriteString(tw, body); err != nil {
			return "", err
		}
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	if err := docker.CopyToContainer(ctx, c.ID, "/", &buf, container.CopyToContainerOptions{}); err != nil {
		return "", fmt.Errorf("fleetstack: copy files into %s: %w", base, err)
	}
	// The commit keeps base's CMD only when it is restated: the container
	// was created with /bin/true.
	insp, err := docker.ImageInspect(ctx, base)
	if err != nil {
		return "", err
	}
	var changes []string
	if insp.Config != nil && len(insp.Config.Cmd) > 0 {
		changes = append(changes, fmt.Sprintf("CMD %s", jsonArray(insp.Config.Cmd)))
	}
	res, err := docker.ContainerCommit(ctx, c.ID, container.CommitOptions{Reference: ref, Changes: changes})
	if err != nil {
		return "", fmt.Errorf("fleetstack: commit %s: %w", ref, err)
	}
	return res.ID, nil
}

func jsonArray(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return "[" + strings.Join(q, ",") + "]"
}

// Launches records the containers created and started with a label (the
// group's), from the engine's event stream: every instance the provider
// ever launched, including ones removed since.
type Launches struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	all    []Launch
	err    error
}

// Launch is one container created or started.
type Launch struct {
	At        time.Time
	Action    string // "create" or "start"
	Container string
	// Instance is the instance id (its label), Image what the
	// container was created from (as the provider named it).
	Instance, Image string
}

// WatchLaunches starts counting container creations with label=value.
func WatchLaunches(docker *client.Client, label, value string) *Launches {
	ctx, cancel := context.WithCancel(context.Background())
	l := &Launches{cancel: cancel, done: make(chan struct{})}
	msgs, errs := docker.Events(ctx, events.ListOptions{Filters: filters.NewArgs(
		filters.Arg("type", string(events.ContainerEventType)),
		filters.Arg("event", string(events.ActionCreate)),
		filters.Arg("event", string(events.ActionStart)),
		filters.Arg("label", label+"="+value),
	)})
	go func() {
		defer close(l.done)
		for {
			select {
			case m := <-msgs:
				l.mu.Lock()
				l.all = append(l.all, Launch{At: time.Unix(0, m.TimeNano), Action: string(m.Action), Container: m.Actor.ID,
					Instance: m.Actor.Attributes[dockerfleet.LabelInstance], Image: m.Actor.Attributes["image"]})
				l.mu.Unlock()
			case err := <-errs:
				if ctx.Err() == nil {
					l.mu.Lock()
					l.err = err
					l.mu.Unlock()
				}
				return
			}
		}
	}()
	return l
}

// Count is the number of containers created so far; an error if the
// event stream broke (the count would be a lower bound only).
func (l *Launches) Count() (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, x := range l.all {
		if x.Action == string(events.ActionCreate) {
			n++
		}
	}
	return n, l.err
}

// All returns the creations so far.
func (l *Launches) All() []Launch { return l.filter(string(events.ActionCreate)) }

// Starts returns the container starts so far (a warm-pool instance
// leaving the pool is a start without a creation).
func (l *Launches) Starts() []Launch { return l.filter(string(events.ActionStart)) }

func (l *Launches) filter(action string) []Launch {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Launch
	for _, x := range l.all {
		if x.Action == action {
			out = append(out, x)
		}
	}
	return out
}

// Stop ends the watch.
func (l *Launches) Stop() {
	l.cancel()
	<-l.done
}

// MemberSample is one read of nginx's member set.
type MemberSample struct {
	At      time.Time
	Members []string
	Err     string
}

// Members polls the balancer's verify endpoint — what nginx itself serves,
// not what a file says — and keeps every answer.
type Members struct {
	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	samples []MemberSample
}

// WatchMembers polls url every interval until Stop.
func WatchMembers(url string, interval time.Duration) *Members {
	m := &Members{stop: make(chan struct{})}
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	m.wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			s := MemberSample{At: time.Now()}
			ids, err := ReadMembers(c, url)
			s.Members = ids
			if err != nil {
				s.Err = err.Error()
			}
			m.mu.Lock()
			m.samples = append(m.samples, s)
			m.mu.Unlock()
			select {
			case <-m.stop:
				return
			case <-t.C:
			}
		}
	})
	return m
}

// ReadMembers asks nginx's verify endpoint for the member ids.
func ReadMembers(c *http.Client, url string) ([]string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: HTTP %d", url, resp.StatusCode)
	}
	var ids []string
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 64<<10))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			ids = append(ids, l)
		}
	}
	return ids, sc.Err()
}

// Stop ends the polling and returns every sample.
func (m *Members) Stop() []MemberSample {
	select {
	case <-m.stop:
	default:
		close(m.stop)
	}
	m.wg.Wait()
	return m.Samples()
}

// Samples returns the samples so far.
func (m *Members) Samples() []MemberSample {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]MemberSample(nil), m.samples...)
}

// MemberSummary sums up member samples.
type MemberSummary struct {
	N, Errors int
	Min, Max  int
	Ever      []string // every id nginx ever served, sorted
}

// SummarizeMembers returns the smallest and largest set seen and every id.
func SummarizeMembers(samples []MemberSample) MemberSummary {
	s := MemberSummary{Min: -1}
	ever := map[string]bool{}
	for _, m := range samples {
		s.N++
		if m.Err != "" {
			s.Errors++
			continue
		}
		if s.Min < 0 || len(m.Members) < s.Min {
			s.Min = len(m.Members)
		}
		s.Max = max(s.Max, len(m.Members))
		for _, id := range m.Members {
			ever[id] = true
		}
	}
	for id := range ever {
		s.Ever = append(s.Ever, id)
	}
	sort.Strings(s.Ever)
	return s
}

// WaitMembers polls url until ok accepts the member set or ctx ends.
func WaitMembers(ctx context.Context, url string, ok func([]string) bool) ([]string, error) {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var last []string
	var lastErr error
	for {
		ids, err := ReadMembers(c, url)
		if err == nil && ok(ids) {
			return ids, nil
		}
		last, lastErr = ids, err
		select {
		case <-ctx.Done():
			return last, errors.Join(fmt.Errorf("nginx members still %v", last), lastErr, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
