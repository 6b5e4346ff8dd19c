package m1audit

import (
	"bytes"
	"fmt"
	"math"
	"regexp"
	"strings"
)

// Heuristics find what a fixed pattern cannot: function names assembled
// from pieces, payloads that only show their purpose once decoded, request
// data that ends up called as a function. Their findings carry signature
// ids starting with "heur." and say in the evidence what was decoded or
// assembled. A heuristic reports critical only when what it assembled or
// decoded is itself unambiguous (a request parameter called as code, a
// packed payload that decodes to a known web shell); anything it cannot
// decide (a long encoded blob, an encoded payload with no known-bad
// content, as licence checks of commercial extensions have) is reported as
// "needs a person", never as compromise.

// heurTriggers are lower-case words whose absence lets a heuristic skip a
// file; they ride along in the signature automaton, so checking them is
// free.
var heurTriggers = []string{
	"'.", "\".", "' .", "\" .", "chr(", "'assert'", "\"assert\"", "'system'", "\"system\"", "'passthru'", "\"passthru\"",
	"'shell_exec'", "\"shell_exec\"", "'create_function'", "\"create_function\"", "eval(", "eval (", "assert(", "assert (",
	"str_rot13", "strrev", "base64_decode", "hex2bin", "gzinflate", "gzuncompress", "urldecode",
	"$_get", "$_post", "$_request", "$_cookie", "$_server", "$_files",
	`\x`, `\u00`, "atob", "fromcharcode", "document.cookie", "decodeuricomponent", "unescape(", "settext",
	"cc_number", "cc_num", "cc_cid", "cc_exp", "cvv", "cvc", "cardnumber", "card_number", "card-number", "cc-number", "payment[cc", "securitycode", "security_code",
	"new image", "sendbeacon", "fetch(", "websocket", "xmlhttprequest", ".ajax(", ".post(", "createelement('img", "createelement(\"img", ".open('post", ".open(\"post",
	"http://", "https://", "wss://", "ws://", "'//", "\"//",
	"].$", "] .$", "]. $", "] . $", "}.$", "} .$", "}. $", "} . $",
}

// execNames are PHP functions that run code or commands: assembling one of
// these names at run time has no legitimate use.
var execNames = map[string]bool{
	"assert": true, "system": true, "passthru": true, "shell_exec": true, "exec": true,
	"popen": true, "proc_open": true, "pcntl_exec": true, "create_function": true, "eval": true,
	"call_user_func": true, "call_user_func_array": true,
}

// hidingNames are functions packers assemble to hide their unpacking or
// writing; suspicious, not conclusive.
var hidingNames = map[string]bool{
	"base64_decode": true, "gzinflate": true, "gzuncompress": true, "gzdecode": true, "str_rot13": true,
	"strrev": true, "file_put_contents": true, "move_uploaded_file": true, "fwrite": true, "fopen": true,
	"curl_exec": true, "preg_replace": true, "hex2bin": true, "mail": true, "fsockopen": true,
}

// heurCtx is one piece of content being checked.
type heurCtx struct {
	sigs   *Signatures
	data   []byte
	hit    []bool
	max    int
	depth  int
	lowerB []byte
	out    []Finding
}

func (c *heurCtx) has(words ...string) bool {
	for _, w := range words {
		if id, ok := c.sigs.heur[w]; ok && c.hit[id] {
			return true
		}
	}
	return false
}

func (c *heurCtx) lower() []byte {
	if c.lowerB == nil {
		c.lowerB = asciiLower(c.data)
	}
	return c.lowerB
}

// add records a finding; severities below high need a person.
func (c *heurCtx) add(id string, sev Severity, start, end int, note string) {
	ev := excerpt(c.data, start, end, c.max)
	if note != "" {
		ev += " → " + note
	}
	c.out = append(c.out, Finding{CheckID: CheckSignature, Severity: sev, Line: lineAt(c.data, start),
		SignatureID: id, Evidence: ev, NeedsPerson: needsPerson(sev)})
}

