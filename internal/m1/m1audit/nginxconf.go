package m1audit

import (
	"fmt"
	"path"
	"sort"
	"strings"
)

// Directive is one nginx directive with its arguments (quotes removed) and,
// for block directives such as server or location, the directives inside.
type Directive struct {
	Name  string
	Args  []string
	Block []*Directive // nil for a simple directive
	File  string
	Line  int
}

// NginxDump is `nginx -T` output split into the files it shows. nginx -T
// prints every file it read, each after a "# configuration file X:" marker,
// but leaves the include directives in place; ParseNginxDump splices the
// included files back in so the tree reads like nginx sees it.
type NginxDump struct {
	Files map[string]string // file name -> content, as printed
	Order []string          // file names in dump order; Order[0] is the main file
	Tree  []*Directive      // the main file with includes expanded
}

const fileMarker = "# configuration file "

// ParseNginxDump parses `nginx -T` output. It fails only when the dump holds
// no configuration file at all (nginx -T printed just an error) or the main
// file does not tokenize.
func ParseNginxDump(dump string) (*NginxDump, error) {
	d := &NginxDump{Files: map[string]string{}}
	var cur string
	var b strings.Builder
	flush := func() {
		if cur != "" {
			if _, dup := d.Files[cur]; !dup {
				d.Order = append(d.Order, cur)
			}
			d.Files[cur] = b.String()
		}
		b.Reset()
	}
	for _, line := range strings.SplitAfter(dump, "\n") {
		trimmed := strings.TrimRight(line, "\r\n")
		if strings.HasPrefix(trimmed, fileMarker) && strings.HasSuffix(trimmed, ":") {
			flush()
			cur = strings.TrimSuffix(strings.TrimPrefix(trimmed, fileMarker), ":")
			continue
		}
		if cur == "" {
			continue // "nginx: the configuration file ... syntax is ok" lines
		}
		b.WriteString(line)
	}
	flush()
	if len(d.Order) == 0 {
		return nil, fmt.Errorf("no \"# configuration file\" marker in the nginx -T output; run `nginx -T` by hand and fix the errors it prints")
	}
	main := d.Order[0]
	parsed := map[string][]*Directive{}
	for _, f := range d.Order {
		ds, err := parseNginx(f, d.Files[f])
		if err != nil {
			if f == main {
				return nil, err
			}
			continue // a broken include file nginx itself did not parse as config (mime.types is fine)
		}
		parsed[f] = ds
	}
	prefix := path.Dir(main)
	d.Tree = expandIncludes(parsed[main], parsed, d.Order, prefix, 0)
	return d, nil
}

// expandIncludes replaces include directives with the directives of every
// dumped file the pattern matches (relative patterns are relative to the
// main file's directory, as nginx's conf prefix).
func expandIncludes(ds []*Directive, parsed map[string][]*Directive, order []string, prefix string, depth int) []*Directive {
	var out []*Directive
	for _, d := range ds {
		if d.Name == "include" && len(d.Args) == 1 && d.Block == nil && depth < 16 {
			pat := d.Args[0]
			if !path.IsAbs(pat) {
				pat = path.Join(prefix, pat)
			}
			var names []string
			for _, f := range order {
				if ok, _ := path.Match(pat, f); ok {
					names = append(names, f)
				}
			}
			sort.Strings(names) // nginx expands globs in sorted order
			for _, f := range names {
				out = append(out, expandIncludes(parsed[f], parsed, order, prefix, depth+1)...)
			}
			continue
		}
		if d.Block != nil {
			cp := *d
			cp.Block = expandIncludes(d.Block, parsed, order, prefix, depth)
			d = &cp
		}
		out = append(out, d)
	}
	return out
}

type ngxToken struct {
	text     string
	quoted   bool
	line     int
	off, end int // byte offsets of the token in the source (quotes included)
}

// NginxToken is one word, quoted string or punctuation ({ } ;) of an nginx
// config, comments dropped. Off and End are byte offsets in the source
// (quotes included), for tools that edit a config file in place.
type NginxToken struct {
	Text     string
	Quoted   bool
	Line     int
	Off, End int
}

