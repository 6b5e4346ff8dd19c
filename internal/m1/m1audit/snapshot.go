package m1audit

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
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