func needsPerson(s Severity) bool {
	return s == SeverityMedium || s == SeverityLow || s == SeverityInfo
}

// phpHeuristics runs the PHP-side heuristics.
func (c *heurCtx) phpHeuristics() {
	if c.has("'.", "\".", "' .", "\" .", "chr(", `\x`) {
		c.concatNames()
	}
	if c.has("str_rot13", "strrev", "base64_decode", "hex2bin", "gzinflate", "gzuncompress", "urldecode") {
		c.decodedNames()
	}
	if c.has("eval(", "eval (", "assert(", "assert (") && c.depth < maxDepth {
		c.evalDecoded()
	}
	if c.has("].$", "] .$", "]. $", "] . $", "}.$", "} .$", "}. $", "} . $") {
		c.charIndexNames()
	}
	if c.has("$_get", "$_post", "$_request", "$_cookie", "$_server", "$_files") {
		c.taintedCalls()
	}
	if c.has("'assert'", "\"assert\"", "'system'", "\"system\"", "'passthru'", "\"passthru\"", "'shell_exec'", "\"shell_exec\"",
		"'create_function'", "\"create_function\"", "base64_decode", "gzinflate", "str_rot13", "gzuncompress") {
		c.namedCalls()
	}
}

// piece is one element of a concatenation chain.
type piece struct {
	start, end int
	val        []byte
	isChr      bool
	isArith    bool
	escaped    bool
}

// concatNames tokenizes PHP just enough (strings, comments, chr(N), ".")
// to join chains such as "ass"."ert" or chr(115).chr(121)... and reports
// a chain whose value is a code-running function name.
func (c *heurCtx) concatNames() {
	d := c.data
	var chain []piece
	dot := false
	// An unterminated string means no later quote of that kind closes
	// either: remember it, or a file full of apostrophes costs O(n²).
	dead := [256]bool{}
	flush := func() {
		c.judgeChain(chain)
		chain, dot = chain[:0], false
	}
	for i := 0; i < len(d); {
		b := d[i]
		switch {
		case (b == '\'' || b == '"') && !dead[b]:
			v, next, ok := phpString(d, i)
			if !ok {
				dead[b] = true
				flush()
				i++
				continue
			}
			if !dot {
				flush()
			}
			esc := b == '"' && bytes.IndexByte(d[i:next], '\\') >= 0 // single quotes decode no \x
			chain, dot = append(chain, piece{start: i, end: next, val: v, escaped: esc}), false
			i = next
		case b == '.' && len(chain) > 0 && !dot:
			dot = true
			i++
		case b == ' ' || b == '\t' || b == '\n' || b == '\r':
			i++
		case (b == 'c' || b == 'C') && i+4 < len(d) && strings.EqualFold(string(d[i:i+4]), "chr(") && (i == 0 || !isIdent(d[i-1])):
			v, next, ok := chrCall(d, i+4)
			if !ok {
				flush()
				i += 4
				continue
			}
			if !dot {
				flush()
			}
			chain, dot = append(chain, piece{start: i, end: next, val: []byte{v}, isChr: true}), false
			i = next
		case b == '(' && dot && len(chain) > 0:
			v, next, ok := arithPiece(d, i)
			if !ok {
				flush()
				i++
				continue
			}
			chain, dot = append(chain, piece{start: i, end: next, val: v, isArith: true}), false
			i = next
		case b == '/' && i+1 < len(d) && (d[i+1] == '/' || d[i+1] == '*'):
			flush()
			i = skipComment(d, i)
		default:
			flush()
			i++
		}
	}
	flush()
}

// hexDense: a literal written mostly as \xNN escapes.
func hexDense(raw []byte) bool {
	n := bytes.Count(raw, []byte(`\x`))
	return n >= 16 && n*4*10 >= len(raw)*7
}

// wordy: decoded text mostly letters and digits, not a byte table or a
// character class.
func wordy(b []byte) bool {
	n := 0
	for _, c := range b {
		if isIdent(c) {
			n++
		}
	}
	return n*10 >= len(b)*6
}

