package hostops

// The recycle slot: Prune sets the newest release it retires aside under
// releases/.recycle-<id> instead of deleting it, and the next delta
// prepare takes its directory tree over (artifact.DeltaOptions.Recycle),
// which saves creating ~30,000 directories. At most one slot exists.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// RecyclePrefix starts the name of the recycle slot under releases/.
const RecyclePrefix = ".recycle-"

// IsRecycleSlot reports whether a name under releases/ is the slot.
func IsRecycleSlot(name string) bool { return strings.HasPrefix(name, RecyclePrefix) }

// RecycleSlot returns the retired release id held in the slot, or "".
func RecycleSlot(releasesDir string) (string, error) {
	ents, err := os.ReadDir(releasesDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	for _, e := range ents {
		if IsRecycleSlot(e.Name()) && e.Type().IsDir() {
			return strings.TrimPrefix(e.Name(), RecyclePrefix), nil
		}
	}
	return "", nil
}

// SetAside moves the release id into the recycle slot, removing (never
// following links) whatever the slot held before.
func SetAside(releasesDir, id string) error {
	ents, err := os.ReadDir(releasesDir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if IsRecycleSlot(e.Name()) {
			if err := RemoveTree(releasesDir, e.Name()); err != nil {
				return fmt.Errorf("empty the recycle slot: %w", err)
			}
		}
	}
	if err := os.Rename(filepath.Join(releasesDir, id), filepath.Join(releasesDir, RecyclePrefix+id)); err != nil {
		return err
	}
	SyncDir(releasesDir)
	return nil
}

// SlotResembles reports whether the tree in the recycle slot (held for
// release slotID) looks like release id's: their files named indexName
// (the artifact's per-file index, one line per entry) differ in size by
// less than a fifth. A tree that does not (the slot still holds a small
// release retired before a Magento-sized one) saves the next delta
// little and is better replaced by a spare of id.
func SlotResembles(releasesDir, slotID, id, indexName string) bool {
	a, errA := os.Lstat(filepath.Join(releasesDir, RecyclePrefix+slotID, indexName))
	b, errB := os.Lstat(filepath.Join(releasesDir, id, indexName))
	if errA != nil || errB != nil || !a.Mode().IsRegular() || !b.Mode().IsRegular() {
		return false
	}
	return 5*a.Size() >= 4*b.Size() && 4*a.Size() <= 5*b.Size()
}

// HasRegularFile reports whether release id holds a regular file at
// name (a path relative to the release), without following a symlink
// at name itself.
func HasRegularFile(releasesDir, id, name string) bool {
	fi, err := os.Lstat(filepath.Join(releasesDir, id, name))
	return err == nil && fi.Mode().IsRegular()
}

// InUse reports a process that uses dir or anything below it: as its
// working or root directory, through an open file descriptor or a mapped
// file. Only the processes this one can see are looked at (its PID
// namespace, with the permissions it has: root sees all of them).
func InUse(dir string) (string, bool) {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return "", false
	}
	under := func(p string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }
	self := strconv.Itoa(os.Getpid())
	for _, pe := range procs {
		pid := pe.Name()
		if pid == self || pid[0] < '0' || pid[0] > '9' {
			continue
		}
		if what := procUses(filepath.Join("/proc", pid), under); what != "" {
			return fmt.Sprintf("process %s (%s) has %s", pid, procComm(pid), what), true
		}
	}
	return "", false
}

// procUses returns how the process at /proc/<pid> uses a path under(),
// or "".
func procUses(proc string, under func(string) bool) string {
	for _, l := range []string{"cwd", "root"} {
		if t, err := os.Readlink(filepath.Join(proc, l)); err == nil && under(t) {
			return "its " + l + " at " + t
		}
	}
	if fds, err := os.ReadDir(filepath.Join(proc, "fd")); err == nil {
		for _, fd := range fds {
			if t, err := os.Readlink(filepath.Join(proc, "fd", fd.Name())); err == nil && under(t) {
				return "open " + t
			}
		}
	}
	f, err := os.Open(filepath.Join(proc, "maps"))
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if i := bytes.IndexByte(sc.Bytes(), '/'); i >= 0 && under(string(sc.Bytes()[i:])) {
			return "mapped " + string(sc.Bytes()[i:])
		}
	}
	return ""
}

func procComm(pid string) string {
	b, _ := os.ReadFile(filepath.Join("/proc", pid, "comm"))
	return strings.TrimSpace(string(b))
}
