// Package webstack renders and runs the web tier a mageflow deploy switches
// under: nginx serving <root>/<app>/current/pub with PHP handed to php-fpm,
// and an nginx load balancer in front of several hosts.
//
// The rendered configs carry the three properties a zero-downtime deploy
// relies on:
//
//   - Every PHP request is pinned to one release. The location resolves the
//     `current` symlink once ($realpath_root, through a cached map variable) and passes
//     the resolved path as SCRIPT_FILENAME and DOCUMENT_ROOT, so php-fpm and
//     OPcache see /…/releases/<id>/pub/index.php, never /…/current/…, and a
//     request that started before the switch finishes in its old release.
//   - Maintenance is decided by nginx, not by the app: while
//     <root>/<app>/maintenance.flag exists, clients not in the allow list and
//     without the bypass header get 503 + Retry-After before PHP runs, so a
//     database upgrade never sees traffic.
//   - The balancer retries another host only on connection errors, timeouts
//     and 502 (a host restarting), and passes 503 through, so maintenance is
//     visible to clients instead of being retried away.
//
// The same renderers serve three users: the e2e deploy tests and `mageflow
// dev` (which run the configs through StartNginx / StartPHPFPM) and operators
// (who copy the rendered text into their own nginx and php-fpm setup).
package webstack

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"time"
)

const (
	// ReleaseMarker is the static file every release carries in pub/; the
	// host config serves it uncached so health checks and the deploy see
	// which release a host answers from without running PHP.
	ReleaseMarker = "/.mageflow-release"
	// BypassHeader lets operators and deploy health checks through
	// maintenance when its value equals the configured secret.
	BypassHeader = "X-Mageflow-Bypass"
	// HostHeader is added to every host response; the balancer keeps it, so
	// tests and operators see which host answered.
	HostHeader = "X-Mageflow-Host"
	// ReleaseHeader is sent by the app (the fixture's pub/index.php) with the
	// release id it runs from.
	ReleaseHeader = "X-Mageflow-Release"
	// DefaultRetryAfter is the Retry-After of the maintenance 503.
	DefaultRetryAfter = 30 * time.Second
	// DefaultProcessControlTimeout lets php-fpm workers finish their request
	// on a graceful reload instead of being cut off.
	DefaultProcessControlTimeout = 10 * time.Second
)

// MaintenanceFlag is the file whose existence puts an app on a host into
// maintenance (checked by nginx on every request, so creating or removing it
// takes effect at once, with no reload). It lives beside releases/ and
// current, not inside a release, so it survives the switch.
func MaintenanceFlag(root, app string) string {
	return filepath.Join(root, app, "maintenance.flag")
}

// DocRoot is nginx's root for an app on a host: the current release's pub/.
func DocRoot(root, app string) string {
	return filepath.Join(root, app, "current", "pub")
}

// HostSite is one app served on one host.
type HostSite struct {
	// Host is the host's name from the config; sent as X-Mageflow-Host.
	Host string
	// App is the app name; the site serves <Root>/<App>/current/pub.
	App string
	// Root is the host's root (hosts.NAME.root).
	Root string
	// Listen is nginx's listen address, "127.0.0.1:8081" or "8081".
	Listen string
	// ServerName is the server_name; default "_" (any).
	ServerName string
	// FastCGI is the php-fpm pool: a unix socket path (absolute) or
	// host:port.
	FastCGI string
	// MaintenanceAllow lists client addresses or CIDRs served normally during
	// maintenance (office, monitoring).
	MaintenanceAllow []string
	// BypassSecret, when set, lets requests whose X-Mageflow-Bypass header
	// equals it through maintenance (the deploy's own health checks).
	BypassSecret string
	// TrustedProxies are the balancers' addresses/CIDRs; when set, the client
	// address used for the allow list is taken from their X-Real-IP header
	// (which RenderBalancer overwrites, so clients cannot forge it).
	TrustedProxies []string
	// RetryAfter of the maintenance 503; default 30s.
	RetryAfter time.Duration
}

// Balancer is an nginx load balancer in front of the hosts of an
// environment.
type Balancer struct {
	// Name identifies the upstream (letters, digits, '_', '-', '.').
	Name string
	// Listen is the balancer's listen address.
	Listen string
	// ServerName is the server_name; default "_".
	ServerName string
	// Upstreams are the hosts' web addresses, host:port.
	Upstreams []string
	// Tries bounds how many hosts one request may be tried on
	// (proxy_next_upstream_tries); default: all of them.
	Tries int
	// Keepalive idle connections kept to the hosts per worker; default 16.
	Keepalive int
}

