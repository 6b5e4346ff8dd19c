package m1audit

import (
	"bytes"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// skimWords mark decoded browser-side content as a skimmer or its loader:
// card fields, checkout pages, script injection and exfiltration channels.
// Plain code has them in the clear; finding them only after decoding is
// the point.
var skimWords = []string{
	"cc_num", "cc_cid", "cc_exp", "cc_owner", "ccnum", "cvv", "cardnumber", "card_number", "payment[cc",
	"billing[", "onepage", "checkout", "onestep", "<script", "createelement", "http://", "https://", "wss://",
	"websocket", "sendbeacon", "xmlhttprequest", "new image", "atob(", "eval(", "document.cookie", "localstorage",
	"fromcharcode", ".src=",
}

func skimWord(decoded []byte) string {
	low := asciiLower(decoded)
	for _, w := range skimWords {
		if bytes.Contains(low, []byte(w)) {
			return w
		}
	}
	return ""
}

// jsHeuristics runs the browser-side heuristics (JavaScript, HTML,
// templates, layout XML, database content).
func (c *heurCtx) jsHeuristics() {
	if c.has(`\x`, `\u00`) {
		c.escapedStrings()
	}
	if c.has("atob") {
		c.base64Strings()
	}
	if c.has("fromcharcode") {
		c.charCodes()
	}
	if c.has("decodeuricomponent", "unescape(") {
		c.percentEncoded()
	}
	if c.has("cc_number", "cc_num", "cc_cid", "cc_exp", "cvv", "cvc", "cardnumber", "card_number", "card-number", "cc-number", "payment[cc", "securitycode", "security_code") &&
		c.has("new image", "sendbeacon", "fetch(", "websocket", "xmlhttprequest", ".ajax(", ".post(", "createelement('img", "createelement(\"img", ".open('post", ".open(\"post") &&
		c.has("http://", "https://", "wss://", "ws://", "'//", "\"//") {
		c.cardExfil()
	}
	if c.has("document.cookie") && c.has("new image", "sendbeacon", "fetch(", "xmlhttprequest", ".ajax(", "createelement('img", "createelement(\"img") &&
		c.has("http://", "https://", "'//", "\"//") {
		c.cookieExfil()
	}
}

// escapedStrings decodes string segments written mostly as \xNN or \uNNNN
// escapes, as skimmers hide "cc_number" or their exfiltration URL.
func (c *heurCtx) escapedStrings() {
	d := c.data
	done := -1
	for off := 0; off < len(d); {
		k := bytes.IndexByte(d[off:], '\\')
		if k < 0 {
			return
		}
		p := off + k
		off = p + 1
		if p <= done || p+1 >= len(d) || (d[p+1] != 'x' && d[p+1] != 'u') {
			continue
		}
		start, end := segment(d, p)
		done = end
		dec, escaped := decodeJSEscapes(d[start:end])
		if escaped*2 < end-start {
			continue // mostly plain text with an accent or two
		}
		if w := skimWord(dec); w != "" {
			c.add("heur.js.encoded_skimmer_string", SeverityCritical, start, end, fmt.Sprintf("escaped string decodes to %q (%s)", clip(dec, 80), w))
		} else if escaped >= 400 {
			c.add("heur.obfuscation.escaped_string", SeverityMedium, start, end, fmt.Sprintf("%d bytes written as escapes: %q", escaped, clip(dec, 60)))
		}
	}
}

// segment returns the extent around p up to the enclosing quotes or line,
// at most 4 KiB each way.
func segment(d []byte, p int) (int, int) {
	start := p
	for start > 0 && p-start < 4096 && d[start-1] != '"' && d[start-1] != '\'' && d[start-1] != '\n' {
		start--
	}
	end := p
	for end < len(d) && end-p < 4096 && d[end] != '"' && d[end] != '\'' && d[end] != '\n' {
		end++
	}
	return start, end
}

// decodeJSEscapes decodes \x, \u and simple escapes; escaped is how many
// input bytes were escape sequences standing for ASCII (hidden names and
// URLs are ASCII; escapes of other letters are natural-language text, as
// in translation files).
func decodeJSEscapes(s []byte) (out []byte, escaped int) {
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 >= len(s) {
			out = append(out, s[i])
			continue
		}
		v, used := dqEscape(s[i+1:])
		if used == 0 {
			out = append(out, s[i])
			continue
		}
		out = append(out, v...)
		if len(v) == 1 && v[0] < 0x80 {
			escaped += used + 1
		}
		i += used
	}
	return out, escaped
}

