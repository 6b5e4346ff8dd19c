package m1fix

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/mageflow/mageflow/internal/m1/m1audit"
)

// DefaultStateDir is where Apply keeps the forensic snapshots when
// Options.StateDir is empty.
const DefaultStateDir = "/var/lib/mageflow/harden"

// maxHashBytes bounds the files the snapshot hashes; larger ones are
// recorded without a hash (a web shell is small; a media archive is not).
const maxHashBytes = 64 << 20

// errStateDirLink refuses a state directory reached through a symlink or
// writable by others: the snapshot is evidence, written as root.
var errStateDirLink = errors.New("is a symlink, not a directory, or writable by group/others: refusing to write forensic evidence there")

// snapshotDir is the directory of the target's snapshots.
func (o Options) snapshotDir(t *m1audit.Target) string {
	return filepath.Join(orDefault(o.StateDir, DefaultStateDir), "forensics", targetID(t))
}

// forensicPaths are the entries the snapshot records: every entry the
// ownership fix is about to change, and Options.Flagged.
func forensicPaths(t *m1audit.Target, o Options, p *ownerPlan) []string {
	root := filepath.Clean(t.WebRoot)
	seen := map[string]bool{}
	var out []string
	add := func(abs string) {
		if !seen[abs] {
			seen[abs] = true
			out = append(out, abs)
		}
	}
	for _, f := range o.Flagged {
		abs := f
		if !filepath.IsAbs(f) {
			abs = filepath.Join(root, filepath.FromSlash(f))
		}
		abs = filepath.Clean(abs)
		if abs == root || strings.HasPrefix(abs, root+string(filepath.Separator)) {
			add(abs)
		}
	}
	for _, a := range p.actions {
		add(a.path)
	}
	sort.Strings(out)
	return out
}

// recordFile stats (and, for a regular file, hashes) one entry without
// following a symlink.
func recordFile(abs string, now time.Time) (m1audit.ForensicFile, bool) {
	fi, err := os.Lstat(abs)
	if err != nil {
		return m1audit.ForensicFile{}, false
	}
	ff := m1audit.ForensicFile{Path: abs, ModTime: fi.ModTime().UTC(), Size: fi.Size(), Mode: fi.Mode().String(), CheckID: IDForensics, RecordedAt: now}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ff.ChangeTime = time.Unix(st.Ctim.Sec, st.Ctim.Nsec).UTC()
		ff.UID, ff.GID = int(st.Uid), int(st.Gid)
	}
	if fi.Mode().IsRegular() && fi.Size() <= maxHashBytes {
		ff.SHA256 = hashFile(abs)
	}
	return ff, true
}

// hashFile is the file's sha256 (reading it changes no time ctime shows),
// or "" when it cannot be read.
func hashFile(abs string) string {
	f, err := os.OpenFile(abs, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return ""
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(f, maxHashBytes)); err != nil {
		return ""
	}
	return hex.EncodeToString(h.Sum(nil))
}

// ensureStateDir creates dir (0700) and refuses one that is a symlink or
// writable by others.
func ensureStateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() || fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%s %w", dir, errStateDirLink)
	}
	return nil
}

// writeOnce writes data to dir/name (0600) through a temporary file and a
// hard link, which fails rather than replace an existing file: a snapshot,
// once written, is never overwritten.
func writeOnce(dir, name string, data []byte) (string, error) {
	tmp, err := os.CreateTemp(dir, ".snapshot-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	final := filepath.Join(dir, name)
	if err := os.Link(tmp.Name(), final); err != nil {
		return "", err
	}
	return final, nil
}

// existingSnapshots lists the target's snapshot files, oldest first.
func existingSnapshots(dir string) []string {
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	sort.Strings(files) // names start with the UTC time
	return files
}

// snapshotForensics records, before Apply changes anything, every entry
// the ownership fix will change plus Options.Flagged. Dry runs record
// nothing. The result names every snapshot of the target (the first one of
// an incident included) so the report's forensic appendix shows the times
// before any apply. A snapshot that cannot be written is an error, and the
// caller then leaves ownership alone: evidence first.
func snapshotForensics(t *m1audit.Target, o Options, p *ownerPlan) (m1audit.CheckResult, bool) {
	r := result(IDForensics, "Forensic evidence (stat and sha256) recorded before any change", m1audit.SeverityHigh, m1audit.StatusPass, unchanged)
	if o.DryRun {
		r.Status, r.Evidence.Detail = m1audit.StatusNotApplicable, "dry run: nothing changes, nothing recorded"
		return r, true
	}
	dir := o.snapshotDir(t)
	paths := forensicPaths(t, o, p)
	if len(paths) > 0 {
		now := time.Now().UTC()
		snap := m1audit.ForensicSnapshot{WebRoot: filepath.Clean(t.WebRoot), RecordedAt: now}
		for _, abs := range paths {
			if ff, ok := recordFile(abs, now); ok {
				snap.Files = append(snap.Files, ff)
			}
		}
		file, err := writeSnapshot(dir, now, snap)
		if err != nil {
			r.Status = m1audit.StatusError
			r.Evidence.Detail = fmt.Sprintf("forensic snapshot of %d entries not written: %v; ownership left alone so their times stay evidence", len(paths), err)
			r.Fix = "make hosts.<name>.hardening.state_dir (default " + DefaultStateDir + ") a root-owned directory the agent can write, then run again"
			return r, false
		}
		r.Evidence.Detail = fmt.Sprintf("recorded %d entries (path, size, mode, owner, mtime, ctime, sha256) before changing them: %s", len(snap.Files), file)
	}
	r.Evidence.Snapshots = existingSnapshots(dir)
	return r, true
}

// writeSnapshot writes snap once under dir, named by its time.
func writeSnapshot(dir string, now time.Time, snap m1audit.ForensicSnapshot) (string, error) {
	if err := ensureStateDir(dir); err != nil {
		return "", err
	}
	data, err := json.MarshalIndent(snap, "", "  ")
	if err != nil {
		return "", err
	}
	name := now.Format("20060102T150405.000000000Z") + ".json"
	file, err := writeOnce(dir, name, append(data, '\n'))
	if errors.Is(err, fs.ErrExist) { // same nanosecond: never replace, take another name
		file, err = writeOnce(dir, now.Format("20060102T150405.000000000Z")+"-"+randomSuffix()+".json", append(data, '\n'))
	}
	return file, err
}

// randomSuffix is a short unique name part.
func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
