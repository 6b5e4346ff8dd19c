package lbconf_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mageflow/mageflow/internal/host/lbconf"
	"github.com/mageflow/mageflow/internal/host/webstack"
	"github.com/mageflow/mageflow/internal/testkit/testenv"
)

func upstream(t *testing.T) lbconf.Upstream {
	t.Helper()
	port, err := webstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return lbconf.Upstream{Group: "web", Name: "mageflow_web", Port: 8080, VerifyURL: fmt.Sprintf("http://127.0.0.1:%d/.mageflow-members", port)}
}

func TestRenderIsDeterministicAndReadsBack(t *testing.T) {
	u := upstream(t)
	a := []lbconf.Member{{ID: "i-b", Addr: "10.0.0.2"}, {ID: "i-a", Addr: "10.0.0.1:81"}, {ID: "i-c", Addr: "[fd00::3]:80"}}
	b := []lbconf.Member{a[2], a[0], a[1]}
	ta, sa, err := lbconf.Render(u, a)
	if err != nil {
		t.Fatal(err)
	}
	tb, sb, err := lbconf.Render(u, b)
	if err != nil {
		t.Fatal(err)
	}
	if string(ta) != string(tb) || sa != sb {
		t.Fatalf("member order changed the rendering:\n%s\n---\n%s", ta, tb)
	}
	f, err := lbconf.Parse(ta)
	if err != nil {
		t.Fatal(err)
	}
	want := []lbconf.Member{{ID: "i-a", Addr: "10.0.0.1:81"}, {ID: "i-b", Addr: "10.0.0.2:8080"}, {ID: "i-c", Addr: "[fd00::3]:80"}}
	if !f.Verified || f.Sum != sa || f.Name != "mageflow_web" || f.Group != "web" || fmt.Sprint(f.Members) != fmt.Sprint(want) {
		t.Fatalf("read back %+v, want members %v and sum %s", f, want, sa)
	}
	for _, line := range []string{
		"    server 10.0.0.2:8080 max_fails=1 fail_timeout=2s;",
		`        return 200 "i-a\ni-b\ni-c\n";`,
		`add_header X-Mageflow-Members-Sum "` + sa + `" always;`,
	} {
		if !strings.Contains(string(ta), line) {
			t.Errorf("rendering lacks %q:\n%s", line, ta)
		}
	}

	// Another address of the same id is another set.
	_, sc, _ := lbconf.Render(u, []lbconf.Member{{ID: "i-a", Addr: "10.0.0.9:81"}, a[0], a[2]})
	if sc == sa {
		t.Fatal("the checksum ignores addresses")
	}
}

func TestParseDetectsHandEdits(t *testing.T) {
	u := upstream(t)
	text, _, err := lbconf.Render(u, []lbconf.Member{{ID: "i-a", Addr: "10.0.0.1:80"}})
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(text), "# member i-a 10.0.0.1:80", "# member i-a 10.0.0.7:80", 1)
	f, err := lbconf.Parse([]byte(edited))
	if err != nil {
		t.Fatal(err)
	}
	if f.Verified {
		t.Fatal("an edited member line still verifies")
	}
	if _, err := lbconf.Parse([]byte("upstream x { server 1.2.3.4; }\n")); err != lbconf.ErrNotMageflow {
		t.Fatalf("foreign file: got %v, want ErrNotMageflow", err)
	}
}

func TestRenderRejectsBadInput(t *testing.T) {
	u := upstream(t)
	for name, tc := range map[string]struct {
		u  lbconf.Upstream
		ms []lbconf.Member
		// want is a part of the error message.
		want string
	}{
		"id with a quote":    {u, []lbconf.Member{{ID: `i-"a`, Addr: "10.0.0.1:80"}}, "member id"},
		"id with a dollar":   {u, []lbconf.Member{{ID: "i-$host", Addr: "10.0.0.1:80"}}, "member id"},
		"addr with a brace":  {u, []lbconf.Member{{ID: "i-a", Addr: "10.0.0.1:80;}"}}, "address"},
		"addr port range":    {u, []lbconf.Member{{ID: "i-a", Addr: "10.0.0.1:70000"}}, "port out of range"},
		"twice":              {u, []lbconf.Member{{ID: "i-a", Addr: "10.0.0.1:80"}, {ID: "i-a", Addr: "10.0.0.2:80"}}, "listed twice"},
		"shared addr":        {u, []lbconf.Member{{ID: "i-a", Addr: "10.0.0.1:80"}, {ID: "i-b", Addr: "10.0.0.1:80"}}, "share the address"},
		"no port anywhere":   {lbconf.Upstream{Group: "web", Name: "u", VerifyURL: u.VerifyURL}, []lbconf.Member{{ID: "i-a", Addr: "10.0.0.1"}}, "no port"},
		"verify by name":     {lbconf.Upstream{Group: "web", Name: "u", VerifyURL: "http://localhost:81/x"}, nil, "IP address"},
		"verify no port":     {lbconf.Upstream{Group: "web", Name: "u", VerifyURL: "http://127.0.0.1/x"}, nil, "explicit port"},
		"verify https":       {lbconf.Upstream{Group: "web", Name: "u", VerifyURL: "https://127.0.0.1:81/x"}, nil, "plain http"},
		"upstream name":      {lbconf.Upstream{Group: "web", Name: "a b", VerifyURL: u.VerifyURL}, nil, "upstream name"},
		"verify path quotes": {lbconf.Upstream{Group: "web", Name: "u", VerifyURL: `http://127.0.0.1:81/a"b`}, nil, "path"},
	} {
		_, _, err := lbconf.Render(tc.u, tc.ms)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error about %q", name, err, tc.want)
		}
	}
}