// Pool is a php-fpm master with one pool.
type Pool struct {
	// Name of the pool; default "mageflow".
	Name string
	// Dir holds the defaults for the paths below (php-fpm.conf,
	// php-fpm.sock, php-fpm.pid, php-fpm.log). Needed by StartPHPFPM and
	// when any path is left empty.
	Dir string
	// Socket is the unix socket the pool listens on.
	Socket  string
	PIDFile string
	// ErrorLog receives the master's log and, with catch_workers_output,
	// the workers' stderr.
	ErrorLog string
	// User and Group run the workers (and own the socket); default: the
	// current user. root needs php-fpm -R (StartPHPFPM passes it).
	User  string
	Group string
	// SocketOwner and SocketGroup own the socket (mode 0660); default User
	// and Group. Set SocketGroup to nginx's group (www-data) when PHP runs
	// as another user, or nginx cannot connect.
	SocketOwner string
	SocketGroup string
	// PM is "static", "dynamic" (default) or "ondemand"; MaxChildren
	// defaults to 4.
	PM          string
	MaxChildren int
	// ProcessControlTimeout is how long a graceful reload (SIGUSR2) waits
	// for busy workers; default 10s. 0 in php-fpm means "kill at once",
	// which cuts requests — the reason this is never rendered as 0.
	ProcessControlTimeout time.Duration
	// Env is passed to the workers (env[K] = V) in addition to the master's
	// environment (clear_env = no).
	Env map[string]string
	// AdminValues are php_admin_value[K] = V (e.g. opcache settings).
	AdminValues map[string]string
}

// ConfFile is where StartPHPFPM writes the rendered config.
func (p Pool) ConfFile() string { return filepath.Join(p.Dir, "php-fpm.conf") }

// SocketPath is the pool's socket: Socket, or Dir/php-fpm.sock by default.
// Pass it as HostSite.FastCGI.
func (p Pool) SocketPath() string { return p.withDefaults().Socket }

// withDefaults fills the derived paths and sizes.
func (p Pool) withDefaults() Pool {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&p.Name, "mageflow")
	if p.Dir != "" {
		def(&p.Socket, filepath.Join(p.Dir, "php-fpm.sock"))
		def(&p.PIDFile, filepath.Join(p.Dir, "php-fpm.pid"))
		def(&p.ErrorLog, filepath.Join(p.Dir, "php-fpm.log"))
	}
	def(&p.PM, "dynamic")
	if p.MaxChildren == 0 {
		p.MaxChildren = 4
	}
	if p.ProcessControlTimeout == 0 {
		p.ProcessControlTimeout = DefaultProcessControlTimeout
	}
	return p
}

