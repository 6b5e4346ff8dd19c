package m1fix

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestErrorReportPageRuns: Magento 1's error processor redirects browsers
// to /errors/report.php?id=…; after Apply that page runs (it answered 404
// before the fix) while every other script, template and config file under
// errors/ stays refused, in every spelling.
func TestErrorReportPageRuns(t *testing.T) {
	s := startStack(t)
	ran := `<?php echo "EXECUTED-", 6*7, " ", basename(__FILE__);`
	for name, body := range map[string]string{
		"errors/report.php":             ran,
		"errors/processor.php":          ran,
		"errors/404.php":                ran,
		"errors/503.php":                ran,
		"errors/default/page.phtml":     ran,
		"errors/default/css/styles.css": "body{color:red}",
		"errors/design.xml":             "<config><skin>default</skin></config>",
	} {
		p := filepath.Join(s.root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Apply(t.Context(), s.target, s.opts); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/errors/report.php?id=123456789&s=default", "/errors/report.php"} {
		if r := s.do(t, "GET", p, false); r.status != 200 || !strings.Contains(r.body, executed+" report.php") {
			t.Errorf("GET %s = %d %q, want the report page", p, r.status, r.body)
		}
	}
	if r := s.do(t, "GET", "/errors/default/css/styles.css", false); r.status != 200 || !strings.Contains(r.body, "color:red") {
		t.Errorf("the report page's stylesheet = %d %q", r.status, r.body)
	}
	for _, p := range []string{
		"/errors/processor.php", "/errors/404.php", "/errors/503.php", "/errors/default/page.phtml",
		"/ERRORS/processor.php", "/errors/%70rocessor.php", "//errors/404.php", "/errors/report.php/../503.php",
		"/errors/local.xml", "/errors/design.xml", "/Errors/Local.xml", "/errors/REPORT.PHP",
		"/media/errors/report.php", "/errors/x/report.php",
	} {
		if r := s.do(t, "GET", p, false); (r.status != 403 && r.status != 404) || leaked(r.body) {
			t.Errorf("GET %s = %d %q, want 403/404", p, r.status, r.body)
		}
	}
}