// TestNginxServesTheInclude runs the rendered include in a real nginx: the
// verify endpoint answers the ids and checksum, an empty group is valid
// nginx (placeholder) and answers an empty body, and traffic through the
// upstream reaches the member.
func TestNginxServesTheInclude(t *testing.T) {
	_, err := webstack.NginxBinary()
	testenv.ToolOrSkip(t, err)
	dir := t.TempDir()
	u := upstream(t)
	member := memberServer(t, "i-a")
	file := filepath.Join(dir, "upstream-web.conf")
	text, _, err := lbconf.Render(u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := lbconf.WriteFile(file, text); err != nil {
		t.Fatal(err)
	}
	port, err := webstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	site := fmt.Sprintf("include %s;\nserver {\n    listen 127.0.0.1:%d;\n    location / {\n        proxy_pass http://mageflow_web;\n        proxy_http_version 1.1;\n        proxy_set_header Connection \"\";\n    }\n}\n", file, port)
	ngx, err := webstack.StartNginx(t.Context(), filepath.Join(dir, "nginx"), site)
	if err != nil {
		t.Fatal(err)
	}
	ctl := lbconf.Nginx{Prefix: ngx.Dir(), ConfFile: ngx.ConfFile(), PIDFile: filepath.Join(ngx.Dir(), "nginx.pid"), ErrorLog: filepath.Join(ngx.Dir(), "error.log")}

	body, sum := get(t, u.VerifyURL)
	if body != "" || sum != lbconf.Sum(u.Name, nil) {
		t.Fatalf("empty group: verify answered %q %s", body, sum)
	}
	if code, _ := status(fmt.Sprintf("http://127.0.0.1:%d/", port)); code != http.StatusBadGateway {
		t.Fatalf("empty group: balancer answered %d, want 502 (placeholder is down)", code)
	}

	ms := []lbconf.Member{{ID: "i-a", Addr: member}}
	text, want, err := lbconf.Render(u, ms)
	if err != nil {
		t.Fatal(err)
	}
	if err := lbconf.WriteFile(file, text); err != nil {
		t.Fatal(err)
	}
	if err := ctl.Test(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ctl.Reload(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		body, sum = get(t, u.VerifyURL)
		if sum == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx did not serve the new set within 10s: %q %s\n%s", body, sum, ngx.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if body != "i-a\n" {
		t.Fatalf("verify body %q, want the member id", body)
	}
	// Old workers keep accepting for ~100 ms after a reload (nginx signals
	// them after starting the new ones; SetMembers waits them out, this
	// raw test polls).
	for {
		code, got := status(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if code == 200 && got == "i-a" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("balancer answered %d %q, want the member", code, got)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// nginx -t reports a member it cannot resolve.
	bad, _, err := lbconf.Render(u, []lbconf.Member{{ID: "i-x", Addr: "no-such-host.invalid:80"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := lbconf.WriteFile(file, bad); err != nil {
		t.Fatal(err)
	}
	err = ctl.Test(context.Background())
	if te, ok := err.(*lbconf.TestError); !ok || !strings.Contains(te.Output, "host not found in upstream") {
		t.Fatalf("nginx -t of an unresolvable member: got %v", err)
	}
}

func TestWorkersSeesAReload(t *testing.T) {
	dir := t.TempDir()
	port, err := webstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	ngx, err := webstack.StartNginx(t.Context(), dir, fmt.Sprintf("server { listen 127.0.0.1:%d; return 200 ok; }", port))
	if err != nil {
		t.Fatal(err)
	}
	before := lbconf.Workers(ngx.PID())
	if len(before) != 2 {
		t.Fatalf("want the 2 workers of webstack's nginx.conf, got %+v", before)
	}
	for _, w := range before {
		if running, down := w.Current(); !running || down {
			t.Fatalf("worker %d: running=%v shutting down=%v before any reload", w.PID, running, down)
		}
	}
	ctl := lbconf.Nginx{Prefix: dir, ConfFile: ngx.ConfFile(), PIDFile: filepath.Join(dir, "nginx.pid")}
	master, old, err := ctl.Reload()
	if err != nil || master != ngx.PID() || len(old) != 2 {
		t.Fatalf("Reload: master %d old %v err %v", master, old, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, w := range old {
		for {
			if running, _ := w.Current(); !running {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("old worker %d did not exit after the reload", w.PID)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	after := lbconf.Workers(ngx.PID())
	if len(after) != 2 || after[0].PID == before[0].PID || after[1].PID == before[1].PID {
		t.Fatalf("workers after the reload: %+v (before %+v)", after, before)
	}
}

// memberServer is a member instance answering its id.
func memberServer(t *testing.T, id string) string {
	t.Helper()
	port, err := webstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	srv := &http.Server{Addr: addr, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, id) })}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return addr
}

var client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func get(t *testing.T, url string) (body, sum string) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		return "error: " + err.Error(), ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b), resp.Header.Get(lbconf.SumHeader)
}

func status(url string) (int, string) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestWriteFileReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f.conf")
	for _, s := range []string{"one\n", "two\n"} {
		if err := lbconf.WriteFile(p, []byte(s)); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(p)
		if err != nil || string(got) != s {
			t.Fatalf("read %q %v, want %q", got, err, s)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
}
