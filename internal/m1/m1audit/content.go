package m1audit

import (
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// CheckContentSignature is the check id ScanContent puts on its findings.
const CheckContentSignature = "m1.content.signature"

// ScanContent matches the signatures of the given scopes (ScopeAny
// signatures always apply) against one piece of content that is not a file:
// a database value, a fetched page, an external script. name becomes the
// findings' Path, e.g. "core_config_data[design/head/includes@stores:1]".
// Verification reuses it on the HTML it fetches. HTML content also gets the
// JavaScript signatures and heuristics, for its inline scripts.
func (s *Signatures) ScanContent(name string, data []byte, scopes ...Scope) []Finding {
	scopes = append(slices.Clone(scopes), ScopeAny)
	if slices.Contains(scopes, ScopeHTML) && !slices.Contains(scopes, ScopeJS) {
		scopes = append(scopes, ScopeJS) // inline scripts
	}
	out := s.matchAll(data, scopes, 0, 120)
	for i := range out {
		out[i].Path = name
		if out[i].CheckID == CheckSignature {
			out[i].CheckID = CheckContentSignature
		}
	}
	return out
}

// scriptSrcRe finds the src of <script> tags, quoted or not.
var scriptSrcRe = regexp.MustCompile(`(?is)<script\b[^>]*?\bsrc\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))`)

// ScriptSources returns the src URLs of every <script> tag in an HTML
// fragment, in order.
func ScriptSources(html []byte) []string {
	var out []string
	for _, m := range scriptSrcRe.FindAllSubmatch(html, -1) {
		for _, g := range m[1:] {
			if g != nil {
				out = append(out, strings.TrimSpace(string(g)))
				break
			}
		}
	}
	return out
}

// ForeignScriptHosts returns the hosts, sorted and without duplicates, that
// <script src> in html loads from and that are not in allowed (host names,
// compared without case and port; "*.example.com" allows subdomains).
// Relative URLs and Magento placeholders ({{skin url=...}},
// {{store direct_url=...}}) load from the store itself and are never
// foreign.
func ForeignScriptHosts(html []byte, allowed []string) []string {
	seen := map[string]bool{}
	for _, src := range ScriptSources(html) {
		h := scriptHost(src)
		if h == "" || hostAllowed(h, allowed) {
			continue
		}
		seen[h] = true
	}
	var out []string
	for h := range seen {
		out = append(out, h)
	}
	sort.Strings(out)
	return out
}

func scriptHost(src string) string {
	if strings.HasPrefix(src, "{{") {
		return ""
	}
	if strings.HasPrefix(src, "//") {
		src = "https:" + src
	}
	u, err := url.Parse(src)
	if err != nil {
		// An unparsable src is suspicious in itself; report it verbatim.
		return src
	}
	if u.Scheme == "data" || u.Scheme == "javascript" {
		return u.Scheme + ":"
	}
	return strings.ToLower(u.Hostname())
}

func hostAllowed(h string, allowed []string) bool {
	for _, a := range allowed {
		a = strings.ToLower(strings.TrimSpace(a))
		if a == "" {
			continue
		}
		if strings.HasPrefix(a, "*.") {
			if strings.HasSuffix(h, a[1:]) {
				return true
			}
			continue
		}
		if h == a {
			return true
		}
	}
	return false
}

// hostOf returns the lower-case host of a base URL setting, "" when it has
// none ({{unsecure_base_url}} placeholders).
func hostOf(raw string) string {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return ""
	}
	return strings.ToLower(u.Hostname())
}
