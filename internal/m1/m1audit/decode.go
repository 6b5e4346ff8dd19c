package m1audit

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"encoding/base64"
	"encoding/hex"
	"io"
	"net/url"
	"strconv"
	"strings"
)

// maxDecoded bounds what one decoding step may produce, so a crafted
// compression bomb cannot exhaust the host agent's memory.
const maxDecoded = 4 << 20

// phpDecoders are the PHP functions obfuscated code chains to unpack its
// payload, with Go equivalents. Anything else ends the decoding: mageflow
// never runs code to see what it does.
var phpDecoders = map[string]func([]byte) ([]byte, bool){
	"base64_decode": decodeBase64,
	"gzinflate":     func(b []byte) ([]byte, bool) { return inflate(flate.NewReader(bytes.NewReader(b)), nil) },
	"gzuncompress": func(b []byte) ([]byte, bool) {
		r, err := zlib.NewReader(bytes.NewReader(b))
		return inflate(r, err)
	},
	"gzdecode": func(b []byte) ([]byte, bool) {
		r, err := gzip.NewReader(bytes.NewReader(b))
		return inflate(r, err)
	},
	"str_rot13":    func(b []byte) ([]byte, bool) { return rot13(b), true },
	"strrev":       func(b []byte) ([]byte, bool) { return reverse(b), true },
	"hex2bin":      func(b []byte) ([]byte, bool) { d, err := hex.DecodeString(string(b)); return d, err == nil },
	"urldecode":    func(b []byte) ([]byte, bool) { d, err := url.QueryUnescape(string(b)); return []byte(d), err == nil },
	"rawurldecode": func(b []byte) ([]byte, bool) { d, err := url.PathUnescape(string(b)); return []byte(d), err == nil },
	"stripslashes": func(b []byte) ([]byte, bool) { return b, true },
	"trim":         func(b []byte) ([]byte, bool) { return bytes.TrimSpace(b), true },
}

func inflate(r io.Reader, err error) ([]byte, bool) {
	if err != nil {
		return nil, false
	}
	out, err := io.ReadAll(io.LimitReader(r, maxDecoded))
	if err != nil && len(out) == 0 {
		return nil, false
	}
	return out, true
}

// decodeBase64 is as lenient as PHP's base64_decode: whitespace and
// missing padding are accepted, URL-safe letters too.
func decodeBase64(b []byte) ([]byte, bool) {
	s := strings.Map(func(r rune) rune {
		switch {
		case r == ' ', r == '\n', r == '\r', r == '\t':
			return -1
		case r == '-':
			return '+'
		case r == '_':
			return '/'
		}
		return r
	}, string(b))
	s = strings.TrimRight(s, "=")
	d, err := base64.RawStdEncoding.DecodeString(s)
	return d, err == nil && len(d) > 0
}

func rot13(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z':
			c = 'a' + (c-'a'+13)%26
		case c >= 'A' && c <= 'Z':
			c = 'A' + (c-'A'+13)%26
		}
		out[i] = c
	}
	return out
}

func reverse(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		out[len(b)-1-i] = c
	}
	return out
}

// phpString parses a PHP string literal starting at data[i] (a quote) and
// returns its value and the index after the closing quote. Double-quoted
// escapes (\xNN, octal, \n, \t, \\, \", \$) are decoded, which is how
// packers hide names such as "\x61ssert".
func phpString(data []byte, i int) (val []byte, next int, ok bool) {
	if i >= len(data) || (data[i] != '\'' && data[i] != '"') {
		return nil, i, false
	}
	q := data[i]
	var b []byte
	for j := i + 1; j < len(data); j++ {
		c := data[j]
		if c == q {
			return b, j + 1, true
		}
		if c != '\\' || j+1 >= len(data) {
			b = append(b, c)
			continue
		}
		n := data[j+1]
		if q == '\'' {
			if n == '\'' || n == '\\' {
				b = append(b, n)
				j++
			} else {
				b = append(b, c)
			}
			continue
		}
		v, used := dqEscape(data[j+1:])
		if used == 0 {
			b = append(b, c)
			continue
		}
		b = append(b, v...)
		j += used
	}
	return nil, i, false
}