var (
	nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	// secretRE keeps the bypass secret a plain nginx map key: no quotes,
	// '$' (variables), '~' (regex) or whitespace.
	secretRE = regexp.MustCompile(`^[A-Za-z0-9._+/=:@-]{8,}$`)
	// mapKeywords are words nginx's map reads as parameters, not keys.
	mapKeywords = map[string]bool{"default": true, "hostnames": true, "include": true, "volatile": true}
	slugRE      = regexp.MustCompile(`[^a-z0-9]+`)
	listenRE    = regexp.MustCompile(`(?m)^\s*listen\s+([^;\s]+)`)
	iniKeyRE    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]*$`)
)

// checkName rejects names that would break out of an nginx or php-fpm
// directive.
func checkName(what, v string) error {
	if !nameRE.MatchString(v) {
		return fmt.Errorf("webstack: %s %q: use letters, digits, '.', '_' and '-' only", what, v)
	}
	return nil
}

// checkPath rejects paths nginx would read as more than one token or as
// variables; such paths would need quoting rules that differ between nginx
// and php-fpm.
func checkPath(what, v string, unixSocketOK bool) error {
	if v == "" {
		return fmt.Errorf("webstack: %s is empty", what)
	}
	if !filepath.IsAbs(v) && !(unixSocketOK && strings.Contains(v, ":")) {
		return fmt.Errorf("webstack: %s %q must be an absolute path", what, v)
	}
	if strings.ContainsAny(v, " \t\r\n\"'$;{}#\\") {
		return fmt.Errorf("webstack: %s %q contains whitespace, quotes or one of $ ; { } # \\ — move it to a plain path", what, v)
	}
	return nil
}

// checkListen accepts "port", "host:port" and "[v6]:port".
func checkListen(what, v string) error {
	if _, _, err := splitListen(v); err != nil {
		return fmt.Errorf("webstack: %s %q: %v (want 127.0.0.1:8081 or 8081)", what, v, err)
	}
	return nil
}

// splitListen returns the address to dial for a listen value.
func splitListen(v string) (host string, port int, err error) {
	if p, err := strconv.Atoi(v); err == nil {
		if p <= 0 || p > 65535 {
			return "", 0, fmt.Errorf("port out of range")
		}
		return "127.0.0.1", p, nil
	}
	h, ps, err := net.SplitHostPort(v)
	if err != nil {
		return "", 0, err
	}
	p, err := strconv.Atoi(ps)
	if err != nil || p <= 0 || p > 65535 {
		return "", 0, fmt.Errorf("bad port %q", ps)
	}
	if h == "" || h == "*" || h == "0.0.0.0" {
		h = "127.0.0.1"
	} else if h == "::" {
		h = "::1"
	}
	if strings.ContainsAny(h, " \t;{}\"'$") {
		return "", 0, fmt.Errorf("bad host %q", h)
	}
	return h, p, nil
}

// checkCIDRs accepts addresses and CIDRs as nginx's geo does.
func checkCIDRs(what string, vs []string) error {
	for _, v := range vs {
		if net.ParseIP(v) != nil {
			continue
		}
		if _, _, err := net.ParseCIDR(v); err != nil {
			return fmt.Errorf("webstack: %s entry %q is neither an IP address nor a CIDR", what, v)
		}
	}
	return nil
}

// slug names nginx variables and upstreams after their parts. nginx
// refuses variable names longer than its variables_hash_bucket_size allows
// (about 46 characters with the default 64), so a long name keeps a
// readable prefix and ends in a hash of the whole: "mageflow_bypass_<slug>"
// always fits, whatever the host, app and listen address.
func slug(parts ...string) string {
	s := strings.Trim(slugRE.ReplaceAllString(strings.ToLower(strings.Join(parts, "_")), "_"), "_")
	if len(s) <= 24 {
		return s
	}
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return strings.TrimRight(s[:15], "_") + "_" + hex.EncodeToString(sum[:4])
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func render(t *template.Template, data any) (string, error) {
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return "", fmt.Errorf("webstack: render %s: %w", t.Name(), err)
	}
	return b.String(), nil
}

// RenderHost renders the http-context config (geo/map blocks and a server
// block) serving one app on one host. Several sites may be rendered into one
// nginx: their variables are suffixed with a per-site id.
func RenderHost(s HostSite) (string, error) {
	for _, c := range []struct{ what, v string }{{"host name", s.Host}, {"app name", s.App}} {
		if err := checkName(c.what, c.v); err != nil {
			return "", err
		}
	}
	if err := checkPath("root", s.Root, false); err != nil {
		return "", err
	}
	if err := checkListen("listen", s.Listen); err != nil {
		return "", err
	}
	if s.ServerName != "" {
		if err := checkName("server name", s.ServerName); err != nil {
			return "", err
		}
	}
	fastcgi := s.FastCGI
	if strings.HasPrefix(fastcgi, "/") {
		if err := checkPath("php-fpm socket", fastcgi, false); err != nil {
			return "", err
		}
		fastcgi = "unix:" + fastcgi
	} else if err := checkListen("php-fpm address", fastcgi); err != nil {
		return "", fmt.Errorf("%w (or an absolute unix socket path)", err)
	}
	if err := checkCIDRs("maintenance allow list", s.MaintenanceAllow); err != nil {
		return "", err
	}
	if err := checkCIDRs("trusted proxies", s.TrustedProxies); err != nil {
		return "", err
	}
	if s.BypassSecret != "" && (!secretRE.MatchString(s.BypassSecret) || mapKeywords[s.BypassSecret]) {
		return "", fmt.Errorf("webstack: maintenance bypass secret must be at least 8 characters of letters, digits and . _ + / = : @ - (e.g. `openssl rand -hex 16`)")
	}
	retry := s.RetryAfter
	if retry == 0 {
		retry = DefaultRetryAfter
	}
	if retry < time.Second {
		return "", fmt.Errorf("webstack: retry-after %s: use whole seconds, at least 1s", retry)
	}
	id := slug(s.Host, s.App, s.Listen)
	bypassFile := "mageflow-bypass-" + id + ".map"
	return render(hostTmpl, map[string]any{
		"S":             s,
		"ID":            id,
		"BypassFile":    bypassFile,
		"BypassSection": SecretFile(bypassFile, []byte(`"`+s.BypassSecret+`" 1;`+"\n")),
		"ServerName":    orDefault(s.ServerName, "_"),
		"DocRoot":       DocRoot(s.Root, s.App),
		"Flag":          MaintenanceFlag(s.Root, s.App),
		"FastCGI":       fastcgi,
		"RetryAfter":    int(retry / time.Second),
		"Marker":        ReleaseMarker,
	})
}

// RenderBalancer renders an upstream of the hosts and a server proxying to
// it.
func RenderBalancer(b Balancer) (string, error) {
	if err := checkName("balancer name", b.Name); err != nil {
		return "", err
	}
	if err := checkListen("listen", b.Listen); err != nil {
		return "", err
	}
	if b.ServerName != "" {
		if err := checkName("server name", b.ServerName); err != nil {
			return "", err
		}
	}
	if len(b.Upstreams) == 0 {
		return "", fmt.Errorf("webstack: balancer %s has no upstreams: list the hosts' web addresses", b.Name)
	}
	for _, u := range b.Upstreams {
		if _, _, err := net.SplitHostPort(u); err != nil || strings.ContainsAny(u, " \t;{}\"'$") {
			return "", fmt.Errorf("webstack: balancer upstream %q: want host:port", u)
		}
	}
	tries := b.Tries
	if tries <= 0 || tries > len(b.Upstreams) {
		tries = len(b.Upstreams)
	}
	keepalive := b.Keepalive
	if keepalive <= 0 {
		keepalive = 16
	}
	return render(balancerTmpl, map[string]any{
		"B":          b,
		"ID":         slug(b.Name),
		"ServerName": orDefault(b.ServerName, "_"),
		"Tries":      tries,
		"Keepalive":  keepalive,
	})
}

// RenderPool renders a php-fpm config: [global] plus one pool.
func RenderPool(p Pool) (string, error) {
	p = p.withDefaults()
	if err := checkName("pool name", p.Name); err != nil {
		return "", err
	}
	for _, c := range []struct{ what, v string }{{"php-fpm socket", p.Socket}, {"php-fpm pid file", p.PIDFile}, {"php-fpm error log", p.ErrorLog}} {
		if c.v == "" {
			return "", fmt.Errorf("webstack: %s is empty: set it or set Pool.Dir", c.what)
		}
		if err := checkPath(c.what, c.v, false); err != nil {
			return "", err
		}
	}
	if p.User == "" || p.Group == "" {
		u, g, err := currentUser()
		if err != nil {
			return "", err
		}
		p.User, p.Group = orDefault(p.User, u), orDefault(p.Group, g)
	}
	p.SocketOwner, p.SocketGroup = orDefault(p.SocketOwner, p.User), orDefault(p.SocketGroup, p.Group)
	for _, c := range []struct{ what, v string }{{"php-fpm user", p.User}, {"php-fpm group", p.Group}, {"socket owner", p.SocketOwner}, {"socket group", p.SocketGroup}} {
		if err := checkName(c.what, c.v); err != nil {
			return "", err
		}
	}
	switch p.PM {
	case "static", "dynamic", "ondemand":
	default:
		return "", fmt.Errorf("webstack: pm %q: use static, dynamic or ondemand", p.PM)
	}
	if p.MaxChildren < 1 {
		return "", fmt.Errorf("webstack: pm.max_children %d: need at least 1", p.MaxChildren)
	}
	if p.ProcessControlTimeout < time.Second {
		return "", fmt.Errorf("webstack: process_control_timeout %s: use at least 1s, or a reload kills busy workers mid-request", p.ProcessControlTimeout)
	}
	kv := func(what string, m map[string]string) ([][2]string, error) {
		var out [][2]string
		for _, k := range sortedKeys(m) {
			if !iniKeyRE.MatchString(k) {
				return nil, fmt.Errorf("webstack: %s key %q: use letters, digits, '_' and '.'", what, k)
			}
			if strings.ContainsAny(m[k], "\r\n\"") {
				return nil, fmt.Errorf("webstack: %s %s: value must not contain quotes or newlines", what, k)
			}
			out = append(out, [2]string{k, m[k]})
		}
		return out, nil
	}
	env, err := kv("env", p.Env)
	if err != nil {
		return "", err
	}
	admin, err := kv("php_admin_value", p.AdminValues)
	if err != nil {
		return "", err
	}
	start := (p.MaxChildren + 1) / 2
	return render(poolTmpl, map[string]any{
		"P":          p,
		"Timeout":    int(p.ProcessControlTimeout / time.Second),
		"Start":      start,
		"MinSpare":   1,
		"MaxSpare":   max(start, 1),
		"Env":        env,
		"Admin":      admin,
		"NeedsRootR": p.User == "root",
	})
}

// listens returns the addresses to dial for every listen directive in confs.
func listens(confs ...string) []string {
	var out []string
	seen := map[string]bool{}
	for _, c := range confs {
		for _, m := range listenRE.FindAllStringSubmatch(c, -1) {
			h, p, err := splitListen(m[1])
			if err != nil {
				continue
			}
			a := net.JoinHostPort(h, strconv.Itoa(p))
			if !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
		}
	}
	return out
}

var hostTmpl = template.Must(template.New("host site").Parse(`# mageflow host site: app {{.S.App}} on host {{.S.Host}} (rendered by mageflow; http context)
{{- if .S.MaintenanceAllow}}
# Clients served normally while {{.Flag}} exists.
geo $mageflow_allow_{{.ID}} {
    default 0;
{{- range .S.MaintenanceAllow}}
    {{.}} 1;
{{- end}}
}
{{- end}}
{{- if .S.BypassSecret}}
# Requests carrying the deploy's bypass secret pass maintenance too.
# The secret itself is in the included file, never in this config.
map $http_x_mageflow_bypass $mageflow_bypass_{{.ID}} {
    default 0;
    include {{.BypassFile}};
}
{{.BypassSection}}
{{- end}}
# The release a PHP request runs in: current resolved once per request. A
# map is evaluated once and cached; "set $x $realpath_root" resolved the
# link twice (length, then copy), and a switch to a longer release path in
# between answered 500 "no buffer space in script copy".
map $host $mageflow_release_root_{{.ID}} {
    default $realpath_root;
}

