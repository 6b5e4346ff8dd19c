package m1verify

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/mageflow/mageflow/internal/m1/m1audit"
)

// Options says where and what to verify. BaseURL and Host are required.
type Options struct {
	// BaseURL is where to connect, e.g. "http://127.0.0.1:8080": the
	// origin, bypassing any CDN or WAF, so the vhost's own rules are tested.
	BaseURL string
	// Host is the Host header (and TLS server name) of the live vhost.
	Host string
	// StagingHosts are Host headers of staging vhosts, which must answer
	// 401/403 without credentials.
	StagingHosts []string
	// AdminFrontName is the admin path segment (Target.AdminFrontName);
	// empty means Magento's default, "admin".
	AdminFrontName string
	// Signatures are matched against rendered pages and their same-origin
	// scripts (html, js and any scopes); nil loads the shipped set.
	Signatures *m1audit.Signatures
	// AllowedScriptHosts are script hosts besides the store's own: an exact
	// host name, or "*.example.com" for its subdomains.
	AllowedScriptHosts []string
	// Pages are the rendered pages scanned; default "/", "/checkout/cart/",
	// "/checkout/onepage/".
	Pages []string
	// Concurrency bounds requests in flight (default 8); Timeout bounds
	// each request (default 10s).
	Concurrency int
	Timeout     time.Duration
	// MaxBodyBytes bounds each body read (default 1 MiB); MaxScripts bounds
	// the same-origin scripts fetched (default 30).
	MaxBodyBytes int64
	MaxScripts   int
	// Canaries writes nonce-echoing PHP canaries into WebRoot's media/,
	// skin/ and js/ to prove PHP does not run there. They are always
	// removed before Verify returns.
	Canaries bool
	WebRoot  string
	// OnCanary is called with each canary's path just before it is
	// created (so a crash between the two leaves nothing unrecorded); the
	// workflow records it so a cleanup can remove it after a crash.
	OnCanary func(path string)
}

// Verify runs every check against the live vhost and returns one result per
// check, in a fixed order. It returns an error only when the options are
// unusable, the origin does not answer at all, or ctx ends (no results
// then), or when a canary could not be removed (the results are returned
// too; run RemoveCanaries or remove the named file). Canaries are removed
// before Verify returns in every case.
func Verify(ctx context.Context, o Options) ([]m1audit.CheckResult, error) {
	o, base, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	f := newFetcher(base, o.Concurrency, o.Timeout, o.MaxBodyBytes)
	defer f.close()
	v := &verifier{o: o, f: f}

	// The baseline decides how 200 answers are judged, so it comes first.
	nr, err := v.baseline(ctx)
	if err != nil {
		return nil, err
	}

	var canaries []canary
	canaryResults := disabledCanaryResults()
	if o.Canaries {
		canaries, canaryResults = writeCanaries(o.WebRoot, o.OnCanary)
	}
	// Removal must not depend on ctx: a cancelled run removes them too. The
	// deferred call covers a panic; the normal path removes them below so
	// a failed removal is reported.
	defer func() {
		if canaries != nil {
			_ = removeCanaryFiles(canaries)
		}
	}()
	results, err := v.run(ctx, nr, canaries, canaryResults)
	rmErr := removeCanaryFiles(canaries)
	canaries = nil
	if err != nil {
		return nil, errors.Join(err, rmErr)
	}
	return results, rmErr
}

// Requests counts the HTTP requests behind results: each request is one
// HTTPEvidence (for Summary.Requests).
func Requests(results []m1audit.CheckResult) int {
	n := 0
	for _, r := range results {
		n += len(r.Evidence.HTTP)
	}
	return n
}

