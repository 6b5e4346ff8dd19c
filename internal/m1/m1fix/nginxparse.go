package m1fix

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/mageflow/mageflow/internal/m1/m1audit"
)

// token is one word of an nginx config with its byte offset and line.
type token struct {
	text   string // unquoted
	quoted bool
	off    int // offset of the first byte (the quote for quoted words)
	end    int // offset just past the token
	line   int
}

// tokenize splits an nginx config into words with their offsets, using the
// audit's lexer (m1audit.TokenizeNginx). A config it cannot read yields no
// tokens, so no server block is found and Apply says so; the config is
// checked by `nginx -t` after every change anyway.
func tokenize(src string) []token {
	toks, err := m1audit.TokenizeNginx("", src)
	if err != nil {
		return nil
	}
	out := make([]token, len(toks))
	for i, t := range toks {
		out[i] = token{text: t.Text, quoted: t.Quoted, off: t.Off, end: t.End, line: t.Line}
	}
	return out
}

// serverBlock is one `server { … }` found in a file.
type serverBlock struct {
	line        int // line of the `server` keyword
	open, close int // offsets of its braces
	lastLine    int
	names       []string
	includes    []string
	// locations are the block's own locations as "modifier path" ("" for a
	// plain prefix, "^~", "=", "~", "~*", "@").
	locations [][2]string
}

// findServers returns the server blocks of a config file, at any depth (a
// sites file holds them at the top, nginx.conf inside http {}).
func findServers(src string) []serverBlock {
	toks := tokenize(src)
	var out []serverBlock
	for i := 0; i+1 < len(toks); i++ {
		if toks[i].quoted || toks[i].text != "server" || toks[i+1].text != "{" || toks[i+1].quoted {
			continue
		}
		// `server` must start a directive (upstream blocks have
		// `server host:port;` which never has a brace).
		if i > 0 && !(toks[i-1].text == "{" || toks[i-1].text == "}" || toks[i-1].text == ";") {
			continue
		}
		sb := serverBlock{line: toks[i].line, open: toks[i+1].off}
		depth := 0
		var stmt []token
		j := i + 1
		for ; j < len(toks); j++ {
			t := toks[j]
			if !t.quoted && t.text == "{" {
				if depth == 1 && len(stmt) >= 2 && stmt[0].text == "location" {
					mod, path := "", stmt[1].text
					if len(stmt) >= 3 {
						mod, path = stmt[1].text, stmt[2].text
					} else if strings.HasPrefix(path, "@") {
						mod = "@"
					}
					sb.locations = append(sb.locations, [2]string{mod, path})
				}
				depth++
				stmt = nil
				continue
			}
			if !t.quoted && t.text == "}" {
				depth--
				stmt = nil
				if depth == 0 {
					break
				}
				continue
			}
			if !t.quoted && t.text == ";" {
				if depth == 1 && len(stmt) >= 1 {
					switch stmt[0].text {
					case "server_name":
						for _, n := range stmt[1:] {
							sb.names = append(sb.names, n.text)
						}
					case "include":
						if len(stmt) >= 2 {
							sb.includes = append(sb.includes, stmt[1].text)
						}
					}
				}
				stmt = nil
				continue
			}
			stmt = append(stmt, t)
		}
		if j >= len(toks) {
			break // unbalanced: let nginx -t say so
		}
		sb.close = toks[j].off
		sb.lastLine = toks[j].line
		out = append(out, sb)
		i = j
	}
	return out
}

// splitFileLine reads Vhost.File, "path" or "path:line".
func splitFileLine(s string) (string, int) {
	if i := strings.LastIndexByte(s, ':'); i > 0 {
		if n, err := strconv.Atoi(s[i+1:]); err == nil {
			return s[:i], n
		}
	}
	return s, 0
}

// pickServer chooses the vhost's server block in a file: the one at (or
// around) the line discovery reported, else the one naming the vhost's first
// server name, else the only one.
func pickServer(blocks []serverBlock, line int, names []string) (serverBlock, error) {
	if line > 0 {
		for _, b := range blocks {
			if b.line == line {
				return b, nil
			}
		}
		for _, b := range blocks {
			if b.line <= line && line <= b.lastLine {
				return b, nil
			}
		}
	}
	if len(names) > 0 {
		var hit []serverBlock
		for _, b := range blocks {
			for _, n := range b.names {
				if n == names[0] {
					hit = append(hit, b)
					break
				}
			}
		}
		if len(hit) == 1 {
			return hit[0], nil
		}
	}
	if len(blocks) == 1 {
		return blocks[0], nil
	}
	return serverBlock{}, fmt.Errorf("found %d server blocks and none is clearly the vhost %v", len(blocks), names)
}

// includeMarker ends the include line Apply adds, so a person reading the
// vhost sees where it came from.
const includeMarker = "# mageflow: Magento 1 hardening (managed include)"

// needInclude picks the vhost's server block in src and says whether it
// lacks `include path;`.
func needInclude(src string, line int, names []string, path string) (sb serverBlock, need bool, err error) {
	sb, err = pickServer(findServers(src), line, names)
	if err != nil {
		return sb, false, err
	}
	for _, inc := range sb.includes {
		if filepath.Clean(inc) == filepath.Clean(path) {
			return sb, false, nil
		}
	}
	return sb, true, nil
}

// insertion is an include line to add after a server block's brace.
type insertion struct {
	at   int // offset of the server block's `{`
	path string
}

// addIncludes returns src with each include added as the first directive of
// its server block; offsets refer to src, so they are applied from the end.
func addIncludes(src string, ins []insertion) string {
	sorted := append([]insertion(nil), ins...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].at > sorted[j].at })
	for _, in := range sorted {
		line := "\n    include " + in.path + "; " + includeMarker
		src = src[:in.at+1] + line + src[in.at+1:]
	}
	return src
}

// readVhost reads the vhost's file.
func readVhost(file string) (string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("read vhost file: %w (discovery reported the server block there; re-run the audit)", err)
	}
	return string(data), nil
}
