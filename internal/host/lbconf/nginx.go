package lbconf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Nginx says how to check and reload the balancer's nginx. The zero value
// is Debian's packaged nginx: /usr/sbin/nginx with /etc/nginx/nginx.conf and
// /run/nginx.pid.
type Nginx struct {
	// Binary is the nginx executable; default /usr/sbin/nginx, then $PATH.
	Binary string
	// Prefix and ConfFile are passed as -p and -c to `nginx -t`, so the
	// check reads the same config the master runs with. Empty: nginx's
	// compiled-in defaults.
	Prefix   string
	ConfFile string
	// PIDFile is the master's pid file (nginx's `pid` directive); default
	// /run/nginx.pid. A reload is SIGHUP to that pid, which is all
	// `nginx -s reload` does, but without a second nginx parsing the config.
	PIDFile string
	// ErrorLog, when set, is quoted in errors about a reload nginx did not
	// apply (its [emerg] line says why).
	ErrorLog string
}

func (n Nginx) binary() (string, error) {
	if n.Binary != "" {
		return n.Binary, nil
	}
	if fi, err := os.Stat("/usr/sbin/nginx"); err == nil && !fi.IsDir() {
		return "/usr/sbin/nginx", nil
	}
	p, err := exec.LookPath("nginx")
	if err != nil {
		return "", errors.New("lbconf: no nginx binary (looked for /usr/sbin/nginx and nginx on $PATH): install nginx (Debian: nginx-light) or set the balancer's nginx binary")
	}
	return p, nil
}

func (n Nginx) args() []string {
	var a []string
	if n.Prefix != "" {
		p := n.Prefix
		if !strings.HasSuffix(p, "/") {
			p += "/"
		}
		a = append(a, "-p", p)
	}
	if n.ConfFile != "" {
		a = append(a, "-c", n.ConfFile)
	}
	return a
}

func (n Nginx) pidFile() string {
	if n.PIDFile != "" {
		return n.PIDFile
	}
	return "/run/nginx.pid"
}

// TestError is `nginx -t` rejecting the config; Output is nginx's message.
type TestError struct {
	Output string
	Err    error
}

func (e *TestError) Error() string {
	return fmt.Sprintf("nginx -t failed (%v): %s", e.Err, e.Output)
}

// Test runs `nginx -t` against the running config (and so every include).
func (n Nginx) Test(ctx context.Context) error {
	bin, err := n.binary()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, bin, append([]string{"-t", "-q"}, n.args()...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &TestError{Output: strings.TrimSpace(string(out)), Err: err}
	}
	return nil
}

// MasterPID reads the master's pid file and checks the process runs.
func (n Nginx) MasterPID() (int, error) {
	data, err := os.ReadFile(n.pidFile())
	if err != nil {
		return 0, fmt.Errorf("lbconf: nginx does not seem to run: %w (start nginx, or point the balancer's pid_file at its `pid` directive)", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("lbconf: pid file %s holds %q, not a pid", n.pidFile(), bytes.TrimSpace(data))
	}
	if !Alive(pid) {
		return 0, fmt.Errorf("lbconf: nginx master %d from %s is not running: start nginx (a stale pid file is left by a crash)", pid, n.pidFile())
	}
	return pid, nil
}

// Reload sends SIGHUP to the master and returns the workers it had before:
// they are the ones still holding connections opened under the old config.
// nginx reloads asynchronously; the caller verifies through nginx that the
// new config serves.
func (n Nginx) Reload() (master int, old []Worker, err error) {
	master, err = n.MasterPID()
	if err != nil {
		return 0, nil, err
	}
	old = Workers(master)
	if err := syscall.Kill(master, syscall.SIGHUP); err != nil {
		return 0, nil, fmt.Errorf("lbconf: signal nginx master %d to reload: %w", master, err)
	}
	return master, old, nil
}

// ErrorLogFrom returns what nginx logged since offset (see ErrorLogSize).
func (n Nginx) ErrorLogFrom(offset int64) string {
	if n.ErrorLog == "" {
		return ""
	}
	f, err := os.Open(n.ErrorLog)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(offset, 0); err != nil {
		return ""
	}
	var b bytes.Buffer
	_, _ = b.ReadFrom(f)
	s := b.String()
	if len(s) > 4<<10 {
		s = s[len(s)-4<<10:]
	}
	return strings.TrimSpace(s)
}

// ErrorLogSize is the current end of the error log (0 without one).
func (n Nginx) ErrorLogSize() int64 {
	if n.ErrorLog == "" {
		return 0
	}
	fi, err := os.Stat(n.ErrorLog)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// Worker is an nginx worker process. PID and Start (clock ticks since boot)
// identify it across pid reuse.
type Worker struct {
	PID   int
	Start uint64
	// ShuttingDown is set once the worker got the master's graceful
	// shutdown after a reload: it has closed its listening sockets and
	// only finishes the requests it holds.
	ShuttingDown bool
}

// Workers lists the worker processes of an nginx master (Linux /proc); the
// cache manager and loader are not workers.
func Workers(master int) []Worker {
	var out []Worker
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, ok := readStat(pid)
		if !ok || st.ppid != master || st.state == "Z" {
			continue
		}
		title := cmdline(pid)
		if !strings.Contains(title, "worker process") {
			continue
		}
		out = append(out, Worker{PID: pid, Start: st.start, ShuttingDown: strings.Contains(title, "shutting down")})
	}
	return out
}

// Current reports the worker's state now: gone (exited or its pid reused)
// or running, and whether it is shutting down.
func (w Worker) Current() (running, shuttingDown bool) {
	st, ok := readStat(w.PID)
	if !ok || st.state == "Z" || st.start != w.Start {
		return false, false
	}
	return true, strings.Contains(cmdline(w.PID), "shutting down")
}

// Alive says whether pid runs and is not a zombie.
func Alive(pid int) bool {
	st, ok := readStat(pid)
	return ok && st.state != "Z"
}

type procStat struct {
	ppid  int
	state string
	start uint64
}

func readStat(pid int) (procStat, bool) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, false
	}
	// The command name is in parentheses and may contain spaces.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return procStat{}, false
	}
	f := strings.Fields(string(data[i+1:]))
	// Fields after the name start at field 3 (state); starttime is 22.
	if len(f) < 20 {
		return procStat{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	start, _ := strconv.ParseUint(f[19], 10, 64)
	return procStat{ppid: ppid, state: f[0], start: start}, true
}

// cmdline is the process title nginx sets ("nginx: worker process is
// shutting down").
func cmdline(pid int) string {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return ""
	}
	return string(bytes.ReplaceAll(data, []byte{0}, []byte{' '}))
}