func (o Options) withDefaults() (Options, *url.URL, error) {
	if o.BaseURL == "" {
		return o, nil, errors.New("m1verify: BaseURL is empty: set it to the origin, e.g. http://127.0.0.1:80")
	}
	base, err := url.Parse(strings.TrimRight(o.BaseURL, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return o, nil, fmt.Errorf("m1verify: BaseURL %q must be http(s)://host[:port]", o.BaseURL)
	}
	if base.Path != "" || base.RawQuery != "" {
		return o, nil, fmt.Errorf("m1verify: BaseURL %q must be an origin without a path; probes start at /", o.BaseURL)
	}
	if strings.TrimSpace(o.Host) == "" {
		return o, nil, errors.New("m1verify: Host is empty: set it to the live vhost's server name")
	}
	if o.AdminFrontName == "" {
		o.AdminFrontName = m1audit.DefaultAdminFrontName
	}
	if !regexp.MustCompile(`^[A-Za-z0-9_-]+$`).MatchString(o.AdminFrontName) {
		return o, nil, fmt.Errorf("m1verify: admin frontName %q is not a plain path segment", o.AdminFrontName)
	}
	if o.Signatures == nil {
		if o.Signatures, err = m1audit.LoadSignaturesFS(m1audit.Shipped()); err != nil {
			return o, nil, fmt.Errorf("m1verify: load shipped signatures: %w", err)
		}
	}
	if len(o.Pages) == 0 {
		o.Pages = []string{"/", "/checkout/cart/", "/checkout/onepage/"}
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 1 << 20
	}
	if o.MaxScripts <= 0 {
		o.MaxScripts = 30
	}
	if o.Canaries && o.WebRoot == "" {
		return o, nil, errors.New("m1verify: Canaries needs WebRoot (the Magento root holding media/, skin/, js/)")
	}
	return o, base, nil
}

type verifier struct {
	o Options
	f *fetcher
}

// noRoute is the store's answer to a URL that exists nowhere.
type noRoute struct {
	status int
	title  string
	result m1audit.CheckResult
}

// soft reports whether body is the store's catch-all page served with 2xx.
func (n noRoute) soft(body []byte) bool {
	if n.status < 200 || n.status > 299 || n.title == "" {
		return false
	}
	return htmlTitle(body) == n.title
}

var titleRe = regexp.MustCompile(`(?is)<title[^>]*>(.*?)</title>`)

func htmlTitle(body []byte) string {
	m := titleRe.FindSubmatch(body)
	if m == nil {
		return ""
	}
	return strings.Join(strings.Fields(string(m[1])), " ")
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return hex.EncodeToString(b)
}

func (v *verifier) baseline(ctx context.Context) (noRoute, error) {
	path := "/mageflow-verify-" + randomHex(8) + "/"
	r, err := v.f.do(ctx, http.MethodGet, v.o.Host, path, nil, nil)
	if err != nil {
		return noRoute{}, err
	}
	if r.err != nil {
		return noRoute{}, fmt.Errorf("m1verify: the origin %s does not answer for Host %s: %v (check BaseURL and that nginx runs)", v.o.BaseURL, v.o.Host, r.err)
	}
	n := noRoute{status: r.status}
	res := m1audit.CheckResult{ID: "m1.http.no_route", Title: "Unknown URLs answer 404", Severity: m1audit.SeverityInfo, Status: m1audit.StatusPass}
	switch {
	case r.status == 404 || r.status == 403 || r.status == 410:
		res.Evidence.Detail = fmt.Sprintf("a random path answers %d; a 2xx for a denied path is a failure", r.status)
	case r.status >= 200 && r.status <= 299:
		n.title = htmlTitle(r.body)
		if n.title == "" {
			res.Evidence.Detail = fmt.Sprintf("a random path answers %d without an HTML title (soft 404): every 2xx for a denied path is a failure", r.status)
		} else {
			res.Evidence.Detail = fmt.Sprintf("a random path answers %d with the page titled %q (soft 404): a 2xx with that title is the store's catch-all page, not the denied file", r.status, n.title)
		}
	default:
		res.Status = m1audit.StatusNeedsPerson
		res.Evidence.Detail = fmt.Sprintf("a random path answers %d; expected 404", r.status)
		res.Fix = "Check the vhost's fallback (try_files … /index.php) and Magento's no-route page."
	}
	res.Evidence.HTTP = []m1audit.HTTPEvidence{r.evidence(false, "random path (baseline)")}
	n.result = res
	return n, nil
}

// run starts every check concurrently (requests are bounded by the
// fetcher) and returns their results in a fixed order.
func (v *verifier) run(ctx context.Context, nr noRoute, canaries []canary, canaryResults []m1audit.CheckResult) ([]m1audit.CheckResult, error) {
	type job func(context.Context) ([]m1audit.CheckResult, error)
	one := func(f func(context.Context) (m1audit.CheckResult, error)) job {
		return func(ctx context.Context) ([]m1audit.CheckResult, error) {
			r, err := f(ctx)
			return []m1audit.CheckResult{r}, err
		}
	}
	var jobs []job
	for _, p := range catalogue {
		jobs = append(jobs, one(func(ctx context.Context) (m1audit.CheckResult, error) { return v.probe(ctx, p, nr) }))
	}
	jobs = append(jobs, one(v.staging), one(v.miscScripts))
	for i := range canaryResults {
		jobs = append(jobs, one(func(ctx context.Context) (m1audit.CheckResult, error) {
			return v.canaryCheck(ctx, canaryResults[i], canaries)
		}))
	}
	jobs = append(jobs, v.pages)

	// The first failing job (only ctx errors fail a job) stops the others.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := make([][]m1audit.CheckResult, len(jobs))
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = j(ctx)
			if errs[i] != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	if err := firstErr(errs); err != nil {
		return nil, fmt.Errorf("m1verify: %w", err)
	}
	results := []m1audit.CheckResult{nr.result}
	for _, o := range out {
		results = append(results, o...)
	}
	return results, nil
}

func firstErr(errs []error) error {
	for _, e := range errs {
		if e != nil && !errors.Is(e, context.Canceled) {
			return e
		}
	}
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// verdict of one answer.
type verdict int

const (
	refused      verdict = iota // the rule held
	served                      // content or execution got through
	inconclusive                // cannot tell from here (no answer, cross-origin redirect)
)

// leakMarker returns the first marker found in body.
func leakMarker(body []byte, extra []string) string {
	for _, m := range commonMarkers {
		if bytes.Contains(body, []byte(m)) {
			return m
		}
	}
	for _, m := range extra {
		if bytes.Contains(body, []byte(m)) {
			return m
		}
	}
	return ""
}

// judge applies the package rule to one final (non-redirect) answer.
func judge(r response, markers []string, admin bool, nr noRoute) (verdict, bool, string) {
	if r.err != nil {
		return inconclusive, false, ""
	}
	if m := leakMarker(r.body, markers); m != "" {
		return served, true, fmt.Sprintf("leak: body holds %q", m)
	}
	switch s := r.status; {
	case s == 403 || s == 404 || s == 400 || s == 405 || s == 410:
		return refused, false, "refused"
	case s == 401 && admin:
		return refused, false, "credentials required"
	case s == 401:
		return served, false, "only behind credentials: deny it outright"
	case s >= 200 && s <= 299:
		if nr.soft(r.body) {
			return refused, false, "the store's no-route page (soft 404), nothing of the path"
		}
		if len(r.body) == 0 {
			return served, false, "empty 2xx: the path is served (or a script ran)"
		}
		return served, false, "2xx that is not the store's no-route page"
	case s >= 500:
		return served, false, "server error: the request reached a handler instead of being denied"
	}
	return inconclusive, false, fmt.Sprintf("unexpected status %d", r.status)
}

// fetchFollow requests path on host and follows same-origin redirects (at
// most 3). Every hop is evidence; the verdict is the final answer's.
func (v *verifier) fetchFollow(ctx context.Context, host, path string, markers []string, admin bool, nr noRoute) (verdict, []m1audit.HTTPEvidence, error) {
	var evs []m1audit.HTTPEvidence
	for hop := 0; ; hop++ {
		r, err := v.f.do(ctx, http.MethodGet, host, path, nil, nil)
		if err != nil {
			return inconclusive, evs, err
		}
		if r.status >= 300 && r.status <= 399 && r.err == nil {
			// A redirect body is ignored by browsers but can still carry
			// the leak (a misconfigured rewrite that prints the file).
			if m := leakMarker(r.body, markers); m != "" {
				evs = append(evs, r.evidence(true, fmt.Sprintf("leak in redirect body: %q", m)))
				return served, evs, nil
			}
			loc := r.header.Get("Location")
			next, same, err := v.f.sameOrigin(host, path, loc)
			switch {
			case err != nil:
				evs = append(evs, r.evidence(false, err.Error()))
				return inconclusive, evs, nil
			case !same:
				evs = append(evs, r.evidence(false, "redirects to "+next+", another origin: verify through that origin (BaseURL/Host)"))
				return inconclusive, evs, nil
			case hop >= 3:
				evs = append(evs, r.evidence(false, "more than 3 redirects"))
				return inconclusive, evs, nil
			}
			evs = append(evs, r.evidence(false, "redirect to "+next+" (followed)"))
			path = next
			continue
		}
		vd, leaked, note := judge(r, markers, admin, nr)
		evs = append(evs, r.evidence(leaked, note))
		return vd, evs, nil
	}
}

// probe checks one catalogue path with all its variants.
func (v *verifier) probe(ctx context.Context, p Probe, nr noRoute) (m1audit.CheckResult, error) {
	res := m1audit.CheckResult{ID: p.ID, Title: p.Title, Severity: p.Severity}
	if p.ID == "m1.http.admin.default_path" && m1audit.IsDefaultAdmin(v.o.AdminFrontName) {
		res.Status = m1audit.StatusNotApplicable
		res.Evidence.Detail = "the admin frontName is \"admin\": m1.http.admin.front probes it (and the audit flags the default path)"
		return res, nil
	}
	path := strings.ReplaceAll(p.Path, AdminPlaceholder, v.o.AdminFrontName)
	variants := Variants(path)
	markers := p.Markers
	var servedVariants, unsure []string
	for _, vp := range variants {
		vd, evs, err := v.fetchFollow(ctx, v.o.Host, vp, markers, p.Admin, nr)
		res.Evidence.HTTP = append(res.Evidence.HTTP, evs...)
		if err != nil {
			return res, err
		}
		switch vd {
		case served:
			servedVariants = append(servedVariants, vp)
		case inconclusive:
			unsure = append(unsure, vp)
		}
	}
	res.Evidence.Detail = fmt.Sprintf("%s and %d variants; must not reveal: %s", path, len(variants)-1, p.Leak)
	switch {
	case len(servedVariants) > 0:
		res.Status = m1audit.StatusFail
		res.Fix = p.Fix
		res.Evidence.Detail += "; served: " + strings.Join(servedVariants, " ")
	case len(unsure) > 0:
		res.Status = m1audit.StatusError
		res.Fix = "No usable answer for some variants (see evidence): check hosts.<name>.hardening.base_url (the origin), server_name (the Host header) and that the origin answers directly."
		res.Evidence.Detail += "; inconclusive: " + strings.Join(unsure, " ")
	default:
		res.Status = m1audit.StatusPass
	}
	return res, nil
}

// staging checks that staging vhosts refuse anonymous visitors.
func (v *verifier) staging(ctx context.Context) (m1audit.CheckResult, error) {
	res := m1audit.CheckResult{ID: "m1.http.staging_auth", Title: "Staging vhosts require credentials", Severity: m1audit.SeverityHigh}
	if len(v.o.StagingHosts) == 0 {
		res.Status = m1audit.StatusNotApplicable
		res.Evidence.Detail = "no staging vhost found"
		return res, nil
	}
	var open []string
	for _, h := range v.o.StagingHosts {
		for _, p := range []string{"/", "/downloader/", "/app/etc/local.xml"} {
			r, err := v.f.do(ctx, http.MethodGet, h, p, nil, nil)
			if err != nil {
				return res, err
			}
			ok := r.err == nil && (r.status == 401 || r.status == 403 || (p != "/" && r.status == 404))
			m := leakMarker(r.body, []string{"<key>"})
			note := "credentials required"
			if !ok || m != "" {
				open = append(open, h+p)
				note = "answers without credentials"
				if m != "" {
					note = fmt.Sprintf("leak: body holds %q", m)
				}
			}
			res.Evidence.HTTP = append(res.Evidence.HTTP, r.evidence(m != "", note))
		}
	}
	if len(open) > 0 {
		res.Status = m1audit.StatusFail
		res.Evidence.Detail = "open without credentials: " + strings.Join(open, " ")
		res.Fix = "Put staging vhosts behind basic auth (auth_basic on the whole server) or an IP allowlist; they hold copies of live data and are rarely patched."
		return res, nil
	}
	res.Status = m1audit.StatusPass
	res.Evidence.Detail = fmt.Sprintf("%d staging vhost(s) answer 401/403 without credentials", len(v.o.StagingHosts))
	return res, nil
}

// phpRan says whether a response carries signs that PHP (Magento) handled
// the request: Magento starts a session on every dispatch.
func phpRan(r response) string {
	for _, c := range r.header.Values("Set-Cookie") {
		name, _, _ := strings.Cut(c, "=")
		switch strings.TrimSpace(name) {
		case "frontend", "adminhtml", "PHPSESSID", "frontend_cid":
			return "Set-Cookie " + strings.TrimSpace(name)
		}
	}
	if xp := r.header.Get("X-Powered-By"); strings.Contains(xp, "PHP") {
		return "X-Powered-By " + xp
	}
	return ""
}

// miscScripts sends the "misc scripts" injection (design/head/includes) an
// attacker with an admin session would send, without credentials: it must
// be refused by nginx, before PHP runs.
func (v *verifier) miscScripts(ctx context.Context) (m1audit.CheckResult, error) {
	res := m1audit.CheckResult{ID: "m1.http.misc_scripts_post", Title: "Misc-scripts injection POST is refused before PHP", Severity: m1audit.SeverityHigh}
	form := url.Values{}
	form.Set("groups[head][fields][includes][value]", `<script src="https://mageflow-verify.invalid/x.js"></script>`)
	body := []byte(form.Encode())
	hdr := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	front := v.o.AdminFrontName
	var bad []string
	for _, p := range []string{
		"/" + front + "/system_config/save/section/design/",
		"/index.php/" + front + "/system_config/save/section/design/",
	} {
		r, err := v.f.do(ctx, http.MethodPost, v.o.Host, p, body, hdr)
		if err != nil {
			return res, err
		}
		note := ""
		ok := false
		sign := phpRan(r)
		switch {
		case r.err != nil:
			note = "no answer"
		case r.status != 401 && r.status != 403 && r.status != 404 && r.status != 405:
			note = fmt.Sprintf("status %d: not refused", r.status)
			if sign != "" {
				note += fmt.Sprintf(", PHP ran (%s)", sign)
			}
		case sign != "":
			note = fmt.Sprintf("status %d but PHP ran (%s): refuse it in nginx", r.status, sign)
		default:
			ok, note = true, fmt.Sprintf("refused with %d, no sign of PHP", r.status)
		}
		if !ok {
			bad = append(bad, p)
		}
		res.Evidence.HTTP = append(res.Evidence.HTTP, r.evidence(false, note))
	}
	res.Evidence.Detail = "POST with groups[head][fields][includes][value]=<script…>, no credentials; PHP is detected by Magento's session cookies (frontend, adminhtml) and X-Powered-By"
	if len(bad) > 0 {
		res.Status = m1audit.StatusFail
		res.Evidence.Detail += "; not refused before PHP: " + strings.Join(bad, " ")
		res.Fix = "Refuse POST …/system_config/save/section/design/ in nginx (return 403 inside the admin location) or keep the admin behind basic auth; on OpenMage 20.7+ also lock design/head/includes via OPENMAGE_CONFIG__ environment variables."
		return res, nil
	}
	res.Status = m1audit.StatusPass
	return res, nil
}
