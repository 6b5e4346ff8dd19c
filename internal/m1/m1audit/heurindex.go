package m1audit

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Character-index assembly: packers keep a scrambled alphabet in a short
// literal ($k = "es_rpotu";) and spell the names they need one character
// at a time ($k[1].$k[6].$k[3]... or $k{4}.$k{0}...), so no scanner sees
// "_POST", "base64_decode" or "assert". charIndexNames resolves such a
// chain against the literal last assigned to the variable and judges the
// spelled word. Stock code never spells identifiers this way.

// charAssignRe finds `$name = "`, `$name='` or `$name = urldecode(` (and
// the other decoders); the value is read by phpDecodeCall.
var charAssignRe = regexp.MustCompile(`(?i)\$(\w{1,64})\s*=\s*(?:["']|(?:urldecode|rawurldecode|base64_decode|str_rot13|strrev)\s*\()`)

// chainTargetRe finds `$name =` or `$name .=` right before a chain, so a
// name spelled across several statements is joined.
var chainTargetRe = regexp.MustCompile(`\$(\w{1,64})\s*(\.?)=\s*(?:\w+\s*\(\s*)?$`)

// charChainRe finds three or more $v[N] / $v{N} pieces joined by dots.
var charChainRe = regexp.MustCompile(`(?:\$\w{1,64}\s*(?:\[\s*\d{1,4}\s*\]|\{\s*\d{1,4}\s*\})\s*\.\s*){2,}\$\w{1,64}\s*(?:\[\s*\d{1,4}\s*\]|\{\s*\d{1,4}\s*\})`)

// charPieceRe is one piece of a chain.
var charPieceRe = regexp.MustCompile(`\$(\w{1,64})\s*(?:\[\s*(\d{1,4})\s*\]|\{\s*(\d{1,4})\s*\})`)

// maxAlphabet bounds the literal a chain may index: scrambled alphabets
// are short; a longer literal is kept too, as long as it is not a payload.
const maxAlphabet = 512

type charLit struct {
	at  int
	val []byte
}

// charIndexNames reports chains of single characters that spell a
// code-running function (critical), a superglobal or a decoder (high).
func (c *heurCtx) charIndexNames() {
	chains := charChainRe.FindAllIndex(c.data, 500)
	if len(chains) == 0 {
		return
	}
	lits := map[string][]charLit{}
	for _, m := range charAssignRe.FindAllSubmatchIndex(c.data, 5000) {
		v, _, ok := phpDecodeCall(c.data, m[3]+bytes.IndexByte(c.data[m[3]:m[1]], '=')+1, 0)
		if ok && len(v) > 0 && len(v) <= maxAlphabet {
			name := string(c.data[m[2]:m[3]])
			lits[name] = append(lits[name], charLit{at: m[0], val: v})
		}
	}
	reported := 0
	acc := map[string]string{}
	for _, ch := range chains {
		word, ok := resolveCharChain(c.data[ch[0]:ch[1]], ch[0], lits)
		if !ok {
			continue
		}
		if t := chainTargetRe.FindSubmatch(c.data[max(0, ch[0]-80):ch[0]]); t != nil {
			if len(t[2]) > 0 {
				word = acc[string(t[1])] + word
			}
			acc[string(t[1])] = word
		}
		if c.judgeCharWord(word, ch[0], ch[1]) {
			reported++
			if reported >= 3 {
				return
			}
		}
	}
}

// resolveCharChain spells a chain from the literals assigned before it.
func resolveCharChain(chain []byte, at int, lits map[string][]charLit) (string, bool) {
	var b strings.Builder
	for _, p := range charPieceRe.FindAllSubmatch(chain, -1) {
		idx := p[2]
		if len(idx) == 0 {
			idx = p[3]
		}
		n, err := strconv.Atoi(string(idx))
		if err != nil {
			return "", false
		}
		var val []byte
		for _, l := range lits[string(p[1])] {
			if l.at < at {
				val = l.val
			}
		}
		if n >= len(val) {
			return "", false
		}
		b.WriteByte(val[n])
	}
	return b.String(), true
}

// judgeCharWord reports a spelled word; it returns whether it did.
func (c *heurCtx) judgeCharWord(word string, start, end int) bool {
	name := strings.ToLower(strings.TrimSpace(word))
	switch {
	case execNames[name]:
		c.add("heur.php.char_index_exec", SeverityCritical, start, end, fmt.Sprintf("spells %q one character at a time: a hidden function that runs code", name))
	case superglobalNames[name]:
		c.add("heur.php.char_index_superglobal", SeverityHigh, start, end, fmt.Sprintf("spells %q one character at a time: packed code reaching the request", name))
	case evalModifierRe.MatchString(word):
		c.add("heur.php.char_index_eval_regex", SeverityCritical, start, end, fmt.Sprintf("spells the regular expression %q with the /e modifier one character at a time: preg_replace made to run code", clip([]byte(word), 40)))
	case decoderNames[name]:
		c.add("heur.php.char_index_decoder", SeverityHigh, start, end, fmt.Sprintf("spells %q one character at a time: packed code hiding its decoder", name))
	case hidingNames[name]:
		c.add("heur.php.char_index_name", SeverityMedium, start, end, fmt.Sprintf("spells %q one character at a time: packed code hiding what it calls (also seen in licence checks): read the file", name))
	default:
		return false
	}
	return true
}

// superglobalNames are the request and global arrays, lower-case, without $.
var superglobalNames = map[string]bool{
	"_post": true, "_get": true, "_request": true, "_cookie": true, "_server": true, "_files": true, "globals": true,
}

// decoderNames are the unpacking functions; spelling one character by
// character is a packer's doing (licence checks seen spell file functions).
var decoderNames = map[string]bool{
	"base64_decode": true, "gzinflate": true, "gzuncompress": true, "gzdecode": true, "str_rot13": true, "hex2bin": true,
}

// evalModifierRe is a whole PCRE pattern whose modifiers include e.
var evalModifierRe = regexp.MustCompile(`^([/#~|!@%]).{0,200}[/#~|!@%][a-zA-Z]*e[a-zA-Z]*$`)
