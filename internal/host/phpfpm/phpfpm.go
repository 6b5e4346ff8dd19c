// Package phpfpm makes a running php-fpm pick up a new release without
// failing a single request.
//
// Two ways are safe, and one that looks obvious is not:
//
//   - A graceful reload (SIGUSR2, or `systemctl reload`) makes the master
//     ask its workers to finish their request and exit, then re-executes
//     itself; the listening socket is inherited, so new connections wait in
//     its backlog meanwhile. php-fpm waits for the workers at most
//     process_control_timeout — and that setting defaults to 0, which means
//     "do not wait": busy workers are terminated at once and nginx answers
//     502 for every request they were serving.
//   - When the timeout is 0 mageflow does not reload; it resets OPcache from
//     inside the pool instead, by running a tiny script through the pool's
//     FastCGI socket. The code cache is shared by all workers of the pool,
//     so one reset is enough, and nothing is interrupted.
//
// With neither a timeout nor a socket configured there is no safe way, and
// Reload says so (ErrUnsafe) instead of cutting requests.
package phpfpm

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrUnsafe is wrapped by Reload when neither a graceful reload nor an
// OPcache reset is possible.
var ErrUnsafe = errors.New("no safe way to make php-fpm load the new code")

// Options describe one host's php-fpm (config: hosts.NAME.php_fpm).
type Options struct {
	// Service is a systemd unit reloaded with `systemctl reload`.
	Service string
	// PIDFile holds the master's pid, signalled with SIGUSR2 when Service
	// is empty. When set with Service it is used to see the reload finish.
	PIDFile string
	// Config is the php-fpm main config, read for process_control_timeout.
	Config string
	// Socket is the pool's FastCGI address (unix path or host:port).
	Socket string
	// ScriptDir is where the OPcache reset script is written: a directory
	// the pool's user can read (the app directory). A private subdirectory
	// with an unguessable name is created in it and removed afterwards.
	ScriptDir string
	// ScriptGID, when > 0, is the group given to the script so a pool
	// running as another user can read it without it being world-readable.
	ScriptGID int
	// Progress, when set, is called while waiting (activity heartbeat).
	Progress func(step string)
	// Systemctl is the systemctl binary (tests replace it).
	Systemctl string
}

// Result says how PHP picked up the new code.
type Result struct {
	Method string // "reload" or "opcache-reset"
	Detail string
}

// Reload makes php-fpm serve the new release: a graceful reload when
// process_control_timeout > 0, an OPcache reset over FastCGI otherwise.
func Reload(ctx context.Context, o Options) (Result, error) {
	var timeout time.Duration
	if o.Config != "" {
		t, err := ProcessControlTimeout(o.Config)
		if err != nil {
			return Result{}, err
		}
		timeout = t
	}
	if timeout > 0 && (o.Service != "" || o.PIDFile != "") {
		return reload(ctx, o, timeout)
	}
	if o.Socket != "" {
		return ResetOPcache(ctx, o)
	}
	why := "php_fpm.config is not set, so process_control_timeout cannot be checked"
	if o.Config != "" {
		why = fmt.Sprintf("process_control_timeout is 0 in %s (php-fpm would kill busy workers on reload: 502s)", o.Config)
		if timeout > 0 {
			why = "neither php_fpm.service nor php_fpm.pid_file is set, so php-fpm cannot be signalled"
		}
	}
	return Result{}, fmt.Errorf("%w: %s, and php_fpm.socket is not set for an OPcache reset; set process_control_timeout = 10s in the [global] section of php-fpm.conf (and php_fpm.config + service or pid_file), or set php_fpm.socket to the pool's listen address", ErrUnsafe, why)
}

func (o Options) progress(s string) {
	if o.Progress != nil {
		o.Progress(s)
	}
}

