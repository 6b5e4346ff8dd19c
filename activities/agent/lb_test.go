package agent_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/mageflow/mageflow/activities/agent"
	"github.com/mageflow/mageflow/internal/host/lbconf"
	"github.com/mageflow/mageflow/internal/host/webstack"
	"github.com/mageflow/mageflow/internal/testkit/testenv"
)

// lbMember is an instance behind the balancer: it answers its id, and
// /slow answers after 2 s (an in-flight request a drain must wait for).
type lbMember struct {
	id       string
	addr     string
	hits     atomic.Int64
	slowSeen chan struct{}
	// slowAnswered is when the member wrote its answer to /slow.
	slowAnswered atomic.Value
}

type lbFixture struct {
	t        *testing.T
	acts     *agent.LBActivities
	env      *testsuite.TestActivityEnvironment
	ngx      *webstack.Proc
	file     string
	url      string // the balancer's front
	members  map[string]*lbMember
	keepWarm *http.Client
}

func newLBFixture(t *testing.T, ids ...string) *lbFixture {
	t.Helper()
	_, err := webstack.NginxBinary()
	testenv.ToolOrSkip(t, err)
	dir := t.TempDir()
	f := &lbFixture{t: t, members: map[string]*lbMember{}, file: filepath.Join(dir, "upstream-web.conf")}
	for _, id := range ids {
		m := &lbMember{id: id, slowSeen: make(chan struct{}, 10)}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			m.hits.Add(1)
			if r.URL.Path == "/slow" {
				m.slowSeen <- struct{}{}
				time.Sleep(2 * time.Second)
				_, _ = io.WriteString(w, m.id)
				m.slowAnswered.Store(time.Now())
				return
			}
			_, _ = io.WriteString(w, m.id)
		}))
		t.Cleanup(srv.Close)
		m.addr = srv.Listener.Addr().String()
		f.members[id] = m
	}
	verifyPort, err := webstack.FreePort()
	require.NoError(t, err)
	frontPort, err := webstack.FreePort()
	require.NoError(t, err)
	up := agent.LBUpstream{File: f.file, Name: "mageflow_web", Port: 8080, VerifyURL: fmt.Sprintf("http://127.0.0.1:%d/.mageflow-members", verifyPort)}

	// What the agent does at start, before nginx first loads the include.
	boot := &agent.LBActivities{Host: "lb1", Upstreams: map[string]agent.LBUpstream{"web": up}}
	require.NoError(t, boot.EnsureIncludes())
	text, err := os.ReadFile(f.file)
	require.NoError(t, err)
	require.NoError(t, boot.EnsureIncludes())
	again, err := os.ReadFile(f.file)
	require.NoError(t, err)
	require.Equal(t, string(text), string(again))

	// The operator's balancer site, as webstack.RenderBalancer proxies.
	site := fmt.Sprintf(`include %s;
server {
    listen 127.0.0.1:%d;
    location / {
        proxy_pass http://mageflow_web;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_next_upstream error timeout http_502;
        proxy_connect_timeout 2s;
    }
}`, f.file, frontPort)
	f.ngx, err = webstack.StartNginx(t.Context(), filepath.Join(dir, "nginx"), site)
	require.NoError(t, err)
	f.url = fmt.Sprintf("http://127.0.0.1:%d", frontPort)
	f.acts = &agent.LBActivities{
		Host:      "lb1",
		Upstreams: map[string]agent.LBUpstream{"web": up},
		Nginx: lbconf.Nginx{
			Prefix:   f.ngx.Dir(),
			ConfFile: f.ngx.ConfFile(),
			PIDFile:  filepath.Join(f.ngx.Dir(), "nginx.pid"),
			ErrorLog: filepath.Join(f.ngx.Dir(), "error.log"),
		},
		HeartbeatEvery: 50 * time.Millisecond,
	}
	require.NoError(t, f.acts.Validate())
	var s testsuite.WorkflowTestSuite
	f.env = s.NewTestActivityEnvironment()
	f.env.RegisterActivity(f.acts)
	f.keepWarm = &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(f.keepWarm.CloseIdleConnections)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("nginx logs:\n%s", f.ngx.Logs())
		}
	})
	return f
}

func (f *lbFixture) member(id string) agent.Member {
	return agent.Member{ID: id, Addr: f.members[id].addr}
}

func (f *lbFixture) set(in agent.SetMembersInput) (*agent.MembersResult, error) {
	v, err := f.env.ExecuteActivity(f.acts.SetMembers, in)
	if err != nil {
		return nil, err
	}
	var res agent.MembersResult
	require.NoError(f.t, v.Get(&res))
	return &res, nil
}

func (f *lbFixture) membersNow() agent.MembersResult {
	v, err := f.env.ExecuteActivity(f.acts.Members, "web")
	require.NoError(f.t, err)
	var res agent.MembersResult
	require.NoError(f.t, v.Get(&res))
	return res
}