// TokenizeNginx splits an nginx config the way nginx's own lexer does for
// the constructs mageflow reads (quotes, escapes, ${var} and regex braces
// inside words); file only names the source in errors.
func TokenizeNginx(file, src string) ([]NginxToken, error) {
	toks, err := tokenizeNginx(file, src)
	if err != nil {
		return nil, err
	}
	out := make([]NginxToken, len(toks))
	for i, t := range toks {
		out[i] = NginxToken{Text: t.text, Quoted: t.quoted, Line: t.line, Off: t.off, End: t.end}
	}
	return out, nil
}

func tokenizeNginx(file, src string) ([]ngxToken, error) {
	var toks []ngxToken
	line := 1
	i := 0
	for i < len(src) {
		c := src[i]
		switch {
		case c == '\n':
			line++
			i++
		case c == ' ' || c == '\t' || c == '\r':
			i++
		case c == '#':
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c == '{' || c == '}' || c == ';':
			toks = append(toks, ngxToken{text: string(c), line: line, off: i, end: i + 1})
			i++
		case c == '"' || c == '\'':
			q := c
			start, startOff := line, i
			var b strings.Builder
			i++
			for i < len(src) && src[i] != q {
				if src[i] == '\\' && i+1 < len(src) {
					if src[i+1] == q || src[i+1] == '\\' {
						b.WriteByte(src[i+1])
						i += 2
						continue
					}
				}
				if src[i] == '\n' {
					line++
				}
				b.WriteByte(src[i])
				i++
			}
			if i >= len(src) {
				return nil, fmt.Errorf("%s:%d: unterminated quoted string", file, start)
			}
			i++
			toks = append(toks, ngxToken{text: b.String(), quoted: true, line: start, off: startOff, end: i})
		default:
			startOff := i
			var b strings.Builder
			depth := 0 // ${var} and regex braces inside a word
			for i < len(src) {
				c := src[i]
				if c == '\\' && i+1 < len(src) {
					b.WriteByte(c)
					b.WriteByte(src[i+1])
					i += 2
					continue
				}
				if c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ';' {
					break
				}
				if c == '{' {
					if i > 0 && src[i-1] == '$' {
						depth++
					} else if depth == 0 {
						break
					}
				}
				if c == '}' {
					if depth == 0 {
						break
					}
					depth--
				}
				b.WriteByte(c)
				i++
			}
			toks = append(toks, ngxToken{text: b.String(), line: line, off: startOff, end: i})
		}
	}
	return toks, nil
}

func parseNginx(file, src string) ([]*Directive, error) {
	toks, err := tokenizeNginx(file, src)
	if err != nil {
		return nil, err
	}
	pos := 0
	var parse func(depth int) ([]*Directive, error)
	parse = func(depth int) ([]*Directive, error) {
		var out []*Directive
		for pos < len(toks) {
			t := toks[pos]
			if !t.quoted && t.text == "}" {
				if depth == 0 {
					return nil, fmt.Errorf("%s:%d: unexpected \"}\"", file, t.line)
				}
				pos++
				return out, nil
			}
			if !t.quoted && (t.text == "{" || t.text == ";") {
				return nil, fmt.Errorf("%s:%d: unexpected %q", file, t.line, t.text)
			}
			d := &Directive{Name: t.text, File: file, Line: t.line}
			pos++
			for {
				if pos >= len(toks) {
					return nil, fmt.Errorf("%s:%d: directive %q is not terminated by \";\" or \"}\"", file, d.Line, d.Name)
				}
				a := toks[pos]
				if !a.quoted && a.text == ";" {
					pos++
					break
				}
				if !a.quoted && a.text == "{" {
					pos++
					inner, err := parse(depth + 1)
					if err != nil {
						return nil, err
					}
					if inner == nil {
						inner = []*Directive{}
					}
					d.Block = inner
					break
				}
				if !a.quoted && a.text == "}" {
					return nil, fmt.Errorf("%s:%d: directive %q is not terminated by \";\"", file, d.Line, d.Name)
				}
				d.Args = append(d.Args, a.text)
				pos++
			}
			out = append(out, d)
		}
		if depth > 0 {
			return nil, fmt.Errorf("%s: unexpected end of file, a \"}\" is missing", file)
		}
		return out, nil
	}
	return parse(0)
}

// Find returns the directives named name directly inside ds.
func find(ds []*Directive, name string) []*Directive {
	var out []*Directive
	for _, d := range ds {
		if d.Name == name {
			out = append(out, d)
		}
	}
	return out
}

