package m1audit

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFinalizeAndMarkdown(t *testing.T) {
	root := t.TempDir()
	goodStore(t, root)
	shell := filepath.Join(root, "media/wysiwyg/x.php")
	writeFile(t, shell, phpHead+"if (false) eval($_POST['c']);\n")
	old := time.Date(2020, 9, 12, 3, 4, 5, 0, time.UTC)
	if err := os.Chtimes(shell, old, old); err != nil { // attackers backdate mtime; ctime stays
		t.Fatal(err)
	}
	tg := targetFor(root)
	tg.Logs = []string{"/var/log/nginx/shop.access.log", "/var/log/php8.2-fpm.log"}
	rs := fileChecks(context.Background(), tg, fileOpts(t))
	rs = append(rs, CheckResult{ID: "m1.http.downloader", Title: "downloader | unreachable", Severity: SeverityHigh, Status: StatusFixed,
		Evidence: Evidence{HTTP: []HTTPEvidence{{Method: "GET", URL: "https://shop.example.com/downloader/", Status: 403}}}})
	r := &Report{Host: "web1", Target: *tg, Results: rs, Started: fixedNow, Finished: fixedNow.Add(time.Minute)}
	Finalize(r)
	s := r.Summary
	if s.Checks != len(rs) || s.Fail < 2 || s.Fixed != 1 || !s.Changed || !s.Compromised || s.Requests != 1 ||
		s.Pass+s.Fail+s.Fixed+s.NeedsPerson+s.NotApplicable+s.Errors != s.Checks {
		t.Errorf("summary %+v", s)
	}
	f := r.Forensics
	if f == nil || len(f.Files) == 0 {
		t.Fatalf("no forensics for a compromise: %+v", f)
	}
	got := f.Files[0]
	if got.Path != shell || !got.ModTime.Equal(old) || got.ChangeTime.Before(time.Now().Add(-time.Hour)) || got.CheckID == "" {
		t.Errorf("forensic file %+v: want the shell with backdated mtime and a fresh ctime", got)
	}
	if !strings.Contains(strings.Join(f.Logs, ","), "/var/log/php8.2-fpm.log") || !strings.Contains(strings.Join(f.Instructions, " "), "Rotate every credential") {
		t.Errorf("forensics logs %v instructions %v", f.Logs, f.Instructions)
	}
	md := r.Markdown()
	for _, want := range []string{"# Magento 1 hardening report: web1", "Signs of compromise", "media/wysiwyg/x.php", "Forensic appendix", "Rotate every credential", "downloader \\| unreachable", "What to do:"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown misses %q:\n%s", want, md)
		}
	}
	if _, err := json.Marshal(r); err != nil {
		t.Fatal(err)
	}

	// Nothing compromised: no appendix, Changed false.
	clean := &Report{Results: []CheckResult{{ID: CheckVCS, Status: StatusPass}, {ID: CheckDevFiles, Status: StatusNeedsPerson}}, Forensics: &Forensics{}}
	Finalize(clean)
	if clean.Forensics != nil || clean.Summary.Changed || clean.Summary.Compromised || clean.Summary.Pass != 1 || clean.Summary.NeedsPerson != 1 {
		t.Errorf("clean report: %+v %+v", clean.Summary, clean.Forensics)
	}
	if strings.Contains(clean.Markdown(), "Forensic") {
		t.Error("clean report renders a forensic appendix")
	}
}

func TestCheckCatalog(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range CheckCatalog() {
		if seen[c.ID] || c.Title == "" || c.Row == "" || c.Severity == "" || !strings.HasPrefix(c.ID, "m1.") {
			t.Errorf("catalog entry %+v duplicated or incomplete", c)
		}
		seen[c.ID] = true
	}
	if len(seen) != 26 {
		t.Errorf("%d checks in the catalog", len(seen))
	}
}
