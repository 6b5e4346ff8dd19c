package webstack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"
)

// Timeouts of process control; generous because tests share two cores.
const (
	startTimeout  = 20 * time.Second
	reloadTimeout = 20 * time.Second
	stopTimeout   = 15 * time.Second
	// headerTimeout is nginx's client_header_timeout: how long a
	// connection may take to send its request header. A connection that
	// sent nothing yet keeps an old worker (and its old config) alive
	// after a reload until then, so it must stay well below reloadTimeout.
	headerTimeout = 8 * time.Second
)

// NginxBinary finds nginx: /usr/sbin/nginx (Debian), then $PATH.
func NginxBinary() (string, error) {
	return findBinary("nginx: install nginx-light (make deps)", "/usr/sbin/nginx", "nginx")
}

// PHPFPMBinary finds php-fpm: php-fpm8.2 or php-fpm on $PATH, then
// /usr/sbin.
func PHPFPMBinary() (string, error) {
	return findBinary("php-fpm: install php8.2-fpm (make deps)",
		"php-fpm8.2", "php-fpm", "/usr/sbin/php-fpm8.2", "/usr/sbin/php-fpm")
}

func findBinary(hint string, candidates ...string) (string, error) {
	for _, c := range candidates {
		if filepath.IsAbs(c) {
			if fi, err := os.Stat(c); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
				return c, nil
			}
			continue
		}
		if p, err := exec.LookPath(c); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("webstack: no %s (looked for %s)", hint, strings.Join(candidates, ", "))
}

// FreePort returns a loopback TCP port that was free a moment ago. Callers
// pick ports themselves so several stacks can run side by side.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("webstack: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Proc is a running nginx or php-fpm master started by StartNginx or
// StartPHPFPM. Its workers share its process group, so Stop never leaves
// one behind holding a port.
type Proc struct {
	kind    string // "nginx" or "php-fpm"
	bin     string
	dir     string
	conf    string
	args    []string // config arguments, shared by -t and the run
	logFile string   // the daemon's own log (nginx error.log, php-fpm log)
	outFile string   // stdout+stderr of the master
	wait    func(ctx context.Context) error
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error

	mu       sync.Mutex // serialises Reload and Stop
	stopOnce sync.Once
	stopErr  error
}

// PID is the master's process id (php-fpm keeps it across a reload).
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Dir is the directory holding the config, pid and logs.
func (p *Proc) Dir() string { return p.dir }

// ConfFile is the config the master runs with.
func (p *Proc) ConfFile() string { return p.conf }