server {
    listen {{.S.Listen}};
    server_name {{.ServerName}};
    root {{.DocRoot}};
    index index.php;
{{- if .S.TrustedProxies}}

    # The balancer overwrites X-Real-IP with its client's address.
{{- range .S.TrustedProxies}}
    set_real_ip_from {{.}};
{{- end}}
    real_ip_header X-Real-IP;
{{- end}}

    # Never cache file metadata: current is switched by renaming a symlink,
    # and a cached fd or stat would keep serving the old release.
    open_file_cache off;
    add_header X-Mageflow-Host "{{.S.Host}}" always;

    # Maintenance: nginx answers 503 while the flag exists, before PHP runs,
    # unless the client is allow-listed or sends the bypass header.
    set $mageflow_maintenance "";
    if (-f {{.Flag}}) {
        set $mageflow_maintenance "on";
    }
    set $mageflow_maintenance "${mageflow_maintenance}:{{if .S.MaintenanceAllow}}${mageflow_allow_{{.ID}}}{{else}}0{{end}}:{{if .S.BypassSecret}}${mageflow_bypass_{{.ID}}}{{else}}0{{end}}";
    if ($mageflow_maintenance = "on:0:0") {
        return 503;
    }
    error_page 503 @mageflow_maintenance;
    location @mageflow_maintenance {
        default_type text/html;
        add_header X-Mageflow-Host "{{.S.Host}}" always;
        add_header Retry-After {{.RetryAfter}} always;
        add_header Cache-Control "no-store" always;
        return 503 "<!doctype html><title>Maintenance</title><h1>Down for maintenance</h1><p>We are updating the store and will be back in a moment.</p>\n";
    }

    # Which release this host serves, without running PHP.
    location = {{.Marker}} {
        default_type text/plain;
        add_header X-Mageflow-Host "{{.S.Host}}" always;
        add_header Cache-Control "no-store" always;
        try_files $uri =404;
    }
    location ^~ /.well-known/ {
        try_files $uri =404;
    }
    # Dotfiles (.git, .htaccess, .user.ini, …) are never served.
    location ~ /\. {
        deny all;
    }

    location / {
        try_files $uri $uri/ /index.php$is_args$args;
    }

    location ~ \.php$ {
        try_files $uri =404;
        # Resolve current once per request (the map above): PHP runs
        # entirely in the release current pointed at when the request
        # arrived, and OPcache keys on the release path.
        fastcgi_pass {{.FastCGI}};
        fastcgi_index index.php;
        fastcgi_param SCRIPT_FILENAME $mageflow_release_root_{{.ID}}$fastcgi_script_name;
        fastcgi_param DOCUMENT_ROOT $mageflow_release_root_{{.ID}};
        fastcgi_param SCRIPT_NAME $fastcgi_script_name;
        fastcgi_param QUERY_STRING $query_string;
        fastcgi_param REQUEST_METHOD $request_method;
        fastcgi_param CONTENT_TYPE $content_type;
        fastcgi_param CONTENT_LENGTH $content_length;
        fastcgi_param REQUEST_URI $request_uri;
        fastcgi_param DOCUMENT_URI $document_uri;
        fastcgi_param SERVER_PROTOCOL $server_protocol;
        fastcgi_param REQUEST_SCHEME $scheme;
        fastcgi_param HTTPS $https if_not_empty;
        fastcgi_param GATEWAY_INTERFACE CGI/1.1;
        fastcgi_param SERVER_SOFTWARE nginx/$nginx_version;
        fastcgi_param REMOTE_ADDR $remote_addr;
        fastcgi_param REMOTE_PORT $remote_port;
        fastcgi_param SERVER_ADDR $server_addr;
        fastcgi_param SERVER_PORT $server_port;
        fastcgi_param SERVER_NAME $server_name;
        fastcgi_param REDIRECT_STATUS 200;
        fastcgi_param HTTP_PROXY "";
        fastcgi_buffers 16 16k;
        fastcgi_buffer_size 32k;
        fastcgi_read_timeout 600s;
    }
}
`))

var balancerTmpl = template.Must(template.New("balancer").Parse(`# mageflow balancer {{.B.Name}} (rendered by mageflow; http context)
upstream mageflow_{{.ID}} {
{{- range .B.Upstreams}}
    server {{.}} max_fails=1 fail_timeout=2s;
{{- end}}
    # The same hosts as backups without failure accounting: after every
    # host above failed, nginx tries them again one request at a time, and
    # without these every other request of that moment got 502 "no live
    # upstreams".
{{- range .B.Upstreams}}
    server {{.}} backup max_fails=0;
{{- end}}
    keepalive {{.Keepalive}};
}