// arithPiece evaluates "(32*2)" in a concatenation: packers write
// 'base'.(32*2).'_decode'.
func arithPiece(d []byte, i int) ([]byte, int, bool) {
	end := bytes.IndexByte(d[i:min(len(d), i+24)], ')')
	if end < 0 {
		return nil, i, false
	}
	var a, b int
	var op string
	if n, _ := fmt.Sscanf(strings.ReplaceAll(string(d[i+1:i+end]), " ", ""), "%d%1s%d", &a, &op, &b); n != 3 {
		return nil, i, false
	}
	var v int
	switch op {
	case "*":
		v = a * b
	case "+":
		v = a + b
	case "-":
		v = a - b
	case "/":
		if b == 0 {
			return nil, i, false
		}
		v = a / b
	default:
		return nil, i, false
	}
	return []byte(fmt.Sprint(v)), i + end + 1, true
}

// chrCall parses "N)" or "0xN)" after "chr(".
func chrCall(d []byte, i int) (byte, int, bool) {
	i = skipSpace(d, i)
	j := i
	for j < len(d) && (isHex(d[j]) || d[j] == 'x' || d[j] == 'X') {
		j++
	}
	var n int
	if _, err := fmt.Sscan(string(d[i:j]), &n); err != nil || j == i || j-i > 5 {
		return 0, i, false
	}
	k := skipSpace(d, j)
	if k >= len(d) || d[k] != ')' {
		return 0, i, false
	}
	return byte(n), k + 1, true
}

func skipComment(d []byte, i int) int {
	if d[i+1] == '/' {
		if k := bytes.IndexByte(d[i:], '\n'); k >= 0 {
			return i + k
		}
		return len(d)
	}
	if k := bytes.Index(d[i+2:], []byte("*/")); k >= 0 {
		return i + 2 + k + 2
	}
	return len(d)
}

func (c *heurCtx) judgeChain(chain []piece) {
	if len(chain) == 0 {
		return
	}
	var joined []byte
	chrs, arith, escaped := 0, 0, false
	for _, p := range chain {
		joined = append(joined, p.val...)
		if p.isChr {
			chrs++
		}
		if p.isArith {
			arith++
		}
		escaped = escaped || p.escaped
	}
	if len(chain) == 1 && !escaped {
		return // a plain string literal is not assembled
	}
	name := strings.ToLower(strings.TrimSpace(string(joined)))
	start, end := chain[0].start, chain[len(chain)-1].end
	switch {
	case execNames[name]:
		c.add("heur.php.assembled_exec_name", SeverityCritical, start, end, fmt.Sprintf("assembles %q, a function that runs code or commands", name))
	case hidingNames[name] && (arith > 0 || len(chain) >= 5):
		c.add("heur.php.disguised_decoder_name", SeverityHigh, start, end, fmt.Sprintf("assembles %q with arithmetic or from many pieces: packed code hiding its decoder", name))
	case hidingNames[name]:
		c.add("heur.php.assembled_name", SeverityMedium, start, end, fmt.Sprintf("assembles the function name %q from pieces: obfuscation, read the file", name))
	case name == "globals" || name == "_post" || name == "_get" || name == "_request" || name == "_cookie" || name == "_server":
		c.add("heur.php.hidden_superglobal", SeverityMedium, start, end, fmt.Sprintf("writes %q in disguise: packed code reaching the request or globals", name))
	case len(chain) == 1 && escaped && hexDense(c.data[start:end]) && wordy(joined):
		c.add("heur.obfuscation.escaped_string", SeverityMedium, start, min(end, start+80), fmt.Sprintf("%d-byte string written as escapes", len(joined)))
	case chrs >= 6:
		c.add("heur.php.chr_chain", SeverityMedium, start, end, fmt.Sprintf("builds %q from %d chr() calls: obfuscation, read the file", clip(joined, 60), chrs))
	}
}