// Done is closed when the master has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Logs returns the end of the daemon's log and its stdout/stderr, for error
// messages and failing tests.
func (p *Proc) Logs() string {
	var b strings.Builder
	for _, f := range []string{p.logFile, p.outFile} {
		data, err := os.ReadFile(f)
		if err != nil || len(bytes.TrimSpace(data)) == 0 {
			continue
		}
		if len(data) > 8<<10 {
			data = data[len(data)-8<<10:]
		}
		fmt.Fprintf(&b, "--- %s\n%s", f, data)
		if !bytes.HasSuffix(data, []byte("\n")) {
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// Stop shuts the master down gracefully (SIGQUIT: nginx and php-fpm let
// running requests finish), then kills the whole process group after 15s.
// Safe to call more than once.
func (p *Proc) Stop() error {
	p.stopOnce.Do(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Signal(syscall.SIGQUIT)
			select {
			case <-p.done:
			case <-time.After(stopTimeout):
				p.stopErr = fmt.Errorf("webstack: %s (pid %d) ignored SIGQUIT for %s; killed it", p.kind, p.PID(), stopTimeout)
			}
		}
		// Workers left behind by a crashed or killed master still hold
		// ports and sockets.
		_ = syscall.Kill(-p.PID(), syscall.SIGKILL)
		<-p.done
	})
	return p.stopErr
}

// Reload makes the master pick up its config again without dropping
// requests: nginx after `nginx -t` (with confs, nginx.conf is first rewritten
// with them and restored if nginx rejects it), php-fpm by SIGUSR2 after
// `php-fpm -t`. It returns once the new workers are serving.
func (p *Proc) Reload(confs ...string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.done:
		return fmt.Errorf("webstack: %s is not running (exited: %v)\n%s", p.kind, p.waitErr, p.Logs())
	default:
	}
	var sig syscall.Signal
	var ready string
	switch p.kind {
	case "nginx":
		sig, ready = syscall.SIGHUP, "start worker process"
		if len(confs) > 0 {
			old, err := os.ReadFile(p.conf)
			if err != nil {
				return fmt.Errorf("webstack: reload nginx: %w", err)
			}
			if err := writeNginxConf(p.dir, confs); err != nil {
				return err
			}
			if err := p.test(); err != nil {
				_ = os.WriteFile(p.conf, old, 0o644)
				return err
			}
			p.wait = waitListening(listens(confs...))
		} else if err := p.test(); err != nil {
			return err
		}
	case "php-fpm":
		sig, ready = syscall.SIGUSR2, "ready to handle connections"
		if err := p.test(); err != nil {
			return err
		}
	}
	offset := fileSize(p.logFile)
	oldWorkers := children(p.PID())
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("webstack: signal %s: %w", p.kind, err)
	}
	// Both daemons reload asynchronously; their log says when it is done or
	// why it failed (e.g. a port that cannot be bound).
	deadline := time.Now().Add(reloadTimeout)
	for {
		tail := readFrom(p.logFile, offset)
		if i := strings.Index(tail, "[emerg]"); i >= 0 || strings.Contains(tail, "ERROR:") {
			return fmt.Errorf("webstack: %s rejected the reload and keeps its old config:\n%s", p.kind, tail)
		}
		if strings.Contains(tail, ready) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("webstack: %s did not finish reloading within %s:\n%s", p.kind, reloadTimeout, p.Logs())
		}
		select {
		case <-p.done:
			return fmt.Errorf("webstack: %s exited during reload: %v\n%s", p.kind, p.waitErr, p.Logs())
		case <-time.After(20 * time.Millisecond):
		}
	}
	// nginx's old workers keep answering on their open keep-alive
	// connections until they exit; only then does every request see the new
	// config.
	for _, pid := range oldWorkers {
		for alive(pid) {
			if time.Now().After(deadline) {
				return fmt.Errorf("webstack: %s reloaded, but old worker %d is still serving a request after %s", p.kind, pid, reloadTimeout)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	return p.wait(ctx)
}

// children lists the processes whose parent is pid (Linux /proc).
func children(pid int) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, state := procStat(child); ppid == pid && state != "Z" {
			out = append(out, child)
		}
	}
	return out
}

// alive says whether pid runs and is not a zombie.
func alive(pid int) bool {
	_, state := procStat(pid)
	return state != "" && state != "Z"
}

// procStat reads the parent pid and state of pid from /proc/pid/stat.
func procStat(pid int) (ppid int, state string) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, ""
	}
	// The command name is in parentheses and may contain spaces.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, ""
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 2 {
		return 0, ""
	}
	ppid, _ = strconv.Atoi(f[1])
	return ppid, f[0]
}