// get requests path through the balancer, on a fresh connection or on a
// kept-alive one.
func (f *lbFixture) get(path string, keepAlive bool) (int, string, error) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	if keepAlive {
		c = f.keepWarm
	}
	resp, err := c.Get(f.url + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// spread sends n requests and counts which member answered them.
func (f *lbFixture) spread(n int) map[string]int {
	f.t.Helper()
	seen := map[string]int{}
	for i := range n {
		code, body, err := f.get("/", i%2 == 0)
		require.NoError(f.t, err)
		require.Equal(f.t, http.StatusOK, code, body)
		seen[body]++
	}
	return seen
}

func ids(ms []agent.Member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

// load runs requests through the balancer until stop, counting failures:
// member changes must never fail a request.
type load struct {
	stop     chan struct{}
	wg       sync.WaitGroup
	ok, fail atomic.Int64
	mu       sync.Mutex
	errs     []string
}

func (f *lbFixture) startLoad(workers int) *load {
	l := &load{stop: make(chan struct{})}
	for w := range workers {
		l.wg.Go(func() {
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				code, body, err := f.get("/", w%2 == 0)
				if err != nil || code != http.StatusOK {
					l.fail.Add(1)
					l.mu.Lock()
					l.errs = append(l.errs, fmt.Sprintf("%d %q %v", code, body, err))
					l.mu.Unlock()
					continue
				}
				l.ok.Add(1)
			}
		})
	}
	return l
}

func (l *load) finish(t *testing.T) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	require.Zero(t, l.fail.Load(), "failed requests during member changes: %v", l.errs)
	require.NotZero(t, l.ok.Load())
}

func TestLBAddRemoveVerifiedThroughNginx(t *testing.T) {
	f := newLBFixture(t, "i-a", "i-b", "i-c")

	start := time.Now()
	res, err := f.set(agent.SetMembersInput{Group: "web", Add: []agent.Member{f.member("i-a")}})
	require.NoError(t, err)
	t.Logf("add to an empty group: %s (activity %s)", time.Since(start), res.Took)
	require.True(t, res.Changed && res.Serving, "%+v", res)
	require.Equal(t, []string{"i-a"}, ids(res.Members))
	require.Equal(t, map[string]int{"i-a": 10}, f.spread(10))

	// Under load: add two members, then remove one; no request fails.
	ld := f.startLoad(4)
	start = time.Now()
	res, err = f.set(agent.SetMembersInput{Group: "web", Add: []agent.Member{f.member("i-b"), f.member("i-c")}})
	require.NoError(t, err)
	t.Logf("add two members under load: %s", time.Since(start))
	require.Equal(t, []string{"i-a", "i-b", "i-c"}, ids(res.Members))
	seen := f.spread(30)
	require.Len(t, seen, 3, "every member gets traffic: %v", seen)

	start = time.Now()
	res, err = f.set(agent.SetMembersInput{Group: "web", Remove: []string{"i-a"}})
	require.NoError(t, err)
	t.Logf("remove a member under load: %s", time.Since(start))
	require.True(t, res.Changed && res.Serving)
	require.Equal(t, []string{"i-b", "i-c"}, ids(res.Members))
	ld.finish(t)

	// Once SetMembers returned, no new request reaches the removed member,
	// on new connections or on kept-alive ones.
	before := f.members["i-a"].hits.Load()
	seen = f.spread(40)
	require.Zero(t, seen["i-a"], "%v", seen)
	require.Equal(t, before, f.members["i-a"].hits.Load(), "the removed member got requests")

	m := f.membersNow()
	require.Equal(t, []string{"i-b", "i-c"}, ids(m.Members))
	require.True(t, m.Serving)
	require.False(t, m.Changed)

	// Empty group: valid nginx, the balancer answers 502, verify answers
	// no ids.
	res, err = f.set(agent.SetMembersInput{Group: "web", Remove: []string{"i-b", "i-c"}})
	require.NoError(t, err)
	require.True(t, res.Serving)
	require.Empty(t, res.Members)
	code, _, err := f.get("/", false)
	require.NoError(t, err)
	require.Equal(t, http.StatusBadGateway, code)
}