var decoderCallRe = regexp.MustCompile(`(?i)\b(str_rot13|strrev|base64_decode|hex2bin|gzinflate|gzuncompress|urldecode|rawurldecode)\s*\(`)

// decodedNames reports decoder calls on a literal that yield the name of a
// code-running function: str_rot13('nffreg'), strrev('tressa').
func (c *heurCtx) decodedNames() {
	for _, loc := range decoderCallRe.FindAllIndex(c.data, 200) {
		v, steps, ok := phpDecodeCall(c.data, loc[0], 0)
		if !ok || steps == 0 {
			continue
		}
		name := strings.ToLower(strings.TrimSpace(string(v)))
		if execNames[name] {
			c.add("heur.php.decoded_exec_name", SeverityCritical, loc[0], loc[1], fmt.Sprintf("decodes to %q, a function that runs code or commands", name))
		}
	}
}

// evalCalls returns [name start, after "("] of every eval( and assert(
// call that is not a method or a longer name.
func evalCalls(d, low []byte) [][2]int {
	var out [][2]int
	for _, name := range []string{"eval", "assert"} {
		for off := 0; len(out) < 50; {
			k := bytes.Index(low[off:], []byte(name))
			if k < 0 {
				break
			}
			p := off + k
			off = p + len(name)
			if p > 0 && (isIdent(d[p-1]) || d[p-1] == '$' || d[p-1] == '>' || d[p-1] == ':') {
				continue
			}
			if q := skipSpace(d, off); q < len(d) && d[q] == '(' {
				out = append(out, [2]int{p, q + 1})
			}
		}
	}
	return out
}

// evalDecoded decodes what eval()/assert() run when it is a literal behind
// decoders, and judges the decoded code with the same rules: a licence
// check stays "needs a person", a packed web shell becomes critical.
func (c *heurCtx) evalDecoded() {
	decoded := 0
	for _, loc := range evalCalls(c.data, c.lower()) {
		start := loc[0]
		payload, steps, ok := phpDecodeCall(c.data, loc[1], 0)
		if !ok {
			if fn := leadingDecoder(c.data, loc[1]); fn != "" {
				c.add("heur.php.eval_decoded_dynamic", SeverityMedium, start, min(len(c.data), loc[1]+40),
					fmt.Sprintf("runs the output of %s() on data that is not in the file: a packed loader, or the licence check of an encoded extension; find where the data comes from", fn))
			}
			continue
		}
		if steps == 0 && len(payload) < 16 {
			continue
		}
		if decoded++; decoded > maxDecodedPerFile {
			break
		}
		if worst := c.judgePayload(payload); worst != nil {
			c.add("heur.php.eval_decoded", SeverityCritical, start, loc[1], fmt.Sprintf("%d decoding step(s) reveal code matching %s: %s", steps, worst.SignatureID, worst.Evidence))
			continue
		}
		if steps > 0 {
			c.add("heur.php.eval_encoded", SeverityMedium, start, loc[1], fmt.Sprintf("runs %d bytes hidden behind %d decoding step(s), no known-bad code in them (licence checks look like this); read the decoded code: %s",
				len(payload), steps, clip(payload, 80)))
		}
	}
}

// maxDecodedPerFile bounds the payloads judged per file and depth, so
// nested packing cannot multiply the work.
const maxDecodedPerFile = 8

// judgePayload matches decoded code against every PHP rule and returns the
// first critical finding: only code that is malicious in itself makes the
// packing critical; commercial encoders pack licence checks in layers of
// the same obfuscation, which stays "needs a person".
func (c *heurCtx) judgePayload(payload []byte) *Finding {
	sub := c.sigs.matchAll(payload, []Scope{ScopePHP}, c.depth+1, c.max)
	for i := range sub {
		if sub[i].Severity == SeverityCritical {
			return &sub[i]
		}
	}
	return nil
}

