package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/mageflow/mageflow/activities/internal/heartbeat"
	"github.com/mageflow/mageflow/internal/host/lbconf"
)

// Error types of the balancer activities that retrying cannot fix.
const (
	// ErrNginxRejected: `nginx -t` refused the config with the new members;
	// the previous include is back and nginx serves what it did before.
	ErrNginxRejected = "NginxRejected"
	// ErrDrainTimeout: nginx workers from before the member's removal were
	// still finishing requests when the drain's bound ran out. Callers on
	// the scale-in path log it and continue (the bound is the promise).
	ErrDrainTimeout = "DrainTimeout"
)

// LBActivities run on the balancer host's agent (`mageflow-agent --host
// lb1`, the same task queue as its HostActivities:
// HostTaskQueue(host)). The agent owns one nginx include per group
// (internal/host/lbconf): it renders the member set into it, has nginx check and
// reload it, and confirms through nginx itself that the new set is served.
//
// The include is the only state: the current members are read back from
// it, so a restarted agent, a retried activity or a second workflow agree
// on what nginx has. Callers order their changes add-before-remove (a
// replacement is in nginx before the member it replaces leaves); each call
// applies one change set.
type LBActivities struct {
	Host string
	// Upstreams maps a group name to its include's settings.
	Upstreams map[string]LBUpstream
	// Nginx says how to check and reload the balancer's nginx.
	Nginx lbconf.Nginx

	// HTTP asks the verify endpoint (default: no keep-alive, so every
	// request opens a new connection and meets the current workers, and a
	// 2 s timeout).
	HTTP *http.Client
	// VerifyTimeout bounds the wait for nginx to serve a new set after a
	// reload (default 20 s); HeartbeatEvery is how often long waits
	// heartbeat (default 10 s).
	VerifyTimeout  time.Duration
	HeartbeatEvery time.Duration

	// mu serialises changes: every group's include is read by the same
	// nginx, and a reload applies all of them.
	mu sync.Mutex
}

// LBUpstream is one group's include on the balancer.
type LBUpstream struct {
	// File is the include nginx reads in http {}, e.g.
	// /etc/nginx/mageflow/upstream-web.conf.
	File string
	// Name is the upstream name the balancer's proxy_pass refers to.
	Name string
	// Port is the members' port when an address has none.
	Port int
	// VerifyURL is the loopback address the include serves the member set
	// on, e.g. http://127.0.0.1:8181/.mageflow-members (one port per group).
	VerifyURL string
	// Keepalive idle connections per nginx worker to the members; default
	// 16.
	Keepalive int
}

// Member is an instance in a group's upstream: its id and ip:port.
type Member = lbconf.Member

// SetMembersInput is one change set of a group's upstream. Add of a known
// id with another address moves it; Remove of an unknown id is no change.
type SetMembersInput struct {
	Group  string
	Add    []Member
	Remove []string
}

// MembersResult is a group's member set, sorted by id.
type MembersResult struct {
	Members []Member
	// Changed says this call reloaded nginx (false when nginx already
	// served exactly this set).
	Changed bool
	// Serving says nginx answered the verify endpoint with exactly this set
	// (SetMembers only returns once it does).
	Serving bool
	// Took is how long the change took: render, nginx -t, reload, verify.
	Took time.Duration `json:",omitempty"`
}

// DrainInput waits for a removed member's in-flight requests.
type DrainInput struct {
	Group string
	ID    string
	// Timeout bounds the wait (default 60 s).
	Timeout time.Duration
}

// LBProgress is the heartbeat detail of the balancer activities.
type LBProgress struct {
	Step    string
	Workers []int `json:",omitempty"`
}

