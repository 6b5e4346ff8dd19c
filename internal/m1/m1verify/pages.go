package m1verify

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"golang.org/x/net/html"

	"github.com/mageflow/mageflow/internal/m1/m1audit"
)

// Check IDs of the rendered-page checks.
const (
	CheckPageSignatures = "m1.http.pages.signatures"
	CheckScriptHosts    = "m1.http.pages.script_hosts"
)

// matcher matches signatures of chosen scopes against byte slices. It is
// built from m1audit's exported API (Signatures.All): the package's own
// matcher is unexported and keyed to files.
type matcher struct {
	sigs []compiledSig
}

type compiledSig struct {
	sig m1audit.Signature
	re  *regexp.Regexp
}

func newMatcher(s *m1audit.Signatures) (*matcher, error) {
	m := &matcher{}
	for _, sig := range s.All() {
		c := compiledSig{sig: sig}
		switch sig.Kind {
		case m1audit.KindLiteral:
		case m1audit.KindRegex:
			re, err := regexp.Compile(sig.Pattern)
			if err != nil {
				return nil, fmt.Errorf("m1verify: signature %s (%s): %w", sig.ID, sig.Source, err)
			}
			c.re = re
		default:
			continue
		}
		m.sigs = append(m.sigs, c)
	}
	return m, nil
}

// match returns a finding per signature of the given scopes (ScopeAny
// signatures always apply) that matches data; where names the page or
// script in the finding.
func (m *matcher) match(data []byte, where, checkID string, scopes ...m1audit.Scope) []m1audit.Finding {
	var out []m1audit.Finding
	for _, c := range m.sigs {
		applies := c.sig.Scope == m1audit.ScopeAny
		for _, s := range scopes {
			applies = applies || c.sig.Scope == s
		}
		if !applies {
			continue
		}
		start, end := -1, -1
		if c.re != nil {
			if loc := c.re.FindIndex(data); loc != nil {
				start, end = loc[0], loc[1]
			}
		} else if i := bytes.Index(data, []byte(c.sig.Pattern)); i >= 0 {
			start, end = i, i+len(c.sig.Pattern)
		}
		if start < 0 {
			continue
		}
		out = append(out, m1audit.Finding{CheckID: checkID, Severity: c.sig.Severity, Path: where,
			Line: bytes.Count(data[:start], []byte{'\n'}) + 1, SignatureID: c.sig.ID, Evidence: excerpt(data[start:end], 120)})
	}
	return out
}

// excerpt cuts b to max bytes and escapes everything outside printable
// ASCII, so hostile page content cannot corrupt a terminal or report.
func excerpt(b []byte, max int) string {
	cut := len(b) > max
	if cut {
		b = b[:max]
	}
	var sb strings.Builder
	for _, c := range b {
		if c >= 0x20 && c < 0x7f {
			sb.WriteByte(c)
		} else {
			fmt.Fprintf(&sb, `\x%02x`, c)
		}
	}
	if cut {
		sb.WriteString("…")
	}
	return sb.String()
}

// pageScripts lists a page's external script sources and inline scripts.
func pageScripts(body []byte) (srcs []string, inline [][]byte) {
	z := html.NewTokenizer(bytes.NewReader(body))
	inScript := false
	for {
		switch z.Next() {
		case html.ErrorToken:
			return srcs, inline
		case html.StartTagToken, html.SelfClosingTagToken:
			name, hasAttr := z.TagName()
			if string(name) != "script" {
				continue
			}
			src := ""
			for hasAttr {
				var k, val []byte
				k, val, hasAttr = z.TagAttr()
				if string(k) == "src" {
					src = strings.TrimSpace(string(val))
				}
			}
			if src != "" {
				srcs = append(srcs, src)
			} else {
				inScript = true
			}
		case html.TextToken:
			if inScript {
				inline = append(inline, append([]byte(nil), z.Text()...))
			}
		case html.EndTagToken:
			inScript = false
		}
	}
}

// hostAllowed says whether a script host is the store's or allowed.
func hostAllowed(h, store string, allowed []string) bool {
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	if h == strings.ToLower(store) {
		return true
	}
	for _, a := range allowed {
		a = strings.ToLower(strings.TrimSpace(a))
		switch {
		case strings.HasPrefix(a, "*."):
			if strings.HasSuffix(h, a[1:]) {
				return true
			}
		case strings.HasPrefix(a, "."):
			if strings.HasSuffix(h, a) {
				return true
			}
		case a == h:
			return true
		}
	}
	return false
}

