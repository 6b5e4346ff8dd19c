package m1audit

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// ForensicSnapshot is the evidence --apply records before it changes
// anything under the web root (m1fix writes it once, 0600, under the
// host's state directory, and never replaces it): the stat and hash of
// every entry it is about to chown or chmod, because that change resets
// the inode change time the forensic appendix relies on.
type ForensicSnapshot struct {
	WebRoot    string         `json:"web_root"`
	RecordedAt time.Time      `json:"recorded_at"`
	Files      []ForensicFile `json:"files"`
}

// maxSnapshotBytes bounds one snapshot file read back by Finalize.
const maxSnapshotBytes = 256 << 20

// ReadForensicSnapshot reads a snapshot file without following a symlink.
func ReadForensicSnapshot(path string) (*ForensicSnapshot, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSnapshotBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxSnapshotBytes {
		return nil, fmt.Errorf("forensic snapshot %s is larger than %d bytes", path, maxSnapshotBytes)
	}
	var s ForensicSnapshot
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("forensic snapshot %s: %w", path, err)
	}
	return &s, nil
}

// snapshotRecords indexes, by absolute path, the earliest record of every
// snapshot the results name (Evidence.Snapshots): the state before the
// first apply of an incident wins over any later one.
func snapshotRecords(results []CheckResult) map[string]ForensicFile {
	out := map[string]ForensicFile{}
	for _, c := range results {
		for _, p := range c.Evidence.Snapshots {
			s, err := ReadForensicSnapshot(p)
			if err != nil {
				continue // gone or unreadable: Finalize falls back to lstat
			}
			for _, f := range s.Files {
				if old, ok := out[f.Path]; !ok || f.RecordedAt.Before(old.RecordedAt) {
					out[f.Path] = f
				}
			}
		}
	}
	return out
}

// forensicFiles are the files the compromise results name, with their
// times: from the earliest snapshot holding them (the state before
// --apply), else from lstat now.
func forensicFiles(r *Report) []ForensicFile {
	var out []ForensicFile
	seen := map[string]bool{}
	before := snapshotRecords(r.Results)
	for _, c := range r.Results {
		if !c.Compromise {
			continue
		}
		var paths []string
		for _, fd := range c.Evidence.Findings {
			paths = append(paths, fd.Path)
		}
		paths = append(paths, c.Evidence.Files...)
		for _, p := range paths {
			abs := p
			if !filepath.IsAbs(p) {
				if r.Target.WebRoot == "" {
					continue
				}
				abs = filepath.Join(r.Target.WebRoot, filepath.FromSlash(p))
			}
			if seen[abs] {
				continue
			}
			ff, ok := before[abs]
			if !ok {
				if ff, ok = statForensic(abs); !ok {
					continue // a database row name, or a file already gone
				}
			}
			seen[abs] = true
			ff.CheckID = c.ID
			out = append(out, ff)
		}
	}
	return out
}

// statForensic records abs as it is now, without following a symlink.
func statForensic(abs string) (ForensicFile, bool) {
	fi, err := os.Lstat(abs)
	if err != nil {
		return ForensicFile{}, false
	}
	ff := ForensicFile{Path: abs, ModTime: fi.ModTime().UTC(), Size: fi.Size(), Mode: fi.Mode().String(), RecordedAt: time.Now().UTC()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ff.ChangeTime = time.Unix(st.Ctim.Sec, st.Ctim.Nsec).UTC()
		ff.UID, ff.GID = int(st.Uid), int(st.Gid)
	}
	return ff, true
}