var b64LiteralRe = regexp.MustCompile(`["'\x60]([A-Za-z0-9+/]{12,}={0,2})["'\x60]`)

// base64Strings decodes base64 string literals in a file that calls atob:
// a loader keeps its URL or script as base64 until run time.
func (c *heurCtx) base64Strings() {
	for _, m := range b64LiteralRe.FindAllSubmatchIndex(c.data, 500) {
		dec, ok := decodeBase64(c.data[m[2]:m[3]])
		if !ok || !mostlyText(dec) {
			continue
		}
		if w := skimWord(dec); w != "" {
			c.add("heur.js.base64_payload", SeverityCritical, m[0], m[1], fmt.Sprintf("base64 decodes to %q (%s)", clip(dec, 80), w))
			return
		}
	}
}

func mostlyText(b []byte) bool {
	n := 0
	for _, c := range b {
		if c >= 0x20 && c < 0x7f || c == '\n' || c == '\t' {
			n++
		}
	}
	return len(b) > 0 && n*10 >= len(b)*9
}

var charCodeRe = regexp.MustCompile(`(?i)fromCharCode["']?\]?\s*\(\s*((?:0x[0-9a-f]+|\d+)(?:\s*,\s*(?:0x[0-9a-f]+|\d+)){3,})\s*\)`)

// charCodes decodes String.fromCharCode(104,116,...) lists.
func (c *heurCtx) charCodes() {
	for _, m := range charCodeRe.FindAllSubmatchIndex(c.data, 200) {
		var dec []byte
		parts := strings.Split(string(c.data[m[2]:m[3]]), ",")
		for _, p := range parts {
			n, err := strconv.ParseInt(strings.TrimSpace(p), 0, 32)
			if err != nil {
				break
			}
			dec = append(dec, []byte(string(rune(n)))...)
		}
		if w := skimWord(dec); w != "" {
			c.add("heur.js.charcode_payload", SeverityCritical, m[0], m[1], fmt.Sprintf("character codes spell %q (%s)", clip(dec, 80), w))
		} else if len(parts) >= 20 {
			c.add("heur.obfuscation.charcode", SeverityMedium, m[0], m[1], fmt.Sprintf("%d character codes spell %q", len(parts), clip(dec, 60)))
		}
	}
}

var percentRunRe = regexp.MustCompile(`(?:%(?:u[0-9a-fA-F]{4}|[0-9a-fA-F]{2})[^%"'\s]{0,2}){10,}`)

// percentEncoded decodes %XX runs in files that call decodeURIComponent or
// unescape, the packing of "decodeURIComponent" loaders.
func (c *heurCtx) percentEncoded() {
	for _, loc := range percentRunRe.FindAllIndex(c.data, 200) {
		raw := string(c.data[loc[0]:loc[1]])
		dec, err := url.PathUnescape(raw)
		if err != nil {
			dec = percentU(raw)
		}
		if w := skimWord([]byte(dec)); w != "" {
			c.add("heur.js.uri_payload", SeverityCritical, loc[0], loc[1], fmt.Sprintf("percent-encoding decodes to %q (%s)", clip([]byte(dec), 80), w))
			return
		}
	}
}