// get requests path and follows same-origin redirects (at most 3); it
// returns every hop and the path of the last one.
func (v *verifier) get(ctx context.Context, path string) ([]response, string, error) {
	var hops []response
	for range 4 {
		r, err := v.f.do(ctx, http.MethodGet, v.o.Host, path, nil, nil)
		if err != nil {
			return hops, path, err
		}
		hops = append(hops, r)
		if r.err != nil || r.status < 300 || r.status > 399 {
			return hops, path, nil
		}
		next, same, err := v.f.sameOrigin(v.o.Host, path, r.header.Get("Location"))
		if err != nil || !same {
			return hops, path, nil
		}
		path = next
	}
	return hops, path, nil
}

// pages fetches the rendered pages and their same-origin scripts, matches
// frontend signatures and lists script hosts that are neither the store's
// nor allowed. Skimmers are injected into the database (design/head/includes,
// CMS blocks), so only the rendered page shows them.
func (v *verifier) pages(ctx context.Context) ([]m1audit.CheckResult, error) {
	m, err := newMatcher(v.o.Signatures)
	if err != nil {
		return nil, err
	}
	ps := &pageScan{
		v:          v,
		m:          m,
		sigRes:     m1audit.CheckResult{ID: CheckPageSignatures, Title: "Rendered pages and their scripts match no skimmer signature", Severity: m1audit.SeverityCritical},
		hostRes:    m1audit.CheckResult{ID: CheckScriptHosts, Title: "Rendered pages load scripts only from the store and allowed hosts", Severity: m1audit.SeverityHigh},
		storeHost:  v.o.Host,
		scheme:     v.f.base.Scheme,
		seenScript: map[string]bool{},
		foreign:    map[string]bool{},
	}
	if h, _, err := net.SplitHostPort(ps.storeHost); err == nil {
		ps.storeHost = h
	}
	for _, p := range v.o.Pages {
		if err := ps.page(ctx, p); err != nil {
			return nil, err
		}
	}
	if err := ps.fetchScripts(ctx); err != nil {
		return nil, err
	}
	ps.finishSignatures()
	ps.finishHosts()
	return []m1audit.CheckResult{ps.sigRes, ps.hostRes}, nil
}

// pageScan is one run of (*verifier).pages: the two results it fills and
// what it has seen so far.
type pageScan struct {
	v                *verifier
	m                *matcher
	sigRes, hostRes  m1audit.CheckResult
	storeHost        string
	scheme           string
	scripts          []string // same-origin script paths, in page order
	seenScript       map[string]bool
	foreign          map[string]bool
	pagesOK, skipped int
	pageNotes        []string
}

// page fetches page p (following redirects), matches its HTML and inline
// scripts and sorts its script sources.
func (ps *pageScan) page(ctx context.Context, p string) error {
	hops, final, err := ps.v.get(ctx, p)
	for i, r := range hops {
		note := "rendered page"
		if i < len(hops)-1 {
			note = "redirect (followed)"
		}
		ps.sigRes.Evidence.HTTP = append(ps.sigRes.Evidence.HTTP, r.evidence(false, note))
	}
	if err != nil {
		return err
	}
	last := hops[len(hops)-1]
	if last.err != nil || last.status != 200 {
		ps.pageNotes = append(ps.pageNotes, fmt.Sprintf("%s answered %d", p, last.status))
		return nil
	}
	ps.pagesOK++
	// Relative script sources resolve against the page that answered
	// (/checkout/onepage/ redirects to the cart when it is empty).
	pageURL := ps.scheme + "://" + ps.v.o.Host + final
	ps.sigRes.Evidence.Findings = append(ps.sigRes.Evidence.Findings, ps.m.match(last.body, pageURL, CheckPageSignatures, m1audit.ScopeHTML)...)
	srcs, inline := pageScripts(last.body)
	for i, code := range inline {
		ps.sigRes.Evidence.Findings = append(ps.sigRes.Evidence.Findings, ps.m.match(code, fmt.Sprintf("%s (inline script %d)", pageURL, i+1), CheckPageSignatures, m1audit.ScopeJS)...)
	}
	base, _ := url.Parse(pageURL)
	for _, src := range srcs {
		ps.scriptSource(base, pageURL, src)
	}
	return nil
}

