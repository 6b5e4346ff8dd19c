// Package lbconf renders and reads back the nginx include that holds one
// autoscaling group's upstream on the load balancer.
//
// The balancer's own nginx config is the operator's; mageflow owns only one
// include per group, placed in the http {} context:
//
//	http {
//	    include /etc/nginx/mageflow/upstream-web.conf;  # written by mageflow
//	    server {
//	        listen 80;
//	        location / { proxy_pass http://mageflow_web; ... }
//	    }
//	}
//
// The include carries three things, always rendered together so they can
// never disagree:
//
//   - a marker comment with the member ids, their addresses and a checksum,
//     so the agent reads the current set back from the file itself instead
//     of keeping state elsewhere (a restarted agent knows what nginx has);
//   - the upstream block (an empty group becomes a single `down` server,
//     because nginx rejects an upstream without servers);
//   - a tiny server on a loopback address answering the verify path with
//     the member ids and the checksum. After a reload the agent asks nginx
//     itself, so "the file is written" is never mistaken for "nginx serves
//     it" (a reload nginx refused, e.g. for a port it could not bind, keeps
//     the old config running).
//
// Rendering is deterministic: members are sorted by id, so the same set
// always gives the same bytes and re-applying it is recognised as no change.
package lbconf

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"

	"github.com/mageflow/mageflow/internal/host/hostops"
)

const (
	// Version is the marker's format version.
	Version = "v1"
	// SumHeader is the header the verify endpoint sends the set's checksum
	// in; the body lists the member ids, one per line.
	SumHeader = "X-Mageflow-Members-Sum"
	// DefaultVerifyPath is the path of the verify endpoint.
	DefaultVerifyPath = "/.mageflow-members"
	// DefaultKeepalive is the idle connections each worker keeps to the
	// members (used when the balancer proxies with HTTP/1.1 and an empty
	// Connection header).
	DefaultKeepalive = 16
	// Placeholder is the server an empty upstream gets: nginx requires at
	// least one, and `down` makes sure it is never tried.
	Placeholder = "127.0.0.1:1"

	markerPrefix = "# mageflow-upstream "
	memberPrefix = "# member "
)

// Upstream is the settings of one group's include.
type Upstream struct {
	// Group is the autoscaling group (comments and errors only).
	Group string
	// Name is the nginx upstream name the balancer's proxy_pass refers to.
	Name string
	// Port is the members' port when a member's address has none.
	Port int
	// VerifyURL is where nginx answers the member set, e.g.
	// http://127.0.0.1:8181/.mageflow-members. Its host must be an IP
	// address: the include listens on it. Every group needs its own port.
	VerifyURL string
	// Keepalive idle connections per worker; default DefaultKeepalive.
	Keepalive int
}

// Member is one instance in the upstream.
type Member struct {
	// ID is the instance id (EC2 instance id, container name).
	ID string
	// Addr is host:port, or a bare host that gets Upstream.Port.
	Addr string
}

// File is what Parse reads back from an include.
type File struct {
	Group    string
	Name     string
	Sum      string
	Members  []Member
	Verified bool // the marker's checksum matches its members
}

var (
	nameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	idRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$`)
	hostRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$`)
	pathRE = regexp.MustCompile(`^/[A-Za-z0-9._/-]{1,200}$`)
)

// Validate checks the settings before anything is rendered from them.
func (u Upstream) Validate() error {
	if !nameRE.MatchString(u.Group) {
		return fmt.Errorf("lbconf: group %q: want letters, digits, '_', '-', '.'", u.Group)
	}
	if !nameRE.MatchString(u.Name) {
		return fmt.Errorf("lbconf: group %s: upstream name %q: want letters, digits, '_', '-', '.' (the name the balancer's proxy_pass uses)", u.Group, u.Name)
	}
	if u.Port < 0 || u.Port > 65535 {
		return fmt.Errorf("lbconf: group %s: port %d out of range", u.Group, u.Port)
	}
	if _, _, err := u.verify(); err != nil {
		return err
	}
	return nil
}