func reload(ctx context.Context, o Options, timeout time.Duration) (Result, error) {
	var before time.Time
	if o.PIDFile != "" {
		if fi, err := os.Stat(o.PIDFile); err == nil {
			before = fi.ModTime()
		}
	}
	start := time.Now()
	var how string
	if o.Service != "" {
		bin := o.Systemctl
		if bin == "" {
			bin = "systemctl"
		}
		out, err := exec.CommandContext(ctx, bin, "reload", o.Service).CombinedOutput()
		if err != nil {
			return Result{}, fmt.Errorf("systemctl reload %s: %v: %s (check `systemctl status %s`)", o.Service, err, strings.TrimSpace(string(out)), o.Service)
		}
		how = "systemctl reload " + o.Service
	} else {
		pid, err := readPID(o.PIDFile)
		if err != nil {
			return Result{}, err
		}
		if err := syscall.Kill(pid, syscall.SIGUSR2); err != nil {
			return Result{}, fmt.Errorf("signal php-fpm master %d (from %s): %w; is php-fpm running, and does the agent run as its user or root?", pid, o.PIDFile, err)
		}
		how = fmt.Sprintf("SIGUSR2 to master %d", pid)
	}

	// The old master waits up to process_control_timeout for busy workers,
	// then up to ~2s more (SIGTERM, SIGKILL) before it re-executes.
	deadline := time.Now().Add(timeout + 30*time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	lastProgress := time.Now()
	for {
		ready, why := readyAfter(ctx, o, before)
		if ready {
			return Result{Method: "reload", Detail: fmt.Sprintf("%s; new master accepting after %.1fs (process_control_timeout %s)", how, time.Since(start).Seconds(), timeout)}, nil
		}
		if time.Now().After(deadline) {
			return Result{}, fmt.Errorf("php-fpm reload (%s) did not finish within %s: %s; check the php-fpm log", how, timeout+30*time.Second, why)
		}
		if time.Since(lastProgress) > 5*time.Second {
			o.progress("waiting for php-fpm to reload: " + why)
			lastProgress = time.Now()
		}
		select {
		case <-ctx.Done():
			return Result{}, ctx.Err()
		case <-tick.C:
		}
	}
}

// readyAfter reports whether the re-executed master is up: its pid file is
// rewritten after `before` and, when a socket is known, a worker answers
// FCGI_GET_VALUES.
func readyAfter(ctx context.Context, o Options, before time.Time) (bool, string) {
	if o.PIDFile != "" {
		fi, err := os.Stat(o.PIDFile)
		if err != nil || !fi.ModTime().After(before) {
			return false, "pid file " + o.PIDFile + " not rewritten yet"
		}
		pid, err := readPID(o.PIDFile)
		if err != nil {
			return false, err.Error()
		}
		if syscall.Kill(pid, 0) != nil {
			return false, fmt.Sprintf("master %d not running", pid)
		}
	}
	if o.Socket != "" {
		c, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if _, err := GetValues(c, o.Socket); err != nil {
			return false, "socket " + o.Socket + " not answering: " + err.Error()
		}
	}
	if o.PIDFile == "" && o.Socket == "" {
		// Nothing to observe (systemd unit without pid file or socket):
		// give the master the second a graceful reload may take.
		select {
		case <-ctx.Done():
			return false, ctx.Err().Error()
		case <-time.After(time.Second):
		}
	}
	return true, ""
}

func readPID(p string) (int, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, fmt.Errorf("read php-fpm pid file: %w; set php_fpm.pid_file to the `pid =` of php-fpm.conf", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("php-fpm pid file %s holds %q, not a process id", p, strings.TrimSpace(string(b)))
	}
	return pid, nil
}

// resetScript resets the pool's OPcache and this worker's stat and realpath
// caches. It prints "ok" even without OPcache, where there is nothing to
// reset.
const resetScript = `<?php
$r = function_exists('opcache_reset') ? (opcache_reset() ? 'opcache reset' : 'opcache disabled') : 'opcache not loaded';
clearstatcache(true);
echo "ok\n", $r, "\n";
`

// ResetOPcache runs resetScript in the pool through its FastCGI socket. The
// script lives in a fresh 0710 directory with an unguessable name under
// ScriptDir (never under the web root) for the duration of one request.
func ResetOPcache(ctx context.Context, o Options) (Result, error) {
	if o.ScriptDir == "" {
		return Result{}, errors.New("phpfpm: ScriptDir is required for an OPcache reset")
	}
	dir, err := os.MkdirTemp(o.ScriptDir, ".mageflow-opcache-")
	if err != nil {
		return Result{}, fmt.Errorf("create the OPcache reset script directory: %w", err)
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "reset.php")
	if err := os.WriteFile(script, []byte(resetScript), 0o640); err != nil {
		return Result{}, err
	}
	dirMode, fileMode := os.FileMode(0o711), os.FileMode(0o644)
	if o.ScriptGID > 0 {
		if err := os.Chown(dir, -1, o.ScriptGID); err != nil {
			return Result{}, fmt.Errorf("chgrp %s: %w", dir, err)
		}
		if err := os.Chown(script, -1, o.ScriptGID); err != nil {
			return Result{}, fmt.Errorf("chgrp %s: %w", script, err)
		}
		dirMode, fileMode = 0o710, 0o640
	}
	if err := os.Chmod(script, fileMode); err != nil {
		return Result{}, err
	}
	if err := os.Chmod(dir, dirMode); err != nil {
		return Result{}, err
	}
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := Do(c, o.Socket, map[string]string{
		"GATEWAY_INTERFACE": "CGI/1.1",
		"REQUEST_METHOD":    "GET",
		"SCRIPT_FILENAME":   script,
		"SCRIPT_NAME":       "/reset.php",
		"REQUEST_URI":       "/reset.php",
		"DOCUMENT_ROOT":     dir,
		"SERVER_PROTOCOL":   "HTTP/1.1",
		"SERVER_SOFTWARE":   "mageflow",
		"REMOTE_ADDR":       "127.0.0.1",
		"SERVER_NAME":       "localhost",
		"SERVER_PORT":       "80",
		"CONTENT_LENGTH":    "0",
	})
	if err != nil {
		return Result{}, fmt.Errorf("OPcache reset through %s: %w; check php_fpm.socket is the pool's listen address and the agent may connect to it", o.Socket, err)
	}
	body := strings.TrimSpace(string(resp.Body))
	if resp.Status != 200 || !strings.HasPrefix(body, "ok") {
		return Result{}, fmt.Errorf("OPcache reset through %s answered %d %q (stderr %q); the pool's user must be able to read %s (set hosts.*.php_user so the script gets its group), and security.limit_extensions must allow .php", o.Socket, resp.Status, trunc(body, 200), trunc(resp.Stderr, 200), script)
	}
	detail := "reset via " + o.Socket
	if _, rest, ok := strings.Cut(body, "\n"); ok {
		detail += ": " + strings.TrimSpace(rest)
	}
	return Result{Method: "opcache-reset", Detail: detail}, nil
}

func trunc(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// ProcessControlTimeout reads process_control_timeout from the [global]
// section of a php-fpm config, following include= globs the way php-fpm
// does (in place, later values win). Relative include patterns are taken
// relative to the including file's directory. Units: s (default), m, h, d.
func ProcessControlTimeout(path string) (time.Duration, error) {
	// Like php-fpm, an included file continues in the section the
	// include appeared in until it opens its own.
	p := &pctParser{section: "global", seen: map[string]bool{}}
	if err := p.parse(path, 0); err != nil {
		return 0, err
	}
	if p.val == "" {
		return 0, nil
	}
	d, err := parseFPMDuration(p.val)
	if err != nil {
		return 0, fmt.Errorf("%s: process_control_timeout = %q: %w", p.where, p.val, err)
	}
	return d, nil
}

// pctParser reads php-fpm configuration files, following includes, for the
// global process_control_timeout.
type pctParser struct {
	val     string // the last global process_control_timeout value
	where   string // file:line of val
	section string // the section the current line is in
	seen    map[string]bool
}

// parse reads file p (at include depth depth).
func (pp *pctParser) parse(p string, depth int) error {
	if depth > 10 {
		return fmt.Errorf("php-fpm config: include nesting deeper than 10 at %s", p)
	}
	abs, _ := filepath.Abs(p)
	if pp.seen[abs] {
		return nil
	}
	pp.seen[abs] = true
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("read php-fpm config: %w; set hosts.*.php_fpm.config to php-fpm.conf (e.g. /etc/php/8.2/fpm/php-fpm.conf)", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || s[0] == ';' || s[0] == '#' {
			continue
		}
		if s[0] == '[' && strings.HasSuffix(s, "]") {
			pp.section = strings.ToLower(strings.TrimSpace(s[1 : len(s)-1]))
			continue
		}
		k, v, ok := fpmKeyValue(s)
		if !ok {
			continue
		}
		switch {
		case k == "include":
			if err := pp.include(p, line, v, depth); err != nil {
				return err
			}
		case k == "process_control_timeout" && pp.section == "global":
			pp.val, pp.where = v, fmt.Sprintf("%s:%d", p, line)
		}
	}
	return sc.Err()
}

// include parses the files matching pattern v, included at p:line.
func (pp *pctParser) include(p string, line int, v string, depth int) error {
	pat := v
	if !filepath.IsAbs(pat) {
		pat = filepath.Join(filepath.Dir(p), pat)
	}
	matches, err := filepath.Glob(pat)
	if err != nil {
		return fmt.Errorf("%s:%d: bad include pattern %q: %w", p, line, v, err)
	}
	for _, m := range matches {
		if err := pp.parse(m, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// fpmKeyValue splits a "key = value" line, unquoting the value or cutting
// a trailing ; comment.
func fpmKeyValue(s string) (k, v string, ok bool) {
	k, v, ok = strings.Cut(s, "=")
	if !ok {
		return "", "", false
	}
	k = strings.TrimSpace(k)
	v = strings.TrimSpace(v)
	if q := v[:min(len(v), 1)]; q == `"` || q == "'" {
		if end := strings.Index(v[1:], q); end >= 0 {
			v = v[1 : end+1]
		}
	} else if i := strings.Index(v, ";"); i >= 0 {
		v = strings.TrimSpace(v[:i])
	}
	return k, v, true
}

func parseFPMDuration(v string) (time.Duration, error) {
	unit := time.Second
	switch {
	case strings.HasSuffix(v, "s"):
		v = v[:len(v)-1]
	case strings.HasSuffix(v, "m"):
		v, unit = v[:len(v)-1], time.Minute
	case strings.HasSuffix(v, "h"):
		v, unit = v[:len(v)-1], time.Hour
	case strings.HasSuffix(v, "d"):
		v, unit = v[:len(v)-1], 24*time.Hour
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 {
		return 0, errors.New("want a number of seconds, optionally with s, m, h or d")
	}
	return time.Duration(n) * unit, nil
}