// scriptSource sorts one script source of pageURL: same-origin scripts are
// queued for fetching, foreign and hidden origins listed for a person.
func (ps *pageScan) scriptSource(base *url.URL, pageURL, src string) {
	u, err := base.Parse(src)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		// data:, javascript: and unparsable sources hide their
		// origin: a person must look.
		ps.addForeign(pageURL+" "+src, excerpt([]byte(src), 200), pageURL)
		return
	}
	if strings.EqualFold(u.Hostname(), ps.storeHost) {
		rel := u.EscapedPath()
		if u.RawQuery != "" {
			rel += "?" + u.RawQuery
		}
		if !ps.seenScript[rel] {
			ps.seenScript[rel] = true
			ps.scripts = append(ps.scripts, rel)
		}
		return
	}
	if hostAllowed(u.Hostname(), ps.storeHost, ps.v.o.AllowedScriptHosts) {
		return
	}
	ps.addForeign(pageURL+" "+u.String(), "script from "+u.Hostname()+": "+excerpt([]byte(u.String()), 200), pageURL)
}

// addForeign lists a script source for a person, once per key.
func (ps *pageScan) addForeign(key, evidence, pageURL string) {
	if ps.foreign[key] {
		return
	}
	ps.foreign[key] = true
	ps.hostRes.Evidence.Findings = append(ps.hostRes.Evidence.Findings, m1audit.Finding{CheckID: CheckScriptHosts, Severity: m1audit.SeverityHigh,
		Path: pageURL, Evidence: evidence, NeedsPerson: true})
}

// fetchScripts fetches up to MaxScripts same-origin scripts and matches
// them.
func (ps *pageScan) fetchScripts(ctx context.Context) error {
	v := ps.v
	if len(ps.scripts) > v.o.MaxScripts {
		ps.skipped = len(ps.scripts) - v.o.MaxScripts
		ps.scripts = ps.scripts[:v.o.MaxScripts]
	}
	for _, s := range ps.scripts {
		r, err := v.f.do(ctx, http.MethodGet, v.o.Host, s, nil, nil)
		if err != nil {
			return err
		}
		note := "same-origin script"
		if r.err == nil && r.status == 200 {
			fs := ps.m.match(r.body, ps.scheme+"://"+v.o.Host+s, CheckPageSignatures, m1audit.ScopeJS)
			ps.sigRes.Evidence.Findings = append(ps.sigRes.Evidence.Findings, fs...)
			if len(fs) > 0 {
				note += ": signature match"
			}
		} else {
			note += ": not scanned (no 200)"
		}
		ps.sigRes.Evidence.HTTP = append(ps.sigRes.Evidence.HTTP, r.evidence(false, note))
	}
	return nil
}

// finishSignatures sets the signature result's detail and status.
func (ps *pageScan) finishSignatures() {
	sigRes := &ps.sigRes
	detail := fmt.Sprintf("%d of %d pages rendered, %d same-origin scripts scanned", ps.pagesOK, len(ps.v.o.Pages), len(ps.scripts))
	if ps.skipped > 0 {
		detail += fmt.Sprintf(" (%d more not fetched: MaxScripts)", ps.skipped)
	}
	if len(ps.pageNotes) > 0 {
		detail += "; " + strings.Join(ps.pageNotes, ", ")
	}
	sigRes.Evidence.Detail = detail
	switch {
	case len(sigRes.Evidence.Findings) > 0:
		sigRes.Status = m1audit.StatusFail
		sigRes.Compromise = true
		sigRes.Fix = "Find where the matched code comes from (core_config_data design/head/includes and design/footer/absolute_footer, cms_block, cms_page, theme and js/ files), remove it, then follow the compromise checklist: rotate admin, database and SSH credentials and the crypt key."
	case ps.pagesOK == 0:
		sigRes.Status = m1audit.StatusError
		sigRes.Fix = "No page answered 200: check hosts.<name>.hardening.base_url (the origin), server_name (the Host header) and pages (paths that answer 200)."
	default:
		sigRes.Status = m1audit.StatusPass
	}
}

// finishHosts sets the script-host result's detail and status.
func (ps *pageScan) finishHosts() {
	hostRes := &ps.hostRes
	hostRes.Evidence.Detail = "allowed: the store's host"
	if len(ps.v.o.AllowedScriptHosts) > 0 {
		hostRes.Evidence.Detail += ", " + strings.Join(ps.v.o.AllowedScriptHosts, ", ")
	}
	switch {
	case len(hostRes.Evidence.Findings) > 0:
		hostRes.Status = m1audit.StatusNeedsPerson
		hostRes.Fix = "For each listed script: if it is a known service, add its host to hosts.<name>.hardening.allowed_script_hosts; otherwise treat it as a skimmer (remove it from the database or theme and follow the compromise checklist)."
	case ps.pagesOK == 0:
		hostRes.Status = m1audit.StatusError
	default:
		hostRes.Status = m1audit.StatusPass
	}
}