// verify splits VerifyURL into the listen address and the path.
func (u Upstream) verify() (listen, path string, err error) {
	bad := func(why string) error {
		return fmt.Errorf("lbconf: group %s: verify URL %q: %s; want http://127.0.0.1:PORT%s with a port of its own", u.Group, u.VerifyURL, why, DefaultVerifyPath)
	}
	p, err := url.Parse(u.VerifyURL)
	if err != nil {
		return "", "", bad(err.Error())
	}
	if p.Scheme != "http" || p.User != nil || p.RawQuery != "" || p.Fragment != "" {
		return "", "", bad("only plain http without user, query or fragment")
	}
	ip := net.ParseIP(p.Hostname())
	if ip == nil {
		return "", "", bad("the host must be an IP address nginx can listen on")
	}
	port, err := strconv.Atoi(p.Port())
	if err != nil || port < 1 || port > 65535 {
		return "", "", bad("needs an explicit port")
	}
	path = p.Path
	if path == "" || path == "/" {
		path = DefaultVerifyPath
	}
	if !pathRE.MatchString(path) {
		return "", "", bad("path may hold only letters, digits, '.', '_', '-', '/'")
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(port)), path, nil
}

// Normalize validates members, gives bare hosts the upstream's port and
// sorts them by id. Duplicate ids and two ids on one address are errors:
// either is a bookkeeping mistake that would skew the balancing.
func Normalize(u Upstream, ms []Member) ([]Member, error) {
	out := make([]Member, 0, len(ms))
	ids := map[string]bool{}
	addrs := map[string]string{}
	for _, m := range ms {
		if !idRE.MatchString(m.ID) {
			return nil, fmt.Errorf("lbconf: group %s: member id %q: want letters, digits, '_', '.', ':', '-'", u.Group, m.ID)
		}
		addr, err := memberAddr(u, m.Addr)
		if err != nil {
			return nil, fmt.Errorf("lbconf: group %s: member %s: %w", u.Group, m.ID, err)
		}
		if ids[m.ID] {
			return nil, fmt.Errorf("lbconf: group %s: member %s is listed twice", u.Group, m.ID)
		}
		if other, ok := addrs[addr]; ok {
			return nil, fmt.Errorf("lbconf: group %s: members %s and %s share the address %s", u.Group, other, m.ID, addr)
		}
		ids[m.ID], addrs[addr] = true, m.ID
		out = append(out, Member{ID: m.ID, Addr: addr})
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

func memberAddr(u Upstream, a string) (string, error) {
	host, port := a, ""
	if h, p, err := net.SplitHostPort(a); err == nil {
		host, port = h, p
	} else if strings.Count(a, ":") > 1 && net.ParseIP(a) == nil {
		return "", fmt.Errorf("address %q: want host:port", a)
	}
	if port == "" {
		if u.Port == 0 {
			return "", fmt.Errorf("address %q has no port and the group sets none", a)
		}
		port = strconv.Itoa(u.Port)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("address %q: port out of range", a)
	}
	if ip := net.ParseIP(host); ip != nil {
		return net.JoinHostPort(ip.String(), strconv.Itoa(n)), nil
	}
	if !hostRE.MatchString(host) {
		return "", fmt.Errorf("address %q: want an IP address or host name and a port", a)
	}
	return net.JoinHostPort(host, strconv.Itoa(n)), nil
}

// Sum is the checksum of a normalised member set within an upstream: the
// marker carries it and the verify endpoint answers it, so the agent can
// tell that nginx serves exactly this set (same ids and addresses).
func Sum(name string, ms []Member) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s %s\n", Version, name)
	for _, m := range ms {
		fmt.Fprintf(h, "%s %s\n", m.ID, m.Addr)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// IDs lists the members' ids in order.
func IDs(ms []Member) []string {
	ids := make([]string, len(ms))
	for i, m := range ms {
		ids[i] = m.ID
	}
	return ids
}

// VerifyBody is what the verify endpoint answers for a set: one id per
// line, nothing for an empty group.
func VerifyBody(ms []Member) string {
	var b strings.Builder
	for _, m := range ms {
		b.WriteString(m.ID)
		b.WriteByte('\n')
	}
	return b.String()
}

// Render returns the include for a member set (normalised first) and the
// set's checksum.
func Render(u Upstream, ms []Member) (text []byte, sum string, err error) {
	if err := u.Validate(); err != nil {
		return nil, "", err
	}
	ms, err = Normalize(u, ms)
	if err != nil {
		return nil, "", err
	}
	listen, path, _ := u.verify()
	keepalive := u.Keepalive
	if keepalive <= 0 {
		keepalive = DefaultKeepalive
	}
	sum = Sum(u.Name, ms)
	var b bytes.Buffer
	err = includeTmpl.Execute(&b, map[string]any{
		"Marker":      marker(u, sum, ms),
		"U":           u,
		"Members":     ms,
		"Placeholder": Placeholder,
		"Keepalive":   keepalive,
		"Listen":      listen,
		"Path":        path,
		"Sum":         sum,
		"SumHeader":   SumHeader,
		// nginx unescapes \n inside a double-quoted string.
		"Body": strings.ReplaceAll(VerifyBody(ms), "\n", `\n`),
	})
	if err != nil {
		return nil, "", fmt.Errorf("lbconf: render group %s: %w", u.Group, err)
	}
	return b.Bytes(), sum, nil
}

func marker(u Upstream, sum string, ms []Member) string {
	return fmt.Sprintf("%s%s group=%s upstream=%s sum=%s members=%s", markerPrefix, Version, u.Group, u.Name, sum, strings.Join(IDs(ms), ","))
}

// ErrNotMageflow is returned by Parse for a file without mageflow's marker.
var ErrNotMageflow = errors.New("lbconf: the file has no mageflow-upstream marker on its first line")

// Parse reads the marker and member lines of an include back. File.Verified
// says whether they agree with the marker's checksum; a file whose comments
// were edited by hand does not, and its members are then not to be trusted.
func Parse(data []byte) (*File, error) {
	lines := strings.Split(string(data), "\n")
	if !strings.HasPrefix(lines[0], markerPrefix) {
		return nil, ErrNotMageflow
	}
	f := &File{}
	fields := strings.Fields(strings.TrimPrefix(lines[0], markerPrefix))
	if len(fields) == 0 || fields[0] != Version {
		return nil, fmt.Errorf("lbconf: marker version %q is not %s: the file was written by another mageflow version", strings.Join(fields[:min(1, len(fields))], ""), Version)
	}
	var ids []string
	for _, kv := range fields[1:] {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "group":
			f.Group = v
		case "upstream":
			f.Name = v
		case "sum":
			f.Sum = v
		case "members":
			if v != "" {
				ids = strings.Split(v, ",")
			}
		}
	}
	for _, l := range lines[1:] {
		rest, ok := strings.CutPrefix(l, memberPrefix)
		if !ok {
			continue
		}
		id, addr, ok := strings.Cut(rest, " ")
		if !ok {
			return nil, fmt.Errorf("lbconf: malformed member line %q", l)
		}
		f.Members = append(f.Members, Member{ID: id, Addr: addr})
	}
	f.Verified = f.Sum != "" && slices.Equal(ids, IDs(f.Members)) && Sum(f.Name, f.Members) == f.Sum
	return f, nil
}

var includeTmpl = template.Must(template.New("upstream include").Parse(`{{.Marker}}
# Written by mageflow's balancer agent for group {{.U.Group}}; include it in
# http {}. Edits are overwritten: change the group's members through mageflow.
{{- range .Members}}
# member {{.ID}} {{.Addr}}
{{- end}}
upstream {{.U.Name}} {
{{- range .Members}}
    server {{.Addr}} max_fails=1 fail_timeout=2s;
{{- else}}
    # No members: nginx needs one server, and this one is never tried.
    server {{.Placeholder}} down;
{{- end}}
{{- if .Members}}
    # The same members as backups without failure accounting: after every
    # member above failed, nginx tries them again one request at a time,
    # and without these every other request of that moment got 502 "no
    # live upstreams".
{{- end}}
{{- range .Members}}
    server {{.Addr}} backup max_fails=0;
{{- end}}
    keepalive {{.Keepalive}};
}

# mageflow asks nginx itself which members it serves after every reload.
server {
    listen {{.Listen}};
    access_log off;
    location = {{.Path}} {
        default_type text/plain;
        add_header Cache-Control "no-store" always;
        add_header {{.SumHeader}} "{{.Sum}}" always;
        return 200 "{{.Body}}";
    }
    location / {
        return 404;
    }
}
`))

// WriteFile replaces path with data atomically: a temporary file in the same
// directory, synced, then renamed over path, so nginx (or `nginx -t`) never
// reads half a file.
func WriteFile(path string, data []byte) error {
	if err := hostops.WriteFileAtomic(path, data, 0o644, hostops.NoChange); err != nil {
		return fmt.Errorf("lbconf: write %s: %w (does the directory exist and may the agent write it?)", path, err)
	}
	return nil
}
