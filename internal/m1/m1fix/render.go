package m1fix

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"text/template"

	"github.com/mageflow/mageflow/internal/m1/m1audit"
)

// Marker starts every managed file; the checksum covers everything after
// the first line, so a hand edit is detected on the next run.
const Marker = "# managed by mageflow — do not edit; sha256 "

// frontPrefix is what may stand before a Magento front name in the
// normalised $uri and still reach the same route: "/", then optionally
// index.php followed by ZERO or more slashes (Magento strips the script
// name as a plain prefix, so /index.phpadmin/ is the front name "admin" —
// the Shoplift spelling), then optionally a store code (web/url/use_store
// puts /<code>/ before the route; media/, skin/, js/ and errors/ are
// static directories, never a store code, so /media/admin/x.png stays a
// file). Matched case-insensitively (~*); %2f, // and /./ are already gone
// from $uri.
const frontPrefix = `^/+(index\.php/*)?((?!(media|skin|js|errors)/)[a-z0-9_]+/+)?`

var (
	frontNameRE = regexp.MustCompile(`^[A-Za-z0-9_]{1,64}$`)
	slugRE      = regexp.MustCompile(`[^a-z0-9]+`)
	entryRE     = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_./-]*\.php$`)
	realmRE     = regexp.MustCompile(`^[^"\\\r\n$]{1,64}$`)
	fastcgiRE   = regexp.MustCompile(`^(unix:/[^\s;{}"'$#]+|[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5})$`)
)

// vhostName names a vhost's managed files: its first server name, made
// safe for file and variable names, or "default".
func vhostName(v m1audit.Vhost) string {
	n := ""
	for _, s := range v.ServerNames {
		if s != "" && s != "_" && !strings.ContainsAny(s, "~*") {
			n = s
			break
		}
	}
	n = strings.Trim(slugRE.ReplaceAllString(strings.ToLower(n), "-"), "-")
	if n == "" {
		n = "default"
	}
	if len(n) > 48 {
		sum := sha256.Sum256([]byte(n))
		n = n[:39] + "-" + hex.EncodeToString(sum[:4])
	}
	return n
}

// targetID names the target's nginx variables and zone: short enough for
// nginx's variable hash, unique per web root.
func targetID(t *m1audit.Target) string {
	sum := sha256.Sum256([]byte(filepath.Clean(t.WebRoot)))
	return hex.EncodeToString(sum[:4])
}

// primaryVhost is the first non-staging vhost (else the first).
func primaryVhost(t *m1audit.Target) (m1audit.Vhost, bool) {
	for _, v := range t.Vhosts {
		if !v.Staging {
			return v, true
		}
	}
	if len(t.Vhosts) > 0 {
		return t.Vhosts[0], true
	}
	return m1audit.Vhost{}, false
}