func TestLBSetMembersIsIdempotent(t *testing.T) {
	f := newLBFixture(t, "i-a", "i-b")
	_, err := f.set(agent.SetMembersInput{Group: "web", Add: []agent.Member{f.member("i-a"), f.member("i-b")}})
	require.NoError(t, err)
	data, err := os.ReadFile(f.file)
	require.NoError(t, err)
	workers := serving(lbconf.Workers(f.ngx.PID()))
	logBefore := f.acts.Nginx.ErrorLogSize()
	require.NoError(t, f.acts.EnsureIncludes()) // an agent restart keeps the members

	// The same change again, a removal of a non-member, and the members in
	// another order: no change, no reload.
	for _, in := range []agent.SetMembersInput{
		{Group: "web", Add: []agent.Member{f.member("i-a")}},
		{Group: "web", Remove: []string{"i-zz"}},
		{Group: "web", Add: []agent.Member{f.member("i-b"), f.member("i-a")}},
	} {
		res, err := f.set(in)
		require.NoError(t, err)
		require.False(t, res.Changed, "%+v", in)
		require.True(t, res.Serving)
		require.Equal(t, []string{"i-a", "i-b"}, ids(res.Members))
	}
	after, err := os.ReadFile(f.file)
	require.NoError(t, err)
	require.Equal(t, string(data), string(after))
	require.Equal(t, workers, serving(lbconf.Workers(f.ngx.PID())), "nginx was reloaded")
	require.NotContains(t, f.acts.Nginx.ErrorLogFrom(logBefore), "reconfiguring")

	// An attempt that died after writing the include but before the
	// reload: the file already says a,  but nginx does not serve it; a retry
	// must reload rather than trust the file.
	u := f.acts.Upstreams["web"]
	text, _, err := lbconf.Render(lbconf.Upstream{Group: "web", Name: u.Name, Port: u.Port, VerifyURL: u.VerifyURL}, []agent.Member{f.member("i-a")})
	require.NoError(t, err)
	require.NoError(t, lbconf.WriteFile(f.file, text))
	require.False(t, f.membersNow().Serving, "Members says nginx serves a set it was never reloaded with")
	res, err := f.set(agent.SetMembersInput{Group: "web", Remove: []string{"i-b"}})
	require.NoError(t, err)
	require.True(t, res.Changed && res.Serving, "%+v", res)
	require.Equal(t, map[string]int{"i-a": 10}, f.spread(10))
}

func TestLBRejectedConfigRestoresPrevious(t *testing.T) {
	f := newLBFixture(t, "i-a")
	_, err := f.set(agent.SetMembersInput{Group: "web", Add: []agent.Member{f.member("i-a")}})
	require.NoError(t, err)
	good, err := os.ReadFile(f.file)
	require.NoError(t, err)
	workers := serving(lbconf.Workers(f.ngx.PID()))

	ld := f.startLoad(2)
	_, err = f.set(agent.SetMembersInput{Group: "web", Add: []agent.Member{{ID: "i-bad", Addr: "no-such-host.invalid:80"}}})
	ae := appErr(t, err, agent.ErrNginxRejected)
	require.Contains(t, ae.Message(), `host not found in upstream "no-such-host.invalid:80"`)
	require.Contains(t, ae.Message(), "previous")
	ld.finish(t)

	after, err := os.ReadFile(f.file)
	require.NoError(t, err)
	require.Equal(t, string(good), string(after), "the previous include is not back")
	require.Equal(t, workers, serving(lbconf.Workers(f.ngx.PID())), "nginx was reloaded with a rejected config")
	m := f.membersNow()
	require.Equal(t, []string{"i-a"}, ids(m.Members))
	require.True(t, m.Serving)
	require.Equal(t, map[string]int{"i-a": 10}, f.spread(10))

	// Bad input never reaches nginx.
	_, err = f.set(agent.SetMembersInput{Group: "web", Add: []agent.Member{{ID: `i-"x`, Addr: "127.0.0.1:1"}}})
	appErr(t, err, agent.ErrInvalidInput)
	_, err = f.set(agent.SetMembersInput{Group: "web", Add: []agent.Member{f.member("i-a")}, Remove: []string{"i-a"}})
	appErr(t, err, agent.ErrInvalidInput)
	_, err = f.set(agent.SetMembersInput{Group: "nope"})
	appErr(t, err, agent.ErrConfig)
}

func TestLBReloadNginxRefusesIsReported(t *testing.T) {
	f := newLBFixture(t, "i-a")
	_, err := f.set(agent.SetMembersInput{Group: "web", Add: []agent.Member{f.member("i-a")}})
	require.NoError(t, err)
	good, err := os.ReadFile(f.file)
	require.NoError(t, err)

	// Another process holds the port of a new verify address: `nginx -t`
	// passes (it binds nothing) but the master cannot apply the reload.
	held, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer held.Close()
	up := f.acts.Upstreams["web"]
	up.VerifyURL = "http://" + held.Addr().String() + "/.mageflow-members"
	f.acts.Upstreams["web"] = up
	f.acts.VerifyTimeout = 2 * time.Second
	f.acts.HTTP = &http.Client{Timeout: 200 * time.Millisecond}

	_, err = f.set(agent.SetMembersInput{Group: "web", Remove: []string{"i-a"}})
	require.Error(t, err)
	require.Contains(t, err.Error(), "does not serve them")
	require.Contains(t, err.Error(), "Address already in use")
	after, err := os.ReadFile(f.file)
	require.NoError(t, err)
	require.Equal(t, string(good), string(after), "the include nginx refused stays on disk")
	require.Equal(t, map[string]int{"i-a": 6}, f.spread(6), "nginx keeps serving its previous config")
}

