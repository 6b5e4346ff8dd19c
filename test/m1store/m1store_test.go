package m1store_test

import (
	"strings"
	"testing"

	"github.com/mageflow/mageflow/test/m1store"
)

// TestStoreIsWeak proves the fixture really is weak before the hardening
// tests rely on it: dropped PHP runs, config leaks, the injected skimmer
// reaches the rendered pages through the database.
func TestStoreIsWeak(t *testing.T) {
	s := m1store.Start(t)
	code, body := s.Get(t, m1store.ServerName, "/checkout/onepage/")
	if code != 200 || !strings.Contains(body, "atob('aHR0cHM6Ly9ldmlsLmV4YW1wbGUvc2tpbS5qcw==')") || !strings.Contains(body, "gate.php?token=") {
		t.Fatalf("checkout page must carry the skimmer from design/head/includes and the CMS block (php8.2-mysql installed?): %d\n%s", code, body)
	}
	for path, leak := range map[string]string{
		"/skin/error.php":           "backdoor ",
		"/app/etc/local.xml":        "<connection>",
		"/.git/config":              "[core]",
		"/downloader/index.php":     "Connect Manager",
		"/var/export/customers.csv": "alice@example.com",
	} {
		code, body := s.Get(t, m1store.ServerName, path)
		if code != 200 || !strings.Contains(body, leak) {
			t.Errorf("%s: want 200 with %q (the store is meant to be weak), got %d %q", path, leak, code, body)
		}
	}
	if code, _ := s.Get(t, m1store.StagingName, "/"); code != 200 {
		t.Errorf("staging answers without credentials: want 200, got %d", code)
	}
}