func (o Options) includeDir() string { return orDefault(o.IncludeDir, DefaultInclude) }
func (o Options) httpDir() string    { return orDefault(o.HTTPConfDir, DefaultHTTPConf) }
func (o Options) serverFile(v m1audit.Vhost) string {
	return filepath.Join(o.includeDir(), "m1-"+vhostName(v)+".conf")
}
func (o Options) httpFile(t *m1audit.Target) string {
	v, _ := primaryVhost(t)
	return filepath.Join(o.httpDir(), "m1-"+vhostName(v)+"-http.conf")
}
func (o Options) htpasswdFile(t *m1audit.Target) string {
	v, _ := primaryVhost(t)
	return filepath.Join(o.includeDir(), "m1-"+vhostName(v)+".htpasswd")
}
func (o Options) rate() int {
	if o.AdminRatePerMinute > 0 {
		return o.AdminRatePerMinute
	}
	return DefaultAdminRatePerMinute
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// RenderNginx returns the managed include of the target's primary vhost
// (server context) and the http-context file (rate-limit zone). Pure: the
// same target and options always give the same bytes (the htpasswd file
// is referenced by path, its salted hash is not part of the include).
func RenderNginx(t *m1audit.Target, o Options) (server, http string, err error) {
	v, ok := primaryVhost(t)
	if !ok {
		return "", "", fmt.Errorf("m1fix: target has no vhost: discovery found no nginx server block serving %s", t.WebRoot)
	}
	if server, err = renderServer(t, v, o, nil); err != nil {
		return "", "", err
	}
	http, err = renderHTTP(t, o)
	return server, http, err
}

// RuleCount is the number of deny rules every include carries (for the
// report's figures), not counting the admin block.
func RuleCount() int { return len(pathRules) + 1 /* php allow list */ }

func validate(t *m1audit.Target, v m1audit.Vhost, o Options) error {
	if t.AdminFrontName != "" && !frontNameRE.MatchString(t.AdminFrontName) {
		return fmt.Errorf("m1fix: admin frontName %q is not letters, digits and '_': fix app/etc/local.xml (admin/routers/adminhtml/args/frontName)", t.AdminFrontName)
	}
	if v.FastCGIPass != "" && !fastcgiRE.MatchString(v.FastCGIPass) {
		return fmt.Errorf("m1fix: vhost %v: fastcgi_pass %q is not unix:/path or host:port (an upstream name cannot be checked; pass the address)", v.ServerNames, v.FastCGIPass)
	}
	for _, a := range o.AdminAllow {
		if net.ParseIP(a) == nil {
			if _, _, err := net.ParseCIDR(a); err != nil {
				return fmt.Errorf("m1fix: admin allow entry %q is neither an IP address nor a CIDR", a)
			}
		}
	}
	for _, e := range o.entryPoints() {
		if !entryRE.MatchString(e) || strings.Contains(e, "..") {
			return fmt.Errorf("m1fix: PHP entry point %q: want a .php path relative to the web root", e)
		}
	}
	if o.BasicAuth != nil {
		if o.BasicAuth.Realm != "" && !realmRE.MatchString(o.BasicAuth.Realm) {
			return fmt.Errorf("m1fix: basic-auth realm %q: up to 64 characters without quotes, backslashes or $", o.BasicAuth.Realm)
		}
		if o.BasicAuth.User == "" || strings.ContainsAny(o.BasicAuth.User, ":\r\n") {
			return fmt.Errorf("m1fix: basic-auth user %q: must be non-empty and hold no ':' or newline", o.BasicAuth.User)
		}
		if o.BasicAuth.Password == "" {
			return fmt.Errorf("m1fix: basic-auth password is empty: resolve the secret reference before calling Apply")
		}
	}
	return nil
}

func (o Options) entryPoints() []string {
	if len(o.PHPEntryPoints) > 0 {
		return o.PHPEntryPoints
	}
	return DefaultPHPEntryPoints
}

// adminActive says whether the admin block is rendered for the vhost.
func adminActive(t *m1audit.Target, v m1audit.Vhost) bool {
	return t.AdminFrontName != "" && v.FastCGIPass != ""
}

// vhostHas says whether the vhost's own locations include loc ("^~ /app/"
// is the same location as "/app/" to nginx, which refuses duplicates).
func vhostHas(have [][2]string, loc string) bool {
	mod, path, _ := strings.Cut(loc, " ")
	for _, h := range have {
		if h[1] != path {
			continue
		}
		if (mod == "=") == (h[0] == "=") && h[0] != "~" && h[0] != "~*" {
			return true
		}
	}
	return false
}

// renderServer renders the include for one vhost; have are the vhost's own
// locations (duplicates of ours are left out, nginx would refuse them).
func renderServer(t *m1audit.Target, v m1audit.Vhost, o Options, have [][2]string) (string, error) {
	if err := validate(t, v, o); err != nil {
		return "", err
	}
	id := targetID(t)
	var entries []string
	for _, e := range o.entryPoints() {
		entries = append(entries, regexp.QuoteMeta(strings.TrimPrefix(e, "/")))
	}
	realm := "Restricted"
	if o.BasicAuth != nil && o.BasicAuth.Realm != "" {
		realm = o.BasicAuth.Realm
	}
	data := map[string]any{
		"Names":    strings.Join(v.ServerNames, " "),
		"Rules":    pathRules,
		"Entries":  strings.Join(entries, "|"),
		"ID":       id,
		"Admin":    adminActive(t, v),
		"Front":    t.AdminFrontName,
		"NotAdmin": t.AdminFrontName != "" && !strings.EqualFold(t.AdminFrontName, "admin"),
		"FastCGI":  v.FastCGIPass,
		"Auth":     o.BasicAuth != nil,
		"Realm":    realm,
		"Htpasswd": o.htpasswdFile(t),
		"Allow":    o.AdminAllow,
		"Staging":  v.Staging && o.StagingBasicAuth,
		"Rate":     o.rate(),
		// FrontPrefix: what may stand before a Magento front name.
		"FrontPrefix": frontPrefix,
	}
	var locs, skipped []string
	for _, r := range pathRules {
		for _, l := range r.Locations {
			if vhostHas(have, l) {
				skipped = append(skipped, l)
			} else {
				locs = append(locs, l)
			}
		}
	}
	data["Locs"], data["Skipped"] = locs, skipped
	var admin []string
	for _, l := range []string{"^~ /" + t.AdminFrontName, "^~ /index.php/" + t.AdminFrontName, "^~ /index.php" + t.AdminFrontName} {
		if vhostHas(have, l) {
			skipped = append(skipped, l)
		} else {
			admin = append(admin, l)
		}
	}
	data["AdminLocs"] = append(admin, `~* "`+frontPrefix+`(`+regexp.QuoteMeta(t.AdminFrontName)+`(/|$)|[^/]+/+adminhtml_)"`)
	body, err := execTmpl(serverTmpl, data)
	if err != nil {
		return "", err
	}
	return seal(body), nil
}

func renderHTTP(t *m1audit.Target, o Options) (string, error) {
	body, err := execTmpl(httpTmpl, map[string]any{"ID": targetID(t), "Rate": o.rate(), "Root": t.WebRoot})
	if err != nil {
		return "", err
	}
	return seal(body), nil
}

func execTmpl(tm *template.Template, data any) (string, error) {
	var b bytes.Buffer
	if err := tm.Execute(&b, data); err != nil {
		return "", fmt.Errorf("m1fix: render %s: %w", tm.Name(), err)
	}
	return b.String(), nil
}

// seal prefixes body with the marker line carrying its checksum.
func seal(body string) string {
	sum := sha256.Sum256([]byte(body))
	return Marker + hex.EncodeToString(sum[:]) + "\n" + body
}

// sealState says whether data is a managed file and whether its body still
// matches its checksum (false: edited by hand).
func sealState(data []byte) (managed, intact bool) {
	s := string(data)
	if !strings.HasPrefix(s, Marker) {
		return false, false
	}
	nl := strings.IndexByte(s, '\n')
	if nl < 0 {
		return true, false
	}
	sum := sha256.Sum256([]byte(s[nl+1:]))
	return true, strings.TrimSpace(s[len(Marker):nl]) == hex.EncodeToString(sum[:])
}

// The fastcgi parameters of the admin handler, inline so the include does
// not depend on which of fastcgi_params / fastcgi.conf the host has.
const fastcgiParams = `    fastcgi_param SCRIPT_FILENAME $realpath_root/index.php;
    fastcgi_param SCRIPT_NAME /index.php;
    fastcgi_param DOCUMENT_ROOT $realpath_root;
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
    fastcgi_param SERVER_SOFTWARE nginx;
    fastcgi_param REMOTE_ADDR $remote_addr;
    fastcgi_param REMOTE_PORT $remote_port;
    fastcgi_param SERVER_ADDR $server_addr;
    fastcgi_param SERVER_PORT $server_port;
    fastcgi_param SERVER_NAME $server_name;
    fastcgi_param REDIRECT_STATUS 200;
    fastcgi_param HTTP_PROXY "";
    fastcgi_read_timeout 600s;`

var serverTmpl = template.Must(template.New("server include").Parse(`# Magento 1 hardening for {{.Names}} — server context. The vhost includes
# this file as the first directive of its server block. Regenerated by
# mageflow's M1 hardening (--apply); a hand edit is overwritten on the next
# run (the edited copy is kept under backup/).
#
# 1. Server-level rules. nginx runs them before it chooses a location, so no
#    location of the vhost (=, ^~ or regex) can bypass them. They match the
#    normalised URI ($uri: %XX decoded, // merged, /./ and /../ resolved)
#    case-insensitively: /DOWNLOADER/, //downloader/, /%61pp/etc/local.xml
#    and /app/etc/local.xml. all stop here.
{{- range .Rules}}
# {{.ID}}: {{.Title}}
if ($uri ~* "{{.Regex}}") { return {{.Status}}; }
{{- end}}
# php_allowlist: PHP runs only for the front controllers; any other .php
# (dropped web shells, /skin/error.php, installers) is 404 before the vhost's
# PHP handler sees it.
set $mageflow_m1_php "";
if ($uri ~* "\.(php[0-9]?|phtml|phar|pht|phps)(/|$)") { set $mageflow_m1_php "1"; }
if ($uri ~ "^/+({{.Entries}})(/|$)") { set $mageflow_m1_php ""; }
if ($mageflow_m1_php) { return 404; }
{{- if .Front}}
# design_post: the "misc scripts" virtual patch. Plain nginx cannot read
# request bodies, so every POST that saves (or may save) the design section
# of the configuration — the field skimmers are injected into — is refused
# before PHP: section/design in the path, a query string (section=…), no
# section in the path (it could be in the body), an encoded or repeated
# section. Change design settings through the database or OpenMage's
# OPENMAGE_CONFIG__ environment overrides instead.
set $mageflow_m1_cfg "$request_method|$is_args|$uri";
if ($mageflow_m1_cfg ~* "^POST\|[^|]*\|.*/system_config/+save(/.*)?/section/+design(/|$)") { return 403; }
if ($mageflow_m1_cfg ~* "^POST\|\?\|.*/system_config/+save(/|$)") { return 403; }
if ($mageflow_m1_cfg ~* "^POST\|\|(?!.*/section/+[^/]).*/system_config/+save(/|$)") { return 403; }
if ($mageflow_m1_cfg ~* "^POST\|\|.*/system_config/+save/.*(%|section/.*section/)") { return 403; }
{{- end}}
{{- if .NotAdmin}}
# admin_path: the guessable /admin is not the admin here.
if ($uri ~* "{{.FrontPrefix}}admin(/|$)") { return 404; }
{{- end}}
{{- if .Staging}}

# staging_auth: the whole staging vhost needs credentials{{if .Allow}} or an allowed address{{end}}.
{{- if .Allow}}
satisfy any;
{{- range .Allow}}
allow {{.}};
{{- end}}
deny all;
{{- end}}
auth_basic "{{.Realm}}";
auth_basic_user_file {{.Htpasswd}};
{{- end}}

# 2. The same paths as prefix (^~) and exact (=) locations: no regex location
#    of the vhost (its PHP handler) can take them over, even after a rewrite
#    inside a location sends a request there.
{{- range .Locs}}
location {{.}} { return 404; }
{{- end}}
{{- range .Skipped}}
# skipped: the vhost already has "location {{.}}"; the server-level rule above covers it
{{- end}}
{{- if .Admin}}

# 3. admin_auth: /{{.Front}}, /index.php/{{.Front}}, /index.php{{.Front}} (no
#    slash: Magento strips index.php as a prefix), /<store code>/{{.Front}}
#    (and extension admin routes /<module>/adminhtml_*), in any case,
#    need {{if .Auth}}basic auth{{if .Allow}} or an allowed address{{end}}{{else if .Allow}}an allowed address{{else}}nothing yet (no credentials were configured){{end}},
#    and admin POSTs are limited to {{.Rate}}/min per address. The location
#    has its own PHP handler (SCRIPT_FILENAME fixed to index.php): a location
#    with auth but without a handler would serve nothing, and one that falls
#    through to the vhost's PHP location would skip the auth.
{{- $d := .}}
{{- range .AdminLocs}}
location {{.}} {
{{- template "admin" $d}}
}
{{- end}}
{{- end}}
{{define "admin"}}
{{- if .Allow}}
    satisfy any;
{{- range .Allow}}
    allow {{.}};
{{- end}}
    deny all;
{{- end}}
{{- if .Auth}}
    auth_basic "{{.Realm}}";
    auth_basic_user_file {{.Htpasswd}};
{{- end}}
    limit_req zone=mageflow_m1_{{.ID}}_admin burst={{.Rate}} nodelay;
    limit_req_status 429;
    fastcgi_pass {{.FastCGI}};
` + fastcgiParams + `
{{- end}}
`))

var httpTmpl = template.Must(template.New("http include").Parse(`# Magento 1 hardening for {{.Root}} — http context (nginx includes this
# directory inside http {}). Admin POSTs (logins included) are counted per
# client address; other requests have an empty key and are not counted.
map $request_method $mageflow_m1_{{.ID}}_admin_post {
    POST $binary_remote_addr;
    default "";
}
limit_req_zone $mageflow_m1_{{.ID}}_admin_post zone=mageflow_m1_{{.ID}}_admin:10m rate={{.Rate}}r/m;
`))