// walkDirectives calls fn for every directive in ds and below.
func walkDirectives(ds []*Directive, fn func(*Directive)) {
	for _, d := range ds {
		fn(d)
		walkDirectives(d.Block, fn)
	}
}

// nginxServer is a server block with what discovery needs from it.
type nginxServer struct {
	Vhost
	block []*Directive
}

// servers returns every http > server block of the dump, with root and
// fastcgi_pass resolved (upstream names are replaced by the upstream's first
// server).
func (d *NginxDump) servers() []nginxServer {
	var out []nginxServer
	upstreams := map[string]string{}
	for _, h := range find(d.Tree, "http") {
		for _, u := range find(h.Block, "upstream") {
			if len(u.Args) == 1 {
				for _, s := range find(u.Block, "server") {
					if len(s.Args) > 0 {
						upstreams[u.Args[0]] = s.Args[0]
						break
					}
				}
			}
		}
	}
	for _, h := range find(d.Tree, "http") {
		for _, s := range find(h.Block, "server") {
			v := nginxServer{block: s.Block}
			v.File = fmt.Sprintf("%s:%d", s.File, s.Line)
			for _, n := range find(s.Block, "server_name") {
				v.ServerNames = append(v.ServerNames, n.Args...)
			}
			for _, l := range find(s.Block, "listen") {
				if len(l.Args) > 0 {
					v.Listen = append(v.Listen, strings.Join(l.Args, " "))
				}
			}
			if r := find(s.Block, "root"); len(r) > 0 && len(r[0].Args) == 1 {
				v.Root = r[0].Args[0]
			} else {
				// No server-level root: use the one of "location /".
				for _, l := range find(s.Block, "location") {
					if len(l.Args) == 1 && l.Args[0] == "/" {
						if r := find(l.Block, "root"); len(r) > 0 && len(r[0].Args) == 1 {
							v.Root = r[0].Args[0]
						}
					}
				}
			}
			walkDirectives(s.Block, func(x *Directive) {
				switch x.Name {
				case "fastcgi_pass":
					if v.FastCGIPass == "" && len(x.Args) == 1 {
						p := x.Args[0]
						if up, ok := upstreams[p]; ok {
							p = up
						}
						v.FastCGIPass = p
					}
				case "auth_basic":
					if len(x.Args) == 1 && x.Args[0] != "off" {
						v.BasicAuth = true
					}
				}
			})
			if v.Root != "" {
				v.Root = path.Clean(v.Root)
			}
			v.Staging = looksStaging(v.ServerNames, v.Root)
			out = append(out, v)
		}
	}
	return out
}

// logs returns the access_log and error_log files named anywhere in the
// configuration ("off", syslog: and stderr destinations are left out).
func (d *NginxDump) logs() []string {
	seen := map[string]bool{}
	var out []string
	walkDirectives(d.Tree, func(x *Directive) {
		if (x.Name == "access_log" || x.Name == "error_log") && len(x.Args) > 0 {
			p := x.Args[0]
			if p == "off" || p == "stderr" || strings.HasPrefix(p, "syslog:") || strings.HasPrefix(p, "memory:") || seen[p] {
				return
			}
			seen[p] = true
			out = append(out, p)
		}
	})
	return out
}

var stagingWords = []string{"staging", "stage", "stg", "dev", "test", "uat", "preprod", "acc", "acceptance", "demo"}

// looksStaging reports whether a server name label or a root path component
// is a staging word (staging.example.com, dev-shop.example.com,
// /var/www/staging/...), the copies that must sit behind basic auth.
func looksStaging(names []string, root string) bool {
	isWord := func(s string) bool {
		for _, part := range strings.FieldsFunc(strings.ToLower(s), func(r rune) bool { return r == '-' || r == '_' || r == '.' }) {
			for _, w := range stagingWords {
				if part == w {
					return true
				}
			}
		}
		return false
	}
	for _, n := range names {
		if n == "_" || n == "localhost" || n == "" {
			continue
		}
		// Only labels left of the registrable domain count: "dev" in
		// shop.dev would be a TLD.
		labels := strings.Split(n, ".")
		if len(labels) > 2 {
			labels = labels[:len(labels)-2]
		} else {
			labels = labels[:1]
		}
		for _, l := range labels {
			if isWord(l) {
				return true
			}
		}
	}
	for _, c := range strings.Split(root, "/") {
		if isWord(c) {
			return true
		}
	}
	return false
}