// Validate checks every group's settings; the agent calls it at start so a
// mistake shows before the first scale-out needs the balancer.
func (l *LBActivities) Validate() error {
	verify := map[string]string{}
	files := map[string]string{}
	names := map[string]string{}
	groups := make([]string, 0, len(l.Upstreams))
	for g := range l.Upstreams {
		groups = append(groups, g)
	}
	sort.Strings(groups)
	for _, g := range groups {
		u := l.Upstreams[g]
		if err := u.conf(g).Validate(); err != nil {
			return err
		}
		if u.File == "" || !strings.HasPrefix(u.File, "/") {
			return fmt.Errorf("balancer group %s: file %q must be an absolute path (the include nginx reads)", g, u.File)
		}
		for _, c := range []struct {
			seen map[string]string
			key  string
			what string
		}{{verify, u.VerifyURL, "verify URL"}, {files, u.File, "file"}, {names, u.Name, "upstream name"}} {
			if other, ok := c.seen[c.key]; ok {
				return fmt.Errorf("balancer groups %s and %s share the %s %s: every group needs its own", other, g, c.what, c.key)
			}
			c.seen[c.key] = g
		}
	}
	return nil
}

// EnsureIncludes writes an empty include for every group whose file does
// not exist yet, without touching nginx: nginx refuses to start (and
// `nginx -t` fails) while an include it names is missing, so the agent calls
// this at start, before the operator's nginx first loads the includes.
// Existing files are left alone: they hold the current members.
func (l *LBActivities) EnsureIncludes() error {
	if err := l.Validate(); err != nil {
		return err
	}
	for g, u := range l.Upstreams {
		if _, err := os.Stat(u.File); !errors.Is(err, os.ErrNotExist) {
			continue
		}
		text, _, err := lbconf.Render(u.conf(g), nil)
		if err != nil {
			return err
		}
		if err := lbconf.WriteFile(u.File, text); err != nil {
			return err
		}
	}
	return nil
}

func (u LBUpstream) conf(group string) lbconf.Upstream {
	return lbconf.Upstream{Group: group, Name: u.Name, Port: u.Port, VerifyURL: u.VerifyURL, Keepalive: u.Keepalive}
}

func (l *LBActivities) upstream(group string) (LBUpstream, lbconf.Upstream, error) {
	u, ok := l.Upstreams[group]
	if !ok {
		return LBUpstream{}, lbconf.Upstream{}, nonRetryable(ErrConfig, "balancer %s has no upstream for group %q: add it to the balancer agent's config and restart the agent", l.Host, group)
	}
	c := u.conf(group)
	if err := c.Validate(); err != nil {
		return u, c, nonRetryable(ErrConfig, "balancer %s: %v", l.Host, err)
	}
	if u.File == "" {
		return u, c, nonRetryable(ErrConfig, "balancer %s: group %s has no include file", l.Host, group)
	}
	return u, c, nil
}

// current reads the group's include: its bytes (nil when absent) and
// members.
func (l *LBActivities) current(u LBUpstream, c lbconf.Upstream) ([]byte, *lbconf.File, error) {
	data, err := os.ReadFile(u.File)
	if errors.Is(err, os.ErrNotExist) {
		return nil, &lbconf.File{Group: c.Group, Name: c.Name, Sum: lbconf.Sum(c.Name, nil), Verified: true}, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("balancer %s: read %s: %w", l.Host, u.File, err)
	}
	f, err := lbconf.Parse(data)
	if errors.Is(err, lbconf.ErrNotMageflow) {
		return nil, nil, nonRetryable(ErrConfig, "balancer %s: %s exists but was not written by mageflow (no marker on its first line): move it away, or point group %s at another file", l.Host, u.File, c.Group)
	}
	if err != nil {
		return nil, nil, nonRetryable(ErrConfig, "balancer %s: %s: %v", l.Host, u.File, err)
	}
	if !f.Verified {
		return nil, nil, nonRetryable(ErrConfig, "balancer %s: the member comments of %s do not match their checksum, so the file was edited by hand and mageflow cannot tell which members nginx has: restore it, or delete it and set the members again", l.Host, u.File)
	}
	if f.Name != c.Name {
		return nil, nil, nonRetryable(ErrConfig, "balancer %s: %s defines upstream %q, the config says %q: delete the file after changing the upstream name, then set the members again", l.Host, u.File, f.Name, c.Name)
	}
	return data, f, nil
}