// test runs the daemon's config check and returns its output in the error.
func (p *Proc) test() error {
	out, err := exec.Command(p.bin, append([]string{"-t"}, p.args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("webstack: %s -t rejected %s: %v\n%s", p.kind, p.conf, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// start runs the master in its own process group and waits until it serves.
func (p *Proc) start(ctx context.Context) error {
	if err := p.test(); err != nil {
		return err
	}
	out, err := os.OpenFile(p.outFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("webstack: %w", err)
	}
	defer out.Close()
	p.cmd = exec.Command(p.bin, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = out, out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("webstack: start %s: %w", p.kind, err)
	}
	p.done = make(chan struct{})
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	wctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- p.wait(wctx) }()
	select {
	case err = <-errc:
	case <-p.done:
		err = fmt.Errorf("exited: %v", p.waitErr)
	}
	if err == nil {
		// A port someone else already held answers the dial although our
		// master failed to bind it; give a failing master a moment to exit.
		select {
		case <-p.done:
			err = fmt.Errorf("exited: %v", p.waitErr)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err != nil {
		_ = p.Stop()
		return fmt.Errorf("webstack: %s did not come up: %v\n%s", p.kind, err, p.Logs())
	}
	// The caller's context bounds the daemon's life (t.Context in tests,
	// the dev command's context in `mageflow dev`).
	go func() {
		select {
		case <-ctx.Done():
			_ = p.Stop()
		case <-p.done:
		}
	}()
	return nil
}

// waitListening dials every address until all accept.
func waitListening(addrs []string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		for _, a := range addrs {
			if err := waitDial(ctx, "tcp", a); err != nil {
				return err
			}
		}
		return nil
	}
}

func waitDial(ctx context.Context, network, addr string) error {
	var d net.Dialer
	for {
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		c, err := d.DialContext(dctx, network, addr)
		cancel()
		if err == nil {
			return c.Close()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s %s does not accept connections: %v", network, addr, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

var nginxConfTmpl = template.Must(template.New("nginx.conf").Parse(`# Written by mageflow (webstack.StartNginx); the sites follow in http {}.
daemon off;
master_process on;
worker_processes 2;
{{- if .User}}
user {{.User}} {{.Group}};
{{- end}}
pid {{.Dir}}/nginx.pid;
error_log {{.Dir}}/error.log notice;

events {
    worker_connections 1024;
}

http {
{{- if .MimeTypes}}
    include {{.MimeTypes}};
{{- else}}
    types {
        text/html html htm;
        text/css css;
        text/plain txt;
        application/javascript js;
        application/json json;
        image/png png;
        image/svg+xml svg;
    }
{{- end}}
    default_type application/octet-stream;
    sendfile on;
    keepalive_timeout 65s;
    # An old worker lives on after a reload while any connection of its
    # has not sent a full request header; this bounds that (and
    # slowloris-style clients) well below Reload's wait (reloadTimeout).
    client_header_timeout {{.HeaderTimeout}}s;
    server_tokens off;
    log_format mageflow '$remote_addr "$request" $status $body_bytes_sent $request_time "$upstream_addr" $upstream_response_time "$sent_http_x_mageflow_host"';
    access_log {{.Dir}}/access.log mageflow;
    client_body_temp_path {{.Dir}}/tmp/body;
    proxy_temp_path {{.Dir}}/tmp/proxy;
    fastcgi_temp_path {{.Dir}}/tmp/fastcgi;
    uwsgi_temp_path {{.Dir}}/tmp/uwsgi;
    scgi_temp_path {{.Dir}}/tmp/scgi;
{{range .Confs}}
{{.}}
{{- end}}
}
`))

// writeNginxConf writes dir/nginx.conf: a self-contained main config (pid,
// logs and temp paths under dir) around the rendered sites.
//
// Secrets (SecretFile lines) go to files of their own, mode 0600; nginx.conf
// only includes them.
func writeNginxConf(dir string, confs []string) error {
	confs, secretFiles, err := splitSecrets(confs)
	if err != nil {
		return err
	}
	if err := writeSecrets(dir, secretFiles); err != nil {
		return err
	}
	data := map[string]any{"Dir": dir, "Confs": confs, "HeaderTimeout": int(headerTimeout / time.Second)}
	if _, err := os.Stat("/etc/nginx/mime.types"); err == nil {
		data["MimeTypes"] = "/etc/nginx/mime.types"
	}
	// As root, nginx would run its workers as nobody, who cannot read test
	// trees under 0700 temp dirs nor the php-fpm socket: keep the caller's
	// user.
	if os.Geteuid() == 0 {
		u, g, err := currentUser()
		if err != nil {
			return err
		}
		data["User"], data["Group"] = u, g
	}
	var b bytes.Buffer
	if err := nginxConfTmpl.Execute(&b, data); err != nil {
		return fmt.Errorf("webstack: render nginx.conf: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("webstack: write nginx.conf: %w", err)
	}
	return nil
}

// StartNginx writes dir/nginx.conf around confs (rendered by RenderHost and
// RenderBalancer), checks it with `nginx -t` (nginx's message is in the
// error), runs `nginx -p dir -c dir/nginx.conf` in the foreground and returns
// once every listen address accepts connections. Cancelling ctx stops it.
func StartNginx(ctx context.Context, dir string, confs ...string) (*Proc, error) {
	bin, err := NginxBinary()
	if err != nil {
		return nil, err
	}
	if !filepath.IsAbs(dir) {
		if dir, err = filepath.Abs(dir); err != nil {
			return nil, err
		}
	}
	if err := checkPath("nginx dir", dir, false); err != nil {
		return nil, err
	}
	for _, t := range []string{"body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		if err := os.MkdirAll(filepath.Join(dir, "tmp", t), 0o755); err != nil {
			return nil, fmt.Errorf("webstack: %w", err)
		}
	}
	if err := writeNginxConf(dir, confs); err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "nginx.conf")
	p := &Proc{
		kind:    "nginx",
		bin:     bin,
		dir:     dir,
		conf:    conf,
		args:    []string{"-p", dir + "/", "-c", conf},
		logFile: filepath.Join(dir, "error.log"),
		outFile: filepath.Join(dir, "nginx.out"),
		wait:    waitListening(listens(confs...)),
	}
	if err := p.start(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// StartPHPFPM writes pool.Dir/php-fpm.conf (RenderPool), checks it with
// `php-fpm -t`, runs `php-fpm -F -y conf` (-R as root) and returns once the
// pool's socket accepts connections. Cancelling ctx stops it.
func StartPHPFPM(ctx context.Context, pool Pool) (*Proc, error) {
	bin, err := PHPFPMBinary()
	if err != nil {
		return nil, err
	}
	if pool.Dir == "" {
		return nil, errors.New("webstack: Pool.Dir is empty: php-fpm needs a directory for its config, socket, pid and log")
	}
	if pool.Dir, err = filepath.Abs(pool.Dir); err != nil {
		return nil, err
	}
	pool = pool.withDefaults()
	text, err := RenderPool(pool)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(pool.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("webstack: %w", err)
	}
	conf := pool.ConfFile()
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return nil, fmt.Errorf("webstack: write php-fpm config: %w", err)
	}
	// A socket file left by a killed master would answer nothing.
	_ = os.Remove(pool.Socket)
	args := []string{"-F", "-y", conf}
	if os.Geteuid() == 0 {
		args = append(args, "-R")
	}
	p := &Proc{
		kind:    "php-fpm",
		bin:     bin,
		dir:     pool.Dir,
		conf:    conf,
		args:    args,
		logFile: pool.ErrorLog,
		outFile: filepath.Join(pool.Dir, "php-fpm.out"),
		wait: func(ctx context.Context) error {
			return waitDial(ctx, "unix", pool.Socket)
		},
	}
	if err := p.start(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// currentUser names the user and group the daemons' workers run as.
func currentUser() (string, string, error) {
	u, err := user.Current()
	if err != nil {
		return "", "", fmt.Errorf("webstack: look up current user: %w", err)
	}
	g, err := user.LookupGroupId(u.Gid)
	if err != nil {
		return "", "", fmt.Errorf("webstack: look up group %s: %w", u.Gid, err)
	}
	return u.Username, g.Name, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func readFrom(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(offset, 0); err != nil {
		return ""
	}
	var b bytes.Buffer
	_, _ = b.ReadFrom(f)
	return b.String()
}
