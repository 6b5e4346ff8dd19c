package builder

import (
	"fmt"
	"strconv"
	"strings"
)

// parsePHPArrayFile reads the literal array returned by a Magento config file
// such as app/etc/config.php. Plan must not run PHP (the host may have none:
// builds run in Docker), and Magento writes these files with var_export-style
// literals only, so a small parser of that subset is enough: `return [...]` or
// `return array(...)` with string/int keys and string, number, bool, null or
// nested array values. Anything else (constants, function calls) is reported
// with its offset so the user knows which line to simplify.
//
// Arrays become map[string]any (integer keys are stringified).
func parsePHPArrayFile(src string) (map[string]any, error) {
	p := &phpParser{s: src}
	p.skipSpace()
	if strings.HasPrefix(p.s[p.i:], "<?php") {
		p.i += len("<?php")
	}
	p.skipSpace()
	if !p.keyword("return") {
		return nil, p.errorf("expected `return [...]`")
	}
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, p.errorf("file returns %T, want an array", v)
	}
	p.skipSpace()
	if p.i < len(p.s) && p.s[p.i] == ';' {
		p.i++
	}
	return m, nil
}

type phpParser struct {
	s string
	i int
}

func (p *phpParser) errorf(format string, args ...any) error {
	line := 1 + strings.Count(p.s[:min(p.i, len(p.s))], "\n")
	return fmt.Errorf("line %d: %s", line, fmt.Sprintf(format, args...))
}

// skipSpace skips whitespace and //, # and /* */ comments.
func (p *phpParser) skipSpace() {
	for p.i < len(p.s) {
		switch c := p.s[p.i]; {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			p.i++
		case c == '#' || strings.HasPrefix(p.s[p.i:], "//"):
			if j := strings.IndexByte(p.s[p.i:], '\n'); j >= 0 {
				p.i += j + 1
			} else {
				p.i = len(p.s)
			}
		case strings.HasPrefix(p.s[p.i:], "/*"):
			if j := strings.Index(p.s[p.i+2:], "*/"); j >= 0 {
				p.i += j + 4
			} else {
				p.i = len(p.s)
			}
		default:
			return
		}
	}
}

// keyword consumes word (case-insensitively) if it is next and not followed by
// an identifier character.
func (p *phpParser) keyword(word string) bool {
	p.skipSpace()
	end := p.i + len(word)
	if end > len(p.s) || !strings.EqualFold(p.s[p.i:end], word) {
		return false
	}
	if end < len(p.s) && isIdentByte(p.s[end]) {
		return false
	}
	p.i = end
	return true
}

func isIdentByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}

func (p *phpParser) value() (any, error) {
	p.skipSpace()
	if p.i >= len(p.s) {
		return nil, p.errorf("unexpected end of file")
	}
	switch c := p.s[p.i]; {
	case c == '[':
		p.i++
		return p.array(']')
	case c == '\'' || c == '"':
		return p.str()
	case c == '-' || c >= '0' && c <= '9':
		return p.number()
	}
	switch {
	case p.keyword("array"):
		p.skipSpace()
		if p.i >= len(p.s) || p.s[p.i] != '(' {
			return nil, p.errorf("expected ( after array")
		}
		p.i++
		return p.array(')')
	case p.keyword("true"):
		return true, nil
	case p.keyword("false"):
		return false, nil
	case p.keyword("null"):
		return nil, nil
	}
	return nil, p.errorf("unsupported PHP expression near %q: only literal arrays, strings, numbers, booleans and null are understood", p.snippet())
}

func (p *phpParser) snippet() string {
	return p.s[p.i:min(p.i+20, len(p.s))]
}

func (p *phpParser) array(closer byte) (map[string]any, error) {
	m := map[string]any{}
	next := 0
	for {
		p.skipSpace()
		if p.i >= len(p.s) {
			return nil, p.errorf("unterminated array")
		}
		if p.s[p.i] == closer {
			p.i++
			return m, nil
		}
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		p.skipSpace()
		key := ""
		if strings.HasPrefix(p.s[p.i:], "=>") {
			p.i += 2
			switch k := v.(type) {
			case string:
				key = k
			case int64:
				key = strconv.FormatInt(k, 10)
				if int(k) >= next {
					next = int(k) + 1
				}
			default:
				return nil, p.errorf("array key of type %T is not supported", v)
			}
			if v, err = p.value(); err != nil {
				return nil, err
			}
			p.skipSpace()
		} else {
			key = strconv.Itoa(next)
			next++
		}
		m[key] = v
		if p.i < len(p.s) && p.s[p.i] == ',' {
			p.i++
			continue
		}
		p.skipSpace()
		if p.i >= len(p.s) || p.s[p.i] != closer {
			return nil, p.errorf("expected , or %c in array near %q", closer, p.snippet())
		}
	}
}

func (p *phpParser) str() (string, error) {
	q := p.s[p.i]
	p.i++
	var b strings.Builder
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == q:
			p.i++
			return b.String(), nil
		case c == '\\' && p.i+1 < len(p.s):
			n := p.s[p.i+1]
			if q == '\'' {
				// Single quotes only escape \ and '.
				if n == '\\' || n == '\'' {
					b.WriteByte(n)
				} else {
					b.WriteByte('\\')
					b.WriteByte(n)
				}
			} else {
				switch n {
				case 'n':
					b.WriteByte('\n')
				case 't':
					b.WriteByte('\t')
				case 'r':
					b.WriteByte('\r')
				case '\\', '"', '$':
					b.WriteByte(n)
				default:
					b.WriteByte('\\')
					b.WriteByte(n)
				}
			}
			p.i += 2
		case c == '$' && q == '"':
			return "", p.errorf("string interpolation is not supported")
		default:
			b.WriteByte(c)
			p.i++
		}
	}
	return "", p.errorf("unterminated string")
}

func (p *phpParser) number() (any, error) {
	start := p.i
	if p.s[p.i] == '-' {
		p.i++
	}
	for p.i < len(p.s) && (p.s[p.i] >= '0' && p.s[p.i] <= '9' || p.s[p.i] == '.' || p.s[p.i] == 'e' || p.s[p.i] == 'E') {
		p.i++
	}
	lit := p.s[start:p.i]
	if n, err := strconv.ParseInt(lit, 10, 64); err == nil {
		return n, nil
	}
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil {
		return nil, p.errorf("bad number %q", lit)
	}
	return f, nil
}

// dig walks nested maps by key and returns the value or nil.
func dig(m map[string]any, keys ...string) any {
	var cur any = m
	for _, k := range keys {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[k]
	}
	return cur
}
