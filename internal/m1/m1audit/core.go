package m1audit

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/mageflow/mageflow/internal/m1/m1core"
)

// CheckCoreIntegrity compares the core files with the pristine release
// manifests of internal/m1/m1core: a card stealer appended to a core file
// is found by its content no release has, not by a signature.
const CheckCoreIntegrity = "m1.files.core_integrity"

// Texts of the core-integrity result.
const (
	coreFixModified = "Compare each listed file with the release it came from (the lines shown are in no release of Magento or OpenMage): " +
		"replace modified and added core files from a trusted copy of that release, move intended changes to app/code/local overrides; " +
		"if a line sends payment or request data anywhere, treat the store as compromised and rotate every credential."
	coreFixUnknown = "The release was not identified: check the core files against a trusted copy of the installed release by hand; the signature scan still ran."
	coreFixMissing = "Restore the missing core files from the release, or confirm they were removed on purpose."
	// maxMissingListed caps the missing files listed as findings.
	maxMissingListed = 20
	// maxEvidenceLines caps the foreign lines quoted in one finding.
	maxEvidenceLines = 3
)

func init() {
	i := slices.IndexFunc(catalog, func(c CheckInfo) bool { return c.ID == CheckUnscanned }) + 1
	catalog = slices.Insert(catalog, i, CheckInfo{CheckCoreIntegrity,
		"Core files equal a pristine Magento/OpenMage release (no modified, added or missing core file)", SeverityHigh, RowMalwareFiles, "audit"})
}

// coreIntegrityCheck runs m1core.Check on the web root.
func coreIntegrityCheck(ctx context.Context, t *Target) CheckResult {
	r := newResult(CheckCoreIntegrity)
	r.Evidence.Command = "core integrity " + t.WebRoot
	// m1core reads app/Mage.php itself: it names releases as its manifests
	// do (OpenMage 19.4.x keeps its major version in a local variable).
	res, err := m1core.Check(ctx, t.WebRoot, m1core.Options{})
	if err != nil {
		return errResult(r, err)
	}
	r.Evidence.Detail = res.Summary()
	if res.Status == m1core.StatusUnknownVersion {
		r.Status, r.Fix = StatusNeedsPerson, coreFixUnknown
		return r
	}
	fs, high := coreFindings(res)
	capFindings(&r, fs)
	switch {
	case len(fs) == 0:
		r.Status = StatusPass
	case high:
		r.Status, r.Fix = StatusFail, coreFixModified
		r.Compromise = exfiltrates(res)
	case len(res.Modified)+len(res.Added) > 0:
		r.Status, r.Fix = StatusNeedsPerson, coreFixModified
	default:
		r.Status, r.Fix = StatusNeedsPerson, coreFixMissing
	}
	return r
}

// coreFindings turns a check result into findings; high is true when a
// code file is modified or added.
func coreFindings(res *m1core.Result) (fs []Finding, high bool) {
	for _, c := range res.Modified {
		f := coreFinding(c, "modified core file (release "+res.Version+")")
		high = high || f.Severity == SeverityHigh
		fs = append(fs, f)
	}
	for _, c := range res.Added {
		f := coreFinding(c, "file in a core area that no release has")
		high = high || f.Severity == SeverityHigh
		fs = append(fs, f)
	}
	for i, p := range res.Missing {
		if i == maxMissingListed {
			fs = append(fs, Finding{CheckID: CheckCoreIntegrity, Severity: SeverityLow, Path: "…",
				Evidence: fmt.Sprintf("%d more core files missing", len(res.Missing)-maxMissingListed)})
			break
		}
		fs = append(fs, Finding{CheckID: CheckCoreIntegrity, Severity: SeverityLow, Path: p, Evidence: "core file of release " + res.Version + " missing"})
	}
	return fs, high
}

// riskyMarkers are what a foreign line of a theme template holds when it
// loads or sends something rather than laying out a page (lower case).
var riskyMarkers = []string{"<script", "eval(", "atob(", "fromcharcode", "base64", "unescape(", "\\x",
	"$_post", "$_get", "$_request", "$_cookie", "$_server", "curl_", "file_put_contents", "fsockopen", "mail(",
	"xmlhttprequest", "fetch(", "websocket", "new image", "sendbeacon", "createelement("}

// themeFile reports whether p is in a stock theme package (app/design,
// skin), which stores customise in place.
func themeFile(p string) bool {
	return strings.HasPrefix(p, "app/design/") || strings.HasPrefix(p, "skin/")
}

func riskyLines(ls []m1core.Line) bool {
	for _, l := range ls {
		t := strings.ToLower(l.Text)
		for _, m := range riskyMarkers {
			if strings.Contains(t, m) {
				return true
			}
		}
	}
	return false
}

// compromiseMarkers are what a line added to core code holds when it sends
// data away, decodes a payload or runs one (lower case): a developer's
// hack rarely does, a card stealer always does.
var compromiseMarkers = []string{"base64", "eval(", "assert(", "gzinflate", "str_rot13", "atob(", "fromcharcode", "\\x",
	"curl_", "file_get_contents(", "file_put_contents", "fsockopen", "mail(", "sendbeacon", "xmlhttprequest", "<script",
	"create_function", "call_user_func"}

// exfiltrates reports whether a modified or added core code file has a
// foreign line with a compromiseMarker, which makes the result a sign of
// compromise (forensic appendix, credential rotation).
func exfiltrates(res *m1core.Result) bool {
	for _, c := range slices.Concat(res.Modified, res.Added) {
		if !c.Code {
			continue
		}
		for _, l := range c.Foreign {
			t := strings.ToLower(l.Text)
			for _, m := range compromiseMarkers {
				if strings.Contains(t, m) {
					return true
				}
			}
		}
	}
	return false
}

func coreFinding(c m1core.Change, what string) Finding {
	f := Finding{CheckID: CheckCoreIntegrity, Severity: SeverityMedium, Path: c.Path}
	// Code with lines no release has, or code the index cannot show line
	// by line, is high; code whose every line is in some release (a SUPEE
	// patch on an older base, lines removed) is for a person to review.
	// Stores edit the stock themes in place, so a theme template is high
	// only when a foreign line looks like a skimmer or a backdoor.
	if c.Symlink || (c.Code && (!c.Lines || c.ForeignLines > 0)) {
		f.Severity = SeverityHigh
		if themeFile(c.Path) && !c.Symlink && c.Lines && !riskyLines(c.Foreign) {
			f.Severity = SeverityMedium
		}
	}
	var ev []string
	switch {
	case c.Symlink:
		ev = append(ev, what+": a symbolic link where the release has none (not followed)")
	case c.Err != "":
		ev = append(ev, what+": "+c.Err)
	case !c.Lines:
		ev = append(ev, fmt.Sprintf("%s: %d bytes, content differs from every release (no line view kept for this file)", what, c.Size))
	case c.ForeignLines == 0:
		ev = append(ev, what+": every line is in some release (a patch applied to an older release, an upgrade, or lines removed): review the difference")
	default:
		f.Line = c.Foreign[0].N
		ev = append(ev, fmt.Sprintf("%s: %d line(s) no release has", what, c.ForeignLines))
		for i, l := range c.Foreign {
			if i == maxEvidenceLines {
				break
			}
			ev = append(ev, fmt.Sprintf("line %d: %s", l.N, l.Text))
		}
	}
	f.Evidence = strings.Join(ev, "; ")
	return f
}