server {
    listen {{.B.Listen}};
    server_name {{.ServerName}};

    location / {
        proxy_pass http://mageflow_{{.ID}};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $http_host;
        # Overwritten, never appended: hosts trust it for the maintenance
        # allow list.
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        # Retry another host only when this one is unreachable or restarting.
        # 503 is the hosts' maintenance answer: passed through, not retried.
        # POST and other non-idempotent requests are never retried.
        proxy_next_upstream error timeout http_502;
        proxy_next_upstream_tries {{.Tries}};
        proxy_next_upstream_timeout 15s;
        proxy_connect_timeout 2s;
        proxy_read_timeout 600s;
        proxy_buffering on;
    }
}
`))

var poolTmpl = template.Must(template.New("php-fpm pool").Parse(`; mageflow php-fpm config (rendered by mageflow)
{{- if .NeedsRootR}}
; Workers run as root: start php-fpm with -R (--allow-to-run-as-root).
{{- end}}
[global]
pid = {{.P.PIDFile}}
error_log = {{.P.ErrorLog}}
log_level = notice
; A graceful reload (SIGUSR2) waits this long for busy workers to finish
; their request; 0 would kill them mid-request.
process_control_timeout = {{.Timeout}}s
emergency_restart_threshold = 0

[{{.P.Name}}]
user = {{.P.User}}
group = {{.P.Group}}
listen = {{.P.Socket}}
listen.owner = {{.P.SocketOwner}}
listen.group = {{.P.SocketGroup}}
listen.mode = 0660
listen.backlog = 511
pm = {{.P.PM}}
pm.max_children = {{.P.MaxChildren}}
{{- if eq .P.PM "dynamic"}}
pm.start_servers = {{.Start}}
pm.min_spare_servers = {{.MinSpare}}
pm.max_spare_servers = {{.MaxSpare}}
{{- end}}
{{- if eq .P.PM "ondemand"}}
pm.process_idle_timeout = 10s
{{- end}}
pm.max_requests = 500
catch_workers_output = yes
decorate_workers_output = no
; Keep the master's environment (MAGE_MODE, paths the app reads).
clear_env = no
{{- range .Env}}
env[{{index . 0}}] = "{{index . 1}}"
{{- end}}
{{- range .Admin}}
php_admin_value[{{index . 0}}] = "{{index . 1}}"
{{- end}}
`))
