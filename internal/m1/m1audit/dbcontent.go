package m1audit

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/mageflow/mageflow/internal/platform/units"
)

// Signature ids of the checks only database content gets: values there are
// HTML fragments pasted by an admin (or an attacker with admin access), so
// the script hosts and inline event handlers they carry are judged here,
// beside the shipped browser-side signatures.
const (
	// SigLookalikeHost marks a <script src> whose host imitates a service
	// stores load scripts from (google-analytics, jquery, …) or the store's
	// own domain: the skimmer operator's way to pass a glance at the HTML.
	SigLookalikeHost = "db.lookalike_script_host"
	// SigHandlerExfil marks an inline event handler (onclick, onsubmit, …)
	// that reads a card or checkout field and sends it to another host.
	SigHandlerExfil = "db.handler_exfil"
)

// impersonatedServices are registrable domains skimmer operators imitate
// (typosquats, the name under another TLD, the name inside a longer host).
var impersonatedServices = []string{
	"google-analytics.com", "googletagmanager.com", "googleapis.com", "gstatic.com", "doubleclick.net",
	"jquery.com", "jsdelivr.net", "cloudflare.com", "bootstrapcdn.com", "magento.com", "magentocommerce.com",
	"paypal.com", "braintreegateway.com", "stripe.com", "facebook.net", "hotjar.com", "trustpilot.com",
}

// registrable returns the host's last two labels and the label before the
// public suffix ("www.google-analytics.com" → "google-analytics.com",
// "google-analytics"). Two-letter second-level suffixes (co.uk, com.au)
// take three labels.
func registrable(host string) (domain, label string) {
	parts := strings.Split(strings.Trim(strings.ToLower(host), "."), ".")
	n := 2
	if len(parts) >= 3 && (len(parts[len(parts)-2]) <= 3 && len(parts[len(parts)-1]) == 2) {
		n = 3
	}
	if len(parts) < n {
		return strings.Join(parts, "."), parts[0]
	}
	return strings.Join(parts[len(parts)-n:], "."), parts[len(parts)-n]
}

// imitates says whether host (not allowed, not the genuine domain) looks
// like genuine: the same label under another suffix, the label within a
// longer one ("google-analytics-cdn"), the label spread over host labels
// ("google-analytics.com.cdn.example"), or one or two edits away.
func imitates(host, genuine string) bool {
	gd, gl := registrable(genuine)
	hd, hl := registrable(host)
	if hd == gd || len(gl) < 5 {
		return false
	}
	switch {
	case hl == gl, strings.Contains(hl, gl), strings.Contains(host, gd+"."):
		return true
	case strings.Contains(strings.ReplaceAll(hl, "-", ""), strings.ReplaceAll(gl, "-", "")):
		return true
	}
	return units.EditDistance(hl, gl) <= 2
}

// lookalikeOf returns the genuine domain host imitates, "" when none: the
// well-known script services and the store's own hosts.
func lookalikeOf(host string, own []string) (genuine string, isOwn bool) {
	if strings.HasSuffix(host, ":") || host == "" {
		return "", false
	}
	for _, s := range impersonatedServices {
		if imitates(host, s) {
			return s, false
		}
	}
	for _, o := range own {
		o = strings.TrimPrefix(strings.ToLower(o), "*.")
		if o != "" && !strings.ContainsAny(o, "*~") && imitates(host, o) {
			return o, true
		}
	}
	return "", false
}

// hostFindings judges every foreign <script src> host in one value: a
// lookalike of a script service is a skimmer (high, compromise), one of the
// store's own domain needs a person who knows the store's domains, any
// other foreign host needs a person to confirm or allowlist it.
func hostFindings(name string, content []byte, allowed, own []string) []Finding {
	var out []Finding
	for _, h := range ForeignScriptHosts(content, allowed) {
		f := Finding{CheckID: CheckContentForeignScript, Severity: SeverityMedium, Path: name, NeedsPerson: true,
			Evidence: "script loaded from " + h + ", not a base URL host nor allowlisted"}
		switch g, isOwn := lookalikeOf(h, own); {
		case g != "" && !isOwn:
			f.Severity, f.NeedsPerson, f.SignatureID = SeverityHigh, false, SigLookalikeHost
			f.Evidence = fmt.Sprintf("script loaded from %s, a lookalike of %s (not that service's domain)", h, g)
		case g != "":
			f.Severity, f.SignatureID = SeverityHigh, SigLookalikeHost
			f.Evidence = fmt.Sprintf("script loaded from %s, a lookalike of the store's own %s: confirm the domain is yours", h, g)
		}
		out = append(out, f)
	}
	return out
}

// eventHandlerRe finds inline event handler attributes and their value.
var eventHandlerRe = regexp.MustCompile(`(?is)\bon(?:click|submit|change|blur|mousedown|mouseup|keyup|keydown|input|focusout)\s*=\s*(?:"([^"]{1,1000})"|'([^']{1,1000})')`)

// handlerCardWords and handlerSendWords are what an exfiltrating handler
// reads and how it sends it.
var (
	handlerCardWords = []string{"cc_num", "cc_cid", "cc_exp", "cc_owner", "cvv", "cvc", "cardnumber", "card_number", "card-number", "payment[cc", "billing:", "billing[", "password"}
	handlerSendWords = []string{"new image", ".src=", ".src =", "sendbeacon", "fetch(", "xmlhttprequest", "websocket", ".ajax(", ".post(", "location=", "location.href="}
)

// handlerFindings reports inline event handlers that read card or
// checkout fields and send data to a URL: stock CMS content has onclick
// handlers (setLocation, toggles) but none that ship form values off-site.
func handlerFindings(name string, content []byte) []Finding {
	var out []Finding
	for _, m := range eventHandlerRe.FindAllSubmatchIndex(content, -1) {
		s, e := m[2], m[3]
		if s < 0 {
			s, e = m[4], m[5]
		}
		low := strings.ToLower(string(content[s:e]))
		low = strings.ReplaceAll(low, "&quot;", "\"")
		if !containsAny(low, handlerCardWords) || !containsAny(low, handlerSendWords) ||
			!containsAny(low, []string{"http://", "https://", "'//", "\"//", "wss://", "atob("}) {
			continue
		}
		out = append(out, Finding{CheckID: CheckContentSignature, Severity: SeverityCritical, Path: name,
			Line: lineAt(content, m[0]), SignatureID: SigHandlerExfil, Evidence: excerpt(content, m[0], m[1], 120) +
				" → event handler reads a card/checkout field and sends it off-site"})
	}
	return out
}

func containsAny(s string, words []string) bool {
	for _, w := range words {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}