// SetMembers applies one change set to a group's upstream: render the
// include, `nginx -t` (the previous include is restored if nginx rejects
// it), reload, and return once nginx answers the verify endpoint with the
// new set and no worker from before the reload accepts new connections —
// so a removed member gets no new request after this returns. Applying a
// set nginx already serves is Changed=false, without a reload.
func (l *LBActivities) SetMembers(ctx context.Context, in SetMembersInput) (*MembersResult, error) {
	started := time.Now()
	u, c, err := l.upstream(in.Group)
	if err != nil {
		return nil, err
	}
	for _, m := range in.Add {
		if slices.Contains(in.Remove, m.ID) {
			return nil, nonRetryable(ErrInvalidInput, "group %s: member %s is both added and removed in one change set", in.Group, m.ID)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()

	old, cur, err := l.current(u, c)
	if err != nil {
		return nil, err
	}
	want := applyChangeSet(cur.Members, in)
	data, sum, err := lbconf.Render(c, want)
	if err != nil {
		return nil, nonRetryable(ErrInvalidInput, "balancer %s: %v", l.Host, err)
	}
	want, _ = lbconf.Normalize(c, want)
	res := &MembersResult{Members: want}

	if slices.Equal(data, old) {
		// Nothing to write; but an earlier attempt may have died between
		// the rename and the reload, so ask nginx what it serves.
		if v := l.verifyOnce(ctx, c); v.matches(want, sum) {
			res.Serving = true
			return res, nil
		}
	} else {
		if err := lbconf.WriteFile(u.File, data); err != nil {
			return nil, err
		}
	}

	stop := heartbeat.While(ctx, l.HeartbeatEvery, func() any { return LBProgress{Step: "nginx -t"} })
	defer stop()
	if err := l.testOrRestore(ctx, u, old, in.Group, want); err != nil {
		return nil, err
	}
	if err := l.reloadAndWait(ctx, u, c, old, cur, in.Group, sum, res); err != nil {
		return nil, err
	}
	res.Took = time.Since(started)
	return res, nil
}

// applyChangeSet is the member set after the change: the current members
// without the removed ones, plus the added ones (in no particular order:
// rendering normalises it).
func applyChangeSet(cur []Member, in SetMembersInput) []Member {
	byID := map[string]Member{}
	for _, m := range cur {
		byID[m.ID] = m
	}
	for _, id := range in.Remove {
		delete(byID, id)
	}
	for _, m := range in.Add {
		byID[m.ID] = m
	}
	want := make([]Member, 0, len(byID))
	for _, m := range byID {
		want = append(want, m)
	}
	return want
}

// Messages of SetMembers's failures (fmt formats).
const (
	errRestoreFailed     = "balancer %s: nginx rejected the new %s (%v) and restoring the previous one failed: %v — fix the file by hand before nginx is reloaded"
	errNginxTestRejected = "balancer %s: nginx -t rejected group %s's upstream with members %s, so the previous %s is back and nginx keeps serving its old members; nginx said: %s"
	errStoppedWaiting    = "balancer %s: nginx was reloaded with group %s's members %s; stopped waiting for it to serve them: %w"
	errNotServingFormat  = "balancer %s: nginx (master %d) was reloaded with group %s's members %s but does not serve them at %s after %s (last answer: %s)"
)

// testOrRestore runs `nginx -t` on the written include and puts the
// previous include back when nginx rejects it.
func (l *LBActivities) testOrRestore(ctx context.Context, u LBUpstream, old []byte, group string, want []Member) error {
	err := l.Nginx.Test(ctx)
	if err == nil {
		return nil
	}
	if rerr := l.restore(u.File, old); rerr != nil {
		return fmt.Errorf(errRestoreFailed, l.Host, u.File, err, rerr)
	}
	var te *lbconf.TestError
	if errors.As(err, &te) {
		return nonRetryable(ErrNginxRejected, errNginxTestRejected, l.Host, group, describe(want), u.File, te.Output)
	}
	return fmt.Errorf("balancer %s: %w", l.Host, err)
}

// reloadAndWait reloads nginx and waits until it serves res.Members and no
// worker from before the reload accepts new connections. A reload nginx
// refused puts the previous include back.
func (l *LBActivities) reloadAndWait(ctx context.Context, u LBUpstream, c lbconf.Upstream, old []byte, cur *lbconf.File,
	group, sum string, res *MembersResult) error {
	want := res.Members
	logAt := l.Nginx.ErrorLogSize()
	master, oldWorkers, err := l.Nginx.Reload()
	if err != nil {
		// The include stays: nginx reads it when it starts, and a retry
		// reloads a running nginx.
		return fmt.Errorf("balancer %s: %w", l.Host, err)
	}
	res.Changed = true
	v, err := l.waitServing(ctx, c, want, sum)
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf(errStoppedWaiting, l.Host, group, describe(want), ctx.Err())
	}
	if err != nil {
		msg := fmt.Sprintf(errNotServingFormat, l.Host, master, group, describe(want), u.VerifyURL, l.verifyTimeout(), v)
		log := nginxComplaints(l.Nginx.ErrorLogFrom(logAt))
		if log != "" {
			msg += "; nginx's error log says:\n" + log
		}
		if v.sum == cur.Sum || strings.Contains(log, "[emerg]") {
			// nginx refused the reload (e.g. a port it could not bind) and
			// keeps running its old config: put the file back so it says
			// what runs, and the next nginx -t is not poisoned by it.
			if rerr := l.restore(u.File, old); rerr == nil {
				msg += "\nnginx keeps its previous config, so the previous include is back"
			}
		}
		return errors.New(msg)
	}
	res.Serving = true
	if err := l.waitOldWorkersQuit(ctx, oldWorkers); err != nil {
		return fmt.Errorf("balancer %s: %w", l.Host, err)
	}
	return nil
}

// restore puts back the include as it was (nil: there was none).
func (l *LBActivities) restore(file string, old []byte) error {
	if old == nil {
		err := os.Remove(file)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	return lbconf.WriteFile(file, old)
}

// Members reads a group's member set back from its include and says
// whether nginx serves exactly that set.
func (l *LBActivities) Members(ctx context.Context, group string) (*MembersResult, error) {
	u, c, err := l.upstream(group)
	if err != nil {
		return nil, err
	}
	_, cur, err := l.current(u, c)
	if err != nil {
		return nil, err
	}
	res := &MembersResult{Members: cur.Members}
	if res.Members == nil {
		res.Members = []Member{}
	}
	res.Serving = l.verifyOnce(ctx, c).matches(cur.Members, cur.Sum)
	return res, nil
}

// Drain waits, after a member was removed, until the nginx workers that
// may still hold requests to it have finished them and exited: every
// worker that is shutting down (a reload tells the previous workers to
// finish what they hold and stop accepting). New requests never reach the
// member, because SetMembers returned only once no old worker accepted any.
// The wait is bounded by in.Timeout; nginx's own worker_shutdown_timeout,
// when set, bounds it on nginx's side.
func (l *LBActivities) Drain(ctx context.Context, in DrainInput) error {
	u, c, err := l.upstream(in.Group)
	if err != nil {
		return err
	}
	_, cur, err := l.current(u, c)
	if err != nil {
		return err
	}
	if slices.ContainsFunc(cur.Members, func(m Member) bool { return m.ID == in.ID }) {
		return nonRetryable(ErrInvalidInput, "balancer %s: %s is still a member of group %s: remove it with SetMembers before draining it", l.Host, in.ID, in.Group)
	}
	if v := l.verifyOnce(ctx, c); v.err == nil && slices.Contains(v.ids, in.ID) {
		return fmt.Errorf("balancer %s: nginx still serves %s in group %s although the include no longer lists it (a reload did not apply): set the members again", l.Host, in.ID, in.Group)
	}
	timeout := in.Timeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	master, err := l.Nginx.MasterPID()
	if err != nil {
		return fmt.Errorf("balancer %s: %w", l.Host, err)
	}
	var waiting []lbconf.Worker
	for _, w := range lbconf.Workers(master) {
		if w.ShuttingDown {
			waiting = append(waiting, w)
		}
	}
	pids := func() []int {
		var out []int
		for _, w := range waiting {
			if running, _ := w.Current(); running {
				out = append(out, w.PID)
			}
		}
		return out
	}
	stop := heartbeat.While(ctx, l.HeartbeatEvery, func() any { return LBProgress{Step: "drain " + in.ID, Workers: pids()} })
	defer stop()
	deadline := time.Now().Add(timeout)
	for {
		left := pids()
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return temporal.NewNonRetryableApplicationError(fmt.Sprintf("balancer %s: %d nginx worker(s) from before %s left group %s (pids %v) still finish requests after %s; its in-flight requests may be cut when it is terminated (set nginx's worker_shutdown_timeout below the drain bound to cap slow requests)", l.Host, len(left), in.ID, in.Group, left, timeout), ErrDrainTimeout, nil)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitOldWorkersQuit waits until every worker from before a reload has
// exited or is shutting down, i.e. has closed its listening sockets. nginx
// starts the new workers, then signals the old ones ~100 ms later; a
// connection accepted in between would still see the old upstream.
func (l *LBActivities) waitOldWorkersQuit(ctx context.Context, old []lbconf.Worker) error {
	deadline := time.Now().Add(l.verifyTimeout())
	for _, w := range old {
		for {
			running, shuttingDown := w.Current()
			if !running || shuttingDown {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("nginx worker %d from before the reload still accepts connections after %s: is the master stuck? see nginx's error log", w.PID, l.verifyTimeout())
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	return nil
}

func (l *LBActivities) verifyTimeout() time.Duration {
	if l.VerifyTimeout > 0 {
		return l.VerifyTimeout
	}
	return 20 * time.Second
}

func (l *LBActivities) client() *http.Client {
	if l.HTTP != nil {
		return l.HTTP
	}
	return &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
	}
}

// served is one answer of the verify endpoint.
type served struct {
	ids  []string
	sum  string
	err  error
	body string
}

func (v served) matches(want []Member, sum string) bool {
	return v.err == nil && v.sum == sum && slices.Equal(v.ids, lbconf.IDs(want))
}

func (v served) String() string {
	if v.err != nil {
		return v.err.Error()
	}
	return fmt.Sprintf("members [%s] %s", strings.Join(v.ids, " "), v.sum)
}

func (l *LBActivities) verifyOnce(ctx context.Context, c lbconf.Upstream) served {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.VerifyURL, nil)
	if err != nil {
		return served{err: err}
	}
	resp, err := l.client().Do(req)
	if err != nil {
		return served{err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return served{err: err}
	}
	if resp.StatusCode != http.StatusOK {
		return served{err: fmt.Errorf("%s answered %s", c.VerifyURL, resp.Status)}
	}
	v := served{sum: resp.Header.Get(lbconf.SumHeader), body: string(body), ids: []string{}}
	for _, id := range strings.Split(string(body), "\n") {
		if id != "" {
			v.ids = append(v.ids, id)
		}
	}
	return v
}

// waitServing asks nginx until it answers the new set; the new workers
// take a moment to start after the SIGHUP.
func (l *LBActivities) waitServing(ctx context.Context, c lbconf.Upstream, want []Member, sum string) (served, error) {
	stop := heartbeat.While(ctx, l.HeartbeatEvery, func() any { return LBProgress{Step: "verify " + c.VerifyURL} })
	defer stop()
	deadline := time.Now().Add(l.verifyTimeout())
	for {
		v := l.verifyOnce(ctx, c)
		if v.matches(want, sum) {
			return v, nil
		}
		if time.Now().After(deadline) {
			return v, errors.New("timeout")
		}
		select {
		case <-ctx.Done():
			return v, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func describe(ms []Member) string {
	if len(ms) == 0 {
		return "(none)"
	}
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = m.ID + "=" + m.Addr
	}
	return strings.Join(parts, ", ")
}

// nginxComplaints keeps the error log lines that say why a reload failed
// ([emerg], [alert], [crit]), each message once: nginx retries a failed
// bind five times and logs every attempt.
func nginxComplaints(log string) string {
	var out []string
	seen := map[string]bool{}
	for _, line := range strings.Split(log, "\n") {
		i := strings.Index(line, "[")
		if i < 0 || !(strings.HasPrefix(line[i:], "[emerg]") || strings.HasPrefix(line[i:], "[alert]") || strings.HasPrefix(line[i:], "[crit]")) {
			continue
		}
		// "2026/11/26 06:01:11 [emerg] 11717#11717: bind() ... failed"
		msg := line[i:]
		if j := strings.Index(msg, ": "); j >= 0 {
			msg = msg[:strings.Index(msg, "]")+1] + msg[j+1:]
		}
		if !seen[msg] {
			seen[msg] = true
			out = append(out, msg)
		}
	}
	return strings.Join(out, "\n")
}
