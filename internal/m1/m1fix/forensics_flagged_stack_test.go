package m1fix

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mageflow/mageflow/internal/m1/m1audit"
)

// flaggedSkimmer is a file only the audit flagged: the ownership fix has
// no reason to touch it (root-owned, not writable by the PHP user).
const flaggedSkimmer = "errors/favicon_3f9a.ico"

// TestForensicsRecordFlaggedFiles: a file the audit flagged but apply does
// not change is recorded in the snapshot through Options.Flagged, so when
// it is touched after the apply (cleaned, moved to quarantine, chmodded)
// the report still shows its ctime from before the apply.
func TestForensicsRecordFlaggedFiles(t *testing.T) {
	s := startStack(t)
	chownFixture(t, s.root)
	skim := filepath.Join(s.root, flaggedSkimmer)
	if err := os.MkdirAll(filepath.Dir(skim), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(skim, []byte("GIF89a<?php @eval($_POST['k']);"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := ctimeOf(t, skim)
	time.Sleep(1100 * time.Millisecond) // the Markdown shows seconds

	s.opts.Flagged = []string{flaggedSkimmer, "../outside.php", "/etc/passwd"}
	res, err := Apply(t.Context(), s.target, s.opts)
	if err != nil {
		t.Fatal(err)
	}
	if now := ctimeOf(t, skim); !now.Equal(before) {
		t.Fatalf("apply changed %s (ctime %v → %v): it would be recorded without Flagged, the test proves nothing", skim, before, now)
	}
	fr := byID(res, IDForensics)
	if fr.Status != m1audit.StatusPass || len(fr.Evidence.Snapshots) != 1 {
		t.Fatalf("forensics: %s %q %v", fr.Status, fr.Evidence.Detail, fr.Evidence.Snapshots)
	}
	assertSnapshotPaths(t, fr.Evidence.Snapshots[0], skim)

	// Touched after the apply: the report keeps the time from before.
	if err := os.Chmod(skim, 0o600); err != nil {
		t.Fatal(err)
	}
	if now := ctimeOf(t, skim); now.Equal(before) {
		t.Fatal("chmod did not move the ctime")
	}
	audit := m1audit.CheckResult{ID: m1audit.CheckPHPInImage, Title: "PHP in image", Severity: m1audit.SeverityCritical, Status: m1audit.StatusFail, Compromise: true,
		Evidence: m1audit.Evidence{Findings: []m1audit.Finding{{Path: flaggedSkimmer, Evidence: "GIF89a<?php"}}}}
	rep := &m1audit.Report{Target: *s.target, Apply: true, Results: append([]m1audit.CheckResult{audit}, res...)}
	m1audit.Finalize(rep)
	if ff := forensicFile(t, rep, skim); !ff.ChangeTime.Equal(before) {
		t.Errorf("report shows ctime %v for the flagged file, want the pre-apply %v", ff.ChangeTime, before)
	}
	if row := markdownRow(rep.Markdown(), skim); len(row) < 3 || row[2] != before.Format(time.RFC3339) {
		t.Errorf("Markdown row %q, want the pre-apply ctime %s", row, before.Format(time.RFC3339))
	}
}

// assertSnapshotPaths: the snapshot records want and nothing outside the
// web root (the flagged "../outside.php" and "/etc/passwd" are ignored).
func assertSnapshotPaths(t *testing.T, file, want string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var snap m1audit.ForensicSnapshot
	if err := json.Unmarshal(data, &snap); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range snap.Files {
		found = found || f.Path == want
		if f.Path == "/etc/passwd" || filepath.Base(f.Path) == "outside.php" {
			t.Errorf("snapshot records %s, outside the web root", f.Path)
		}
	}
	if !found {
		t.Errorf("snapshot %s does not record the flagged %s", file, want)
	}
}