// leadingDecoder returns the decoder called first inside eval( at i, "" if
// the argument does not start with one.
func leadingDecoder(d []byte, i int) string {
	i = skipSpace(d, i)
	for i < len(d) && d[i] == '@' {
		i = skipSpace(d, i+1)
	}
	j := i
	for j < len(d) && isIdent(d[j]) {
		j++
	}
	name := strings.ToLower(string(d[i:j]))
	if _, ok := phpDecoders[name]; !ok || name == "trim" || name == "stripslashes" {
		return ""
	}
	if k := skipSpace(d, j); k >= len(d) || d[k] != '(' {
		return ""
	}
	return name
}

// superglobals are the request arrays, lower case as the automaton sees
// them.
var superglobals = [][]byte{[]byte("$_get"), []byte("$_post"), []byte("$_request"), []byte("$_cookie"), []byte("$_server"), []byte("$_files")}

// taintAssigns finds "$name = ...$_GET..." within one statement: for each
// request array it looks back at most 80 bytes for the assignment.
func taintAssigns(d, low []byte) (names []string, at []int, direct []bool) {
	for gi, g := range superglobals {
		for off := 0; len(names) < 100; {
			k := bytes.Index(low[off:], g)
			if k < 0 {
				break
			}
			p := off + k
			off = p + len(g)
			if name, start, eq := assignedBefore(d, p); name != "" {
				// Direct: "$x = $_POST..." or "$x .= ...$_POST" from a
				// form array ($_SERVER and $_FILES are read by every
				// upload and URL helper).
				dir := gi < 4 && (len(bytes.TrimSpace(d[eq+1:p])) == 0 || eq > 0 && d[eq-1] == '.')
				names, at, direct = append(names, name), append(at, start), append(direct, dir)
			}
		}
	}
	return names, at, direct
}

// assignedBefore returns the variable assigned by the statement that
// reaches position p, if the assignment is within 80 bytes.
func assignedBefore(d []byte, p int) (string, int, int) {
	for i := p - 1; i >= 0 && p-i <= 80; i-- {
		switch d[i] {
		case ';', '{', '}':
			return "", 0, 0
		case '=':
			if i+1 < len(d) && (d[i+1] == '=' || d[i+1] == '>') || i > 0 && strings.IndexByte("=!<>", d[i-1]) >= 0 {
				continue
			}
			j := i - 1
			if j >= 0 && d[j] == '.' {
				j--
			}
			for j >= 0 && (d[j] == ' ' || d[j] == '\t') {
				j--
			}
			e := j + 1
			for j >= 0 && isIdent(d[j]) {
				j--
			}
			if j >= 0 && d[j] == '$' && e > j+1 {
				return string(d[j+1 : e]), j, i
			}
			return "", 0, 0
		}
	}
	return "", 0, 0
}

var nameAssignRe = regexp.MustCompile(`\$(\w+)\s*=\s*["'](assert|system|passthru|shell_exec|exec|popen|proc_open|create_function|base64_decode|gzinflate|gzuncompress|gzdecode|str_rot13|strrev)["']\s*;`)

// namedCalls reports "$f = 'assert'; ... $f(...)": a function named in a
// string and called through a variable, so its name never appears as a
// call. Code-running functions are critical, decoders need a person.
func (c *heurCtx) namedCalls() {
	for _, m := range nameAssignRe.FindAllSubmatchIndex(c.data, 50) {
		needle := append([]byte{'$'}, c.data[m[2]:m[3]]...)
		fn := strings.ToLower(string(c.data[m[4]:m[5]]))
		for off := m[1]; ; {
			k := bytes.Index(c.data[off:], needle)
			if k < 0 {
				break
			}
			p := off + k + len(needle)
			off = p
			if p < len(c.data) && isIdent(c.data[p]) {
				continue
			}
			if q := skipSpace(c.data, p); q < len(c.data) && c.data[q] == '(' {
				if execNames[fn] {
					c.add("heur.php.named_exec_call", SeverityCritical, m[0], m[1], fmt.Sprintf("%s() called through a variable at line %d", fn, lineAt(c.data, p)))
				} else {
					c.add("heur.php.named_decoder_call", SeverityMedium, m[0], m[1], fmt.Sprintf("%s() called through a variable at line %d: packer; read what it unpacks", fn, lineAt(c.data, p)))
				}
				break
			}
		}
	}
}