func TestLBDrainWaitsForInFlightRequest(t *testing.T) {
	f := newLBFixture(t, "i-a", "i-slow")
	_, err := f.set(agent.SetMembersInput{Group: "web", Add: []agent.Member{f.member("i-slow")}})
	require.NoError(t, err)

	type result struct {
		code int
		body string
		err  error
		at   time.Time
	}
	done := make(chan result, 1)
	go func() {
		code, body, err := f.get("/slow", false)
		done <- result{code, body, err, time.Now()}
	}()
	select {
	case <-f.members["i-slow"].slowSeen:
	case <-time.After(10 * time.Second):
		t.Fatal("the slow request did not reach i-slow")
	}

	// Add before remove, as the scale-in and refresh workflows do.
	_, err = f.set(agent.SetMembersInput{Group: "web", Add: []agent.Member{f.member("i-a")}})
	require.NoError(t, err)
	_, err = f.env.ExecuteActivity(f.acts.Drain, agent.DrainInput{Group: "web", ID: "i-slow", Timeout: 10 * time.Second})
	appErr(t, err, agent.ErrInvalidInput) // still a member
	_, err = f.set(agent.SetMembersInput{Group: "web", Remove: []string{"i-slow"}})
	require.NoError(t, err)

	// A bound shorter than the request says so.
	_, err = f.env.ExecuteActivity(f.acts.Drain, agent.DrainInput{Group: "web", ID: "i-slow", Timeout: 200 * time.Millisecond})
	ae := appErr(t, err, agent.ErrDrainTimeout)
	require.Contains(t, ae.Message(), "still finish requests")

	start := time.Now()
	_, err = f.env.ExecuteActivity(f.acts.Drain, agent.DrainInput{Group: "web", ID: "i-slow", Timeout: 10 * time.Second})
	require.NoError(t, err)
	drained := time.Now()
	t.Logf("drain waited %s for the in-flight request", drained.Sub(start))
	// The member answered before Drain returned; the client gets it (its
	// goroutine may be scheduled a moment later on a busy machine).
	answered, ok := f.members["i-slow"].slowAnswered.Load().(time.Time)
	require.True(t, ok, "Drain returned while the slow request was still running")
	require.False(t, answered.After(drained), "Drain returned before the member answered the in-flight request")
	select {
	case r := <-done:
		require.NoError(t, r.err)
		require.Equal(t, http.StatusOK, r.code)
		require.Equal(t, "i-slow", r.body)
	case <-time.After(5 * time.Second):
		t.Fatal("the in-flight request never completed")
	}
	require.Equal(t, map[string]int{"i-a": 6}, f.spread(6))

	// Nothing in flight: returns at once.
	start = time.Now()
	_, err = f.env.ExecuteActivity(f.acts.Drain, agent.DrainInput{Group: "web", ID: "i-slow", Timeout: 10 * time.Second})
	require.NoError(t, err)
	require.Less(t, time.Since(start), time.Second)
}

func TestLBRefusesForeignOrEditedInclude(t *testing.T) {
	f := newLBFixture(t, "i-a")
	_, err := f.set(agent.SetMembersInput{Group: "web", Add: []agent.Member{f.member("i-a")}})
	require.NoError(t, err)
	data, err := os.ReadFile(f.file)
	require.NoError(t, err)

	edited := strings.Replace(string(data), "# member i-a ", "# member i-b ", 1)
	require.NoError(t, os.WriteFile(f.file, []byte(edited), 0o644))
	_, err = f.set(agent.SetMembersInput{Group: "web", Remove: []string{"i-a"}})
	ae := appErr(t, err, agent.ErrConfig)
	require.Contains(t, ae.Message(), "edited by hand")

	require.NoError(t, os.WriteFile(f.file, []byte("upstream mageflow_web { server 127.0.0.1:1; }\n"), 0o644))
	_, err = f.env.ExecuteActivity(f.acts.Members, "web")
	var te *temporal.ApplicationError
	require.True(t, errors.As(err, &te))
	require.Contains(t, te.Message(), "not written by mageflow")
}

// serving drops the workers still shutting down from an earlier reload:
// they exit whenever their last connection ends, which is no reload.
func serving(ws []lbconf.Worker) []lbconf.Worker {
	var out []lbconf.Worker
	for _, w := range ws {
		if !w.ShuttingDown {
			out = append(out, w)
		}
	}
	return out
}