// percentU decodes %uXXXX and %XX the way JavaScript's unescape does,
// leaving anything malformed as is.
func percentU(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+5 < len(s)+0 && s[i+1] == 'u' {
			if n, err := strconv.ParseUint(s[i+2:i+6], 16, 16); err == nil {
				b.WriteRune(rune(n))
				i += 5
				continue
			}
		}
		if s[i] == '%' && i+2 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(n))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

var (
	cardFieldRe = regexp.MustCompile(`cc_number|cc_num|cc_cid|cc_exp|cvv|cvc|cardnumber|card_number|card-number|cc-number|payment\[cc|securitycode|security_code`)
	exfilSinkRe = regexp.MustCompile(`new image\b|sendbeacon\s*\(|\bfetch\s*\(|new websocket\s*\(|new xmlhttprequest|\.ajax\s*\(|\$\.post\s*\(|jquery\.post\s*\(|createelement\s*\(\s*["']img|\.open\s*\(\s*["']post`)
	absURLRe    = regexp.MustCompile(`["'\x60](?:https?:|wss?:)?//[a-z0-9-]+(?:\.[a-z0-9-]+)+`)
)

// exfilWindow is how close (bytes) a card field name, a sending call and
// a hard-coded URL must be to read as one piece of skimmer code.
const exfilWindow = 1500

// cardExfil reports card field names, a sending call (image beacon,
// fetch, WebSocket, XHR) and a hard-coded absolute URL close together:
// the exfiltration step of a skimmer, whatever its obfuscation left clear.
func (c *heurCtx) cardExfil() {
	low := c.lower()
	sinks := exfilSinkRe.FindAllIndex(low, 200)
	urls := absURLRe.FindAllIndex(low, 200)
	if len(sinks) == 0 || len(urls) == 0 {
		return
	}
	for _, f := range cardFieldRe.FindAllIndex(low, 500) {
		for _, s := range sinks {
			if abs(s[0]-f[0]) > exfilWindow {
				continue
			}
			for _, u := range urls {
				if abs(u[0]-s[0]) <= exfilWindow {
					c.add("heur.js.card_exfil", SeverityCritical, s[0], s[1],
						fmt.Sprintf("card field %q at line %d and hard-coded URL %q at line %d: card data sent off the page",
							low[f[0]:f[1]], lineAt(c.data, f[0]), clip(c.data[u[0]+1:u[1]], 60), lineAt(c.data, u[0])))
					return
				}
			}
		}
	}
}

var cookieRe = regexp.MustCompile(`document\.cookie`)

// cookieExfil reports document.cookie sent to a hard-coded URL: session
// theft (admin sessions of a store are worth as much as cards).
func (c *heurCtx) cookieExfil() {
	low := c.lower()
	sinks := exfilSinkRe.FindAllIndex(low, 200)
	urls := absURLRe.FindAllIndex(low, 200)
	for _, k := range cookieRe.FindAllIndex(low, 100) {
		for _, s := range sinks {
			for _, u := range urls {
				if abs(s[0]-k[0]) <= exfilWindow && abs(u[0]-s[0]) <= exfilWindow {
					c.add("heur.js.cookie_exfil", SeverityHigh, s[0], s[1], fmt.Sprintf("document.cookie at line %d sent to the hard-coded URL %q at line %d",
						lineAt(c.data, k[0]), clip(c.data[u[0]+1:u[1]], 60), lineAt(c.data, u[0])))
					return
				}
			}
		}
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

var layoutScriptRe = regexp.MustCompile(`(?is)method\s*=\s*["']setText["'].{0,400}?<script`)

// layoutScript reports layout XML that puts a <script> into a page through
// a core/text block, the way skimmers are injected without touching a
// template.
func (c *heurCtx) layoutScript() {
	if !c.has("settext") {
		return
	}
	if loc := layoutScriptRe.FindIndex(c.data); loc != nil {
		c.add("heur.layout.script_in_text", SeverityMedium, loc[0], loc[1], "layout XML injects a <script> through setText; confirm it is yours")
	}
}