var writeSinkRe = regexp.MustCompile(`(?i)(?:^|[^\w>:$])(mail|file_put_contents|fwrite|fputs|copy|move_uploaded_file)\s*\([^;{}]*$`)

var execSinkRe = regexp.MustCompile(`(?i)(?:^|[^\w>:$])(eval|assert|system|passthru|shell_exec|exec|popen|proc_open|pcntl_exec|create_function)\s*\([^;{}]*$`)

// taintedCalls follows request data one assignment deep: $f =
// $_REQUEST['f']; $f($x) or eval($code) where $code came from the request.
func (c *heurCtx) taintedCalls() {
	seen := map[string]bool{}
	wrote := false
	names, at, direct := taintAssigns(c.data, c.lower())
	for i, name := range names {
		if name == "this" || seen[name] {
			continue
		}
		seen[name] = true
		m := []int{at[i]}
		needle := []byte("$" + name)
		for off := at[i] + len(needle); ; {
			k := bytes.Index(c.data[off:], needle)
			if k < 0 {
				break
			}
			p := off + k
			off = p + len(needle)
			if off < len(c.data) && isIdent(c.data[off]) {
				continue
			}
			if q := skipSpace(c.data, off); q < len(c.data) && c.data[q] == '(' && (p == 0 || c.data[p-1] != '>') {
				c.add("heur.php.request_called", SeverityCritical, m[0], off, fmt.Sprintf("$%s holds request data and is called as a function at line %d", name, lineAt(c.data, p)))
				return
			}
			from := max(0, p-80)
			if execSinkRe.Match(c.data[from:p]) {
				c.add("heur.php.request_to_exec", SeverityCritical, m[0], off, fmt.Sprintf("$%s holds request data and is passed to code execution at line %d", name, lineAt(c.data, p)))
				return
			}
			if !wrote && direct[i] && writeSinkRe.Match(c.data[from:p]) {
				wrote = true
				c.add("heur.php.request_to_write", SeverityHigh, m[0], off, fmt.Sprintf("$%s holds request data and is mailed, written or copied to a file at line %d: logger, uploader or mailer", name, lineAt(c.data, p)))
			}
		}
	}
}

// longEncoded reports a run of base64 characters longer than limit with
// the entropy of encoded data, the shape of packed payloads.
func (c *heurCtx) longEncoded(limit int) {
	d := c.data
	run := 0
	for i := 0; i <= len(d); i++ {
		if i < len(d) && isB64(d[i]) {
			run++
			continue
		}
		if run >= limit {
			start := i - run
			if !bytes.HasSuffix(d[max(0, start-8):start], []byte("base64,")) && entropy(d[start:i]) >= 4.8 {
				c.add("heur.obfuscation.long_encoded", SeverityMedium, start, start+60,
					fmt.Sprintf("%d characters of encoded data (%.1f bits/char) in code; read what decodes it", run, entropy(d[start:i])))
				return
			}
		}
		run = 0
	}
}

var b64Table = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		t[c] = isIdent(b) && b != '_' || b == '+' || b == '/' || b == '='
	}
	return t
}()

func isB64(b byte) bool { return b64Table[b] }

// entropy is the Shannon entropy of b in bits per byte.
func entropy(b []byte) float64 {
	var n [256]int
	for _, c := range b {
		n[c]++
	}
	e := 0.0
	for _, k := range n {
		if k > 0 {
			p := float64(k) / float64(len(b))
			e -= p * math.Log2(p)
		}
	}
	return e
}

// clip returns b as a short escaped string.
func clip(b []byte, n int) string {
	return excerpt(b, 0, len(b), n)
}
