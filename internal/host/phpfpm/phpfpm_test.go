package phpfpm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const fpmBinary = "php-fpm8.2"

// slowPHP runs for 2s of wall time. A plain sleep(2) would not do: the
// SIGQUIT php-fpm sends its workers on reload interrupts sleep(), and the
// request would finish early for the wrong reason.
const slowPHP = `<?php
touch(__DIR__ . '/slow.started');
$end = microtime(true) + 2;
while (microtime(true) < $end) { usleep(20000); }
echo 'slow-done';
`

// fpm is a real php-fpm master started for one test: its own prefix, pid
// file, log and a pool listening on a unix socket in a temp dir.
type fpm struct {
	dir, conf, pid, sock, docroot string
	cmd                           *exec.Cmd
}

func startFPM(t *testing.T, processControlTimeout string) *fpm {
	t.Helper()
	bin, err := exec.LookPath(fpmBinary)
	if err != nil {
		t.Fatalf("%s not found: install the Debian package php8.2-fpm (apt-get install php8.2-fpm)", fpmBinary)
	}
	dir := t.TempDir()
	f := &fpm{dir: dir, conf: filepath.Join(dir, "php-fpm.conf"), pid: filepath.Join(dir, "fpm.pid"),
		sock: filepath.Join(dir, "fpm.sock"), docroot: filepath.Join(dir, "www")}
	must(t, os.MkdirAll(filepath.Join(dir, "pool.d"), 0o755))
	must(t, os.MkdirAll(f.docroot, 0o755))
	global := fmt.Sprintf("[global]\npid = %s\nerror_log = %s/fpm.log\ndaemonize = no\n", f.pid, dir)
	if processControlTimeout != "" {
		global += "process_control_timeout = " + processControlTimeout + "\n"
	}
	global += "include = pool.d/*.conf\n"
	must(t, os.WriteFile(f.conf, []byte(global), 0o644))
	user := "nobody"
	group := "nogroup"
	if os.Geteuid() == 0 {
		user, group = "root", "root" // with -R: the temp dirs are 0700 root
	}
	pool := fmt.Sprintf("[www]\nuser = %s\ngroup = %s\nlisten = %s\npm = static\npm.max_children = 3\ncatch_workers_output = yes\nphp_admin_value[opcache.enable] = 1\n", user, group, f.sock)
	must(t, os.WriteFile(filepath.Join(dir, "pool.d", "www.conf"), []byte(pool), 0o644))
	must(t, os.WriteFile(filepath.Join(f.docroot, "slow.php"), []byte(slowPHP), 0o644))
	must(t, os.WriteFile(filepath.Join(f.docroot, "hello.php"), []byte("<?php echo 'hello';"), 0o644))

	args := []string{"-F", "-y", f.conf, "-p", dir}
	if os.Geteuid() == 0 {
		args = append(args, "-R")
	}
	f.cmd = exec.Command(bin, args...)
	// A file, not the test's stderr: workers inherit it, and a pipe held
	// open by a straggler would stall `go test`.
	out, err := os.Create(filepath.Join(dir, "fpm.out"))
	must(t, err)
	defer out.Close()
	f.cmd.Stdout, f.cmd.Stderr = out, out
	f.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	must(t, f.cmd.Start())
	t.Cleanup(func() {
		done := make(chan struct{})
		go func() { _ = f.cmd.Wait(); close(done) }()
		// A master caught mid re-exec (right after a reload) misses a
		// signal: repeat SIGTERM until it exits, then SIGKILL stragglers.
		tick := time.NewTicker(300 * time.Millisecond)
		defer tick.Stop()
		giveUp := time.After(10 * time.Second)
		_ = syscall.Kill(-f.cmd.Process.Pid, syscall.SIGTERM)
	wait:
		for {
			select {
			case <-done:
				break wait
			case <-tick.C:
				_ = syscall.Kill(-f.cmd.Process.Pid, syscall.SIGTERM)
			case <-giveUp:
				_ = syscall.Kill(-f.cmd.Process.Pid, syscall.SIGKILL)
				<-done
				break wait
			}
		}
		_ = syscall.Kill(-f.cmd.Process.Pid, syscall.SIGKILL)
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := GetValues(ctx, f.sock)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "fpm.log"))
			t.Fatalf("php-fpm did not answer on %s: %v\nlog:\n%s", f.sock, err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return f
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (f *fpm) request(ctx context.Context, script string) (*Response, error) {
	p := filepath.Join(f.docroot, script)
	return Do(ctx, f.sock, map[string]string{
		"REQUEST_METHOD": "GET", "SCRIPT_FILENAME": p, "SCRIPT_NAME": "/" + script,
		"REQUEST_URI": "/" + script, "SERVER_PROTOCOL": "HTTP/1.1", "GATEWAY_INTERFACE": "CGI/1.1",
	})
}

type outcome struct {
	resp *Response
	err  error
}

// startSlow starts slow.php and returns once PHP is executing it.
func (f *fpm) startSlow(t *testing.T) <-chan outcome {
	t.Helper()
	ch := make(chan outcome, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		r, err := f.request(ctx, "slow.php")
		ch <- outcome{r, err}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(f.docroot, "slow.started")); err == nil {
			return ch
		}
		if time.Now().After(deadline) {
			t.Fatal("slow.php never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func pidMTime(t *testing.T, p string) time.Time {
	t.Helper()
	fi, err := os.Stat(p)
	must(t, err)
	return fi.ModTime()
}

func TestFastCGIRequest(t *testing.T) {
	f := startFPM(t, "")
	r, err := f.request(context.Background(), "hello.php")
	must(t, err)
	if r.Status != 200 || string(r.Body) != "hello" {
		t.Fatalf("got %d %q", r.Status, r.Body)
	}
	r, err = f.request(context.Background(), "missing.php")
	must(t, err)
	if r.Status != 404 {
		t.Fatalf("missing script: status %d, want 404", r.Status)
	}
	v, err := GetValues(context.Background(), f.sock)
	must(t, err)
	if _, ok := v["FCGI_MPXS_CONNS"]; !ok {
		t.Fatalf("GET_VALUES answer lacks FCGI_MPXS_CONNS: %v", v)
	}
}

func TestGracefulReloadKeepsInFlightRequest(t *testing.T) {
	f := startFPM(t, "10s")
	before := pidMTime(t, f.pid)
	slow := f.startSlow(t)
	start := time.Now()
	res, err := Reload(context.Background(), Options{PIDFile: f.pid, Config: f.conf, Socket: f.sock, ScriptDir: f.dir})
	must(t, err)
	took := time.Since(start)
	if res.Method != "reload" {
		t.Fatalf("method %q, want reload (%s)", res.Method, res.Detail)
	}
	o := <-slow
	if o.err != nil || o.resp.Status != 200 || string(o.resp.Body) != "slow-done" {
		t.Fatalf("in-flight request across the reload: err %v resp %+v", o.err, o.resp)
	}
	if !pidMTime(t, f.pid).After(before) {
		t.Fatal("pid file not rewritten: php-fpm did not re-execute")
	}
	// Reload waited for the old workers (slow.php had ~2s left) and the
	// new master before returning.
	if took < time.Second {
		t.Fatalf("Reload returned after %s, before the old master could have finished its request", took)
	}
	r, err := f.request(context.Background(), "hello.php")
	must(t, err)
	if string(r.Body) != "hello" {
		t.Fatalf("after reload: %q", r.Body)
	}
	t.Logf("graceful reload with a 2s request in flight: %s (%s)", took.Round(time.Millisecond), res.Detail)
}

// TestReloadWithoutTimeoutCutsRequests proves the premise of this package:
// with process_control_timeout = 0, SIGUSR2 kills the busy worker at once.
func TestReloadWithoutTimeoutCutsRequests(t *testing.T) {
	f := startFPM(t, "0")
	slow := f.startSlow(t)
	pid, err := readPID(f.pid)
	must(t, err)
	must(t, syscall.Kill(pid, syscall.SIGUSR2))
	o := <-slow
	t.Logf("in-flight request after SIGUSR2 with process_control_timeout = 0: err %v, resp %+v", o.err, o.resp)
	if o.err == nil && o.resp.Status == 200 && string(o.resp.Body) == "slow-done" {
		t.Fatal("the in-flight request survived a reload with process_control_timeout = 0; php-fpm changed, revisit Reload's choice")
	}
}

func TestOPcacheResetWhenReloadIsUnsafe(t *testing.T) {
	f := startFPM(t, "0")
	before := pidMTime(t, f.pid)
	slow := f.startSlow(t)
	res, err := Reload(context.Background(), Options{PIDFile: f.pid, Config: f.conf, Socket: f.sock, ScriptDir: f.dir})
	must(t, err)
	if res.Method != "opcache-reset" || !strings.Contains(res.Detail, "opcache") {
		t.Fatalf("got %+v, want an opcache reset", res)
	}
	o := <-slow
	if o.err != nil || string(o.resp.Body) != "slow-done" {
		t.Fatalf("in-flight request during the OPcache reset: %v %+v", o.err, o.resp)
	}
	if !pidMTime(t, f.pid).Equal(before) {
		t.Fatal("php-fpm was reloaded although process_control_timeout is 0")
	}
	ents, _ := os.ReadDir(f.dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".mageflow-opcache-") {
			t.Fatalf("reset script left behind: %s", e.Name())
		}
	}
	t.Logf("%s", res.Detail)
}

func TestReloadRefusesWhenUnsafe(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "php-fpm.conf")
	must(t, os.WriteFile(conf, []byte("[global]\npid = /run/x.pid\n"), 0o644))
	_, err := Reload(context.Background(), Options{PIDFile: filepath.Join(dir, "x.pid"), Config: conf})
	if !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), "process_control_timeout") {
		t.Fatalf("got %v, want ErrUnsafe naming process_control_timeout", err)
	}
	_, err = Reload(context.Background(), Options{})
	if !errors.Is(err, ErrUnsafe) {
		t.Fatalf("no config at all: got %v, want ErrUnsafe", err)
	}
}

