package m1fix

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mageflow/mageflow/internal/m1/m1audit"
)

const flaggedShell = "app/code/local/Evil/x.php"

// ctimeOf is the inode change time of path.
func ctimeOf(t *testing.T, path string) time.Time {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return time.Unix(st.Ctim.Sec, st.Ctim.Nsec).UTC()
}

// flaggedAudit is the audit's finding on the planted web shell.
func flaggedAudit() []m1audit.CheckResult {
	return []m1audit.CheckResult{{ID: "m1.files.malware", Title: "malware", Severity: m1audit.SeverityCritical, Status: m1audit.StatusFail, Compromise: true,
		Evidence: m1audit.Evidence{Findings: []m1audit.Finding{{Path: flaggedShell, Evidence: "eval(base64_decode("}}}}}
}

// reportFor finalizes a report of the audit plus the apply results.
func reportFor(s *stack, applied []m1audit.CheckResult) *m1audit.Report {
	rep := &m1audit.Report{Target: *s.target, Apply: true, Results: append(flaggedAudit(), applied...)}
	m1audit.Finalize(rep)
	return rep
}

// TestForensicsSurviveApply: the ownership fix chowns the flagged web shell
// (resetting its ctime), yet the report shows the ctime, owner, mode and
// hash from before the apply; a later apply of the same incident never
// replaces the first snapshot and the report keeps the first times.
func TestForensicsSurviveApply(t *testing.T) {
	s := startStack(t)
	chownFixture(t, s.root)
	shell := filepath.Join(s.root, flaggedShell)
	before := ctimeOf(t, shell)
	content, _ := os.ReadFile(shell)
	sum := sha256.Sum256(content)
	nobody, _ := user.Lookup("nobody")
	nobodyUID, _ := strconv.Atoi(nobody.Uid)
	time.Sleep(1100 * time.Millisecond) // the Markdown shows seconds

	res, err := Apply(t.Context(), s.target, s.opts)
	if err != nil {
		t.Fatal(err)
	}
	if after := ctimeOf(t, shell); !after.After(before) {
		t.Fatalf("the ownership fix did not touch the shell (ctime %v → %v): the test proves nothing", before, after)
	}
	fr := byID(res, IDForensics)
	if fr.Status != m1audit.StatusPass || len(fr.Evidence.Snapshots) != 1 {
		t.Fatalf("forensics: %s %q %v", fr.Status, fr.Evidence.Detail, fr.Evidence.Snapshots)
	}
	first := fr.Evidence.Snapshots[0]
	assertPrivate(t, first)
	firstBytes, _ := os.ReadFile(first)

	rep := reportFor(s, res)
	ff := forensicFile(t, rep, shell)
	if !ff.ChangeTime.Equal(before) || ff.UID != nobodyUID || ff.Mode != "-rw-rw----" || ff.SHA256 != hex.EncodeToString(sum[:]) || ff.CheckID != "m1.files.malware" {
		t.Errorf("report shows %+v, want ctime %v, uid %d, -rw-rw----, sha256 %x", ff, before, nobodyUID, sum)
	}
	if row := markdownRow(rep.Markdown(), shell); len(row) < 3 || row[2] != before.Format(time.RFC3339) {
		t.Errorf("Markdown row %q, want the pre-apply ctime %s in the Changed column", row, before.Format(time.RFC3339))
	}

	// Same incident, the attacker re-plants: the next apply records a new
	// snapshot beside the first, which stays byte for byte.
	if err := os.Lchown(shell, nobodyUID, -1); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	res, err = Apply(t.Context(), s.target, s.opts)
	if err != nil {
		t.Fatal(err)
	}
	snaps := byID(res, IDForensics).Evidence.Snapshots
	if len(snaps) != 2 || snaps[0] != first {
		t.Fatalf("snapshots after the second apply: %v", snaps)
	}
	if now, _ := os.ReadFile(first); string(now) != string(firstBytes) {
		t.Error("the second apply rewrote the first snapshot")
	}
	if ff := forensicFile(t, reportFor(s, res), shell); !ff.ChangeTime.Equal(before) {
		t.Errorf("after the second apply the report shows ctime %v, want the first snapshot's %v", ff.ChangeTime, before)
	}
}

// TestForensicsStateDirLinkRefused: a state directory planted as a symlink
// is not written through, and ownership is then left alone so the
// evidence stays on the files themselves.
func TestForensicsStateDirLinkRefused(t *testing.T) {
	s := startStack(t)
	chownFixture(t, s.root)
	elsewhere := t.TempDir()
	dir := s.opts.snapshotDir(s.target)
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, dir); err != nil {
		t.Fatal(err)
	}
	shell := filepath.Join(s.root, flaggedShell)
	before := ctimeOf(t, shell)
	res, err := Apply(t.Context(), s.target, s.opts)
	if err != nil {
		t.Fatal(err)
	}
	if r := byID(res, IDForensics); r.Status != m1audit.StatusError {
		t.Errorf("forensics through a symlinked state dir: %s %q", r.Status, r.Evidence.Detail)
	}
	if r := byID(res, IDOwnership); r.Status != m1audit.StatusError || !strings.Contains(r.Evidence.Detail, "left alone") {
		t.Errorf("ownership without evidence: %s %q", r.Status, r.Evidence.Detail)
	}
	if !ctimeOf(t, shell).Equal(before) {
		t.Error("the shell was changed although its evidence was not recorded")
	}
	if files, _ := os.ReadDir(elsewhere); len(files) != 0 {
		t.Errorf("wrote through the planted link: %v", files)
	}
}

func assertPrivate(t *testing.T, file string) {
	t.Helper()
	fi, err := os.Lstat(file)
	if err != nil || fi.Mode().Perm() != 0o600 || !fi.Mode().IsRegular() {
		t.Errorf("snapshot %s: %v %v, want a 0600 file", file, fi.Mode(), err)
	}
	if di, err := os.Lstat(filepath.Dir(file)); err != nil || di.Mode().Perm() != 0o700 {
		t.Errorf("snapshot dir: %v %v, want 0700", di.Mode(), err)
	}
}

func forensicFile(t *testing.T, rep *m1audit.Report, abs string) m1audit.ForensicFile {
	t.Helper()
	if rep.Forensics == nil {
		t.Fatal("no forensic appendix")
	}
	for _, f := range rep.Forensics.Files {
		if f.Path == abs {
			return f
		}
	}
	t.Fatalf("%s not in the forensic appendix: %+v", abs, rep.Forensics.Files)
	return m1audit.ForensicFile{}
}

// markdownRow is the forensic table's row of abs, split into cells.
func markdownRow(md, abs string) []string {
	for _, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(line, "| `"+abs+"`") {
			cells := strings.Split(line, "|")
			for i := range cells {
				cells[i] = strings.TrimSpace(cells[i])
			}
			return cells
		}
	}
	return nil
}