// dqEscape decodes the escape after a backslash in a double-quoted PHP or
// JavaScript string; used is how many bytes after the backslash it took.
func dqEscape(s []byte) (v []byte, used int) {
	switch s[0] {
	case 'n':
		return []byte{'\n'}, 1
	case 't':
		return []byte{'\t'}, 1
	case 'r':
		return []byte{'\r'}, 1
	case '\\', '"', '$', '\'', '/':
		return []byte{s[0]}, 1
	case 'x':
		if len(s) >= 3 && isHex(s[1]) && isHex(s[2]) {
			n, _ := strconv.ParseUint(string(s[1:3]), 16, 8)
			return []byte{byte(n)}, 3
		}
	case 'u':
		if len(s) >= 5 && isHex(s[1]) && isHex(s[2]) && isHex(s[3]) && isHex(s[4]) {
			n, _ := strconv.ParseUint(string(s[1:5]), 16, 16)
			return []byte(string(rune(n))), 5
		}
	}
	if s[0] >= '0' && s[0] <= '7' {
		k := 1
		for k < 3 && k < len(s) && s[k] >= '0' && s[k] <= '7' {
			k++
		}
		n, _ := strconv.ParseUint(string(s[:k]), 8, 16)
		return []byte{byte(n)}, k
	}
	return nil, 0
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func isIdent(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// phpDecodeCall evaluates a nested chain of decoder calls ending in a
// string literal or a variable assigned a literal in the same file, e.g.
// gzinflate(base64_decode('...')) at data[i]. steps counts the decoders
// applied; ok is false when anything else is in the way.
func phpDecodeCall(data []byte, i int, depth int) (val []byte, steps int, ok bool) {
	i = skipSpace(data, i)
	if i >= len(data) || depth > 12 {
		return nil, 0, false
	}
	switch c := data[i]; {
	case c == '\'' || c == '"':
		v, _, ok := phpString(data, i)
		return v, 0, ok
	case c == '$':
		if k := skipSpace(data, identEnd(data, i+1)); k < len(data) && data[k] == '(' {
			return phpVarDecodeCall(data, i+1, k, depth+1)
		}
		return phpVarLiteral(data, i+1, depth+1)
	case c == '@':
		return phpDecodeCall(data, i+1, depth+1)
	}
	j := i
	for j < len(data) && isIdent(data[j]) {
		j++
	}
	name := strings.ToLower(string(data[i:j]))
	dec, known := phpDecoders[name]
	k := skipSpace(data, j)
	if !known || k >= len(data) || data[k] != '(' {
		return nil, 0, false
	}
	inner, n, ok := phpDecodeCall(data, k+1, depth+1)
	if !ok {
		return nil, 0, false
	}
	out, ok := dec(inner)
	if !ok || len(out) > maxDecoded {
		return nil, 0, false
	}
	return out, n + 1, true
}

// phpVarLiteral resolves $name (name starting at data[i]) through its first
// assignment in the file, "$name = '...';" or "$name = decoder('...');".
func phpVarLiteral(data []byte, i, depth int) ([]byte, int, bool) {
	j := i
	for j < len(data) && isIdent(data[j]) {
		j++
	}
	if j == i {
		return nil, 0, false
	}
	needle := append([]byte{'$'}, data[i:j]...)
	for off := 0; ; {
		k := bytes.Index(data[off:], needle)
		if k < 0 {
			return nil, 0, false
		}
		p := off + k + len(needle)
		off = p
		if p < len(data) && isIdent(data[p]) {
			continue
		}
		q := skipSpace(data, p)
		if q >= len(data) || data[q] != '=' || (q+1 < len(data) && data[q+1] == '=') {
			continue
		}
		return phpDecodeCall(data, q+1, depth+1)
	}
}

// identEnd returns the end of the identifier starting at data[i].
func identEnd(data []byte, i int) int {
	for i < len(data) && isIdent(data[i]) {
		i++
	}
	return i
}

// phpVarDecodeCall evaluates $name(...) (name at data[i], "(" at data[k])
// when $name holds the name of a known decoder, as packers write
// $f = "\x62\x61..."; eval($f("...")).
func phpVarDecodeCall(data []byte, i, k, depth int) ([]byte, int, bool) {
	fn, _, ok := phpVarLiteral(data, i, depth+1)
	if !ok {
		return nil, 0, false
	}
	dec, known := phpDecoders[strings.ToLower(strings.TrimSpace(string(fn)))]
	if !known {
		return nil, 0, false
	}
	inner, n, ok := phpDecodeCall(data, k+1, depth+1)
	if !ok {
		return nil, 0, false
	}
	out, ok := dec(inner)
	if !ok || len(out) > maxDecoded {
		return nil, 0, false
	}
	return out, n + 1, true
}