func TestReloadViaSystemctl(t *testing.T) {
	f := startFPM(t, "5s")
	// A stand-in for systemctl that does what php8.2-fpm.service's
	// ExecReload does: kill -USR2 $MAINPID.
	fake := filepath.Join(t.TempDir(), "systemctl")
	must(t, os.WriteFile(fake, []byte("#!/bin/sh\n[ \"$1\" = reload ] && [ \"$2\" = php8.2-fpm ] || exit 3\nkill -USR2 $(cat "+f.pid+")\n"), 0o755))
	before := pidMTime(t, f.pid)
	res, err := Reload(context.Background(), Options{Service: "php8.2-fpm", PIDFile: f.pid, Config: f.conf, Socket: f.sock, Systemctl: fake})
	must(t, err)
	if res.Method != "reload" || !strings.Contains(res.Detail, "systemctl reload php8.2-fpm") {
		t.Fatalf("got %+v", res)
	}
	if !pidMTime(t, f.pid).After(before) {
		t.Fatal("not reloaded")
	}
}

func TestProcessControlTimeout(t *testing.T) {
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "conf.d"), 0o755))
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		must(t, os.WriteFile(p, []byte(s), 0o644))
		return p
	}
	write("conf.d/a.conf", "; pool\n[www]\nprocess_control_timeout = 99\n") // pool section: ignored
	write("conf.d/b.conf", "[global]\nprocess_control_timeout = \"2m\" ; two minutes\n")
	main := write("php-fpm.conf", "[global]\nprocess_control_timeout = 10s\ninclude=conf.d/*.conf\n")
	d, err := ProcessControlTimeout(main)
	must(t, err)
	if d != 2*time.Minute {
		t.Fatalf("got %s, want 2m (the later include wins, the pool section is ignored)", d)
	}
	for v, want := range map[string]time.Duration{"10": 10 * time.Second, "10s": 10 * time.Second, "0": 0, "1h": time.Hour, "1d": 24 * time.Hour} {
		p := write("v.conf", "[global]\nprocess_control_timeout = "+v+"\n")
		d, err := ProcessControlTimeout(p)
		if err != nil || d != want {
			t.Fatalf("%q: got %s %v, want %s", v, d, err, want)
		}
	}
	p := write("none.conf", "[global]\npid = /run/php.pid\n")
	if d, err := ProcessControlTimeout(p); err != nil || d != 0 {
		t.Fatalf("unset: got %s %v, want 0", d, err)
	}
	p = write("bad.conf", "[global]\nprocess_control_timeout = soon\n")
	if _, err := ProcessControlTimeout(p); err == nil || !strings.Contains(err.Error(), "bad.conf:2") {
		t.Fatalf("bad value: got %v, want an error naming bad.conf:2", err)
	}
	if _, err := ProcessControlTimeout(filepath.Join(dir, "missing.conf")); err == nil || !strings.Contains(err.Error(), "php_fpm.config") {
		t.Fatalf("missing file: got %v", err)
	}
}

func TestPairsRoundTrip(t *testing.T) {
	long := strings.Repeat("x", 300)
	m := map[string]string{"A": "1", "LONG": long, long: "", "EMPTY": ""}
	got := decodePairs(encodePairs(m))
	if len(got) != len(m) {
		t.Fatalf("got %d pairs, want %d", len(got), len(m))
	}
	for k, v := range m {
		if got[k] != v {
			t.Fatalf("%q: got %q want %q", k, got[k], v)
		}
	}
}
