package artifact

// Verified inodes: a delta hashes every unchanged base file before it
// keeps or links it (about half of a steady-state delta's CPU on a
// Magento-sized release). VerifiedInodes lets it skip reading a file that
// was hashed earlier, off the critical path (the agent hashes current in
// the background after a deploy), when nothing can have changed the file
// since:
//
//   - only inodes that root alone can write are remembered: owned by the
//     agent's uid, no group or other write bit, no POSIX access ACL.
//     Nobody else can open them for writing, so no writable mapping of
//     another user can change them without a write fault;
//   - any change of content, mode, owner or ACL sets the inode's ctime to
//     the current time, and no system call sets a ctime back. An entry
//     holds dev, inode, size, mtime and ctime, and is used only while all
//     five are the same;
//   - an entry is recorded only when the file's ctime is older than the
//     moment its hashing began by more than racyMargin (far more than the
//     kernel's coarse clock granule), so a write during or after the
//     hashing always gives a different ctime (git's "racy clean" rule);
//   - only on file systems whose ctime the kernel keeps itself (ext4,
//     xfs, btrfs, tmpfs), not on network file systems;
//   - it lives in the agent's memory only: a restart starts empty.
//
// A hard link or unlink also sets the ctime (the link count changed), so
// entries recorded before a deploy's links and Prune's removals never
// match: the agent records after those (spare.go in activities/agent).

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// RacyMargin: a file changed less than this before its hashing began is
// not remembered.
const RacyMargin = time.Second

const racyMargin = RacyMargin

// maxVerifiedInodes bounds the memory (about 150 bytes an entry); past
// it, the oldest generation is dropped.
const maxVerifiedInodes = 500_000

// VerifiedInodes remembers the sha256 of files hashed earlier. The zero
// value is ready; methods may be called concurrently.
type VerifiedInodes struct {
	mu       sync.Mutex
	cur, old map[inodeKey]string
}

type inodeKey struct {
	dev, ino     uint64
	size         int64
	mtime, ctime unix.Timespec
}

func keyOf(st *unix.Stat_t) inodeKey {
	return inodeKey{dev: st.Dev, ino: st.Ino, size: st.Size, mtime: st.Mtim, ctime: st.Ctim}
}

// rootOnly reports whether only root and the agent's uid can write the
// inode st (ACLs are checked when recording).
func rootOnly(st *unix.Stat_t) bool {
	return st.Mode&unix.S_IFMT == unix.S_IFREG && st.Uid == euid && st.Mode&0o022 == 0
}

// euid is the agent's uid (a system call per file otherwise).
var euid = uint32(os.Geteuid())

// lookup returns the recorded sha256 of the inode st, unchanged since.
func (v *VerifiedInodes) lookup(st *unix.Stat_t) (string, bool) {
	if v == nil || !rootOnly(st) {
		return "", false
	}
	k := keyOf(st)
	v.mu.Lock()
	defer v.mu.Unlock()
	sum, ok := v.cur[k]
	if !ok {
		sum, ok = v.old[k]
	}
	return sum, ok
}

func (v *VerifiedInodes) record(st *unix.Stat_t, sum string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cur == nil || len(v.cur) >= maxVerifiedInodes/2 {
		v.old, v.cur = v.cur, make(map[inodeKey]string)
	}
	v.cur[keyOf(st)] = sum
}

// Len is how many inodes are remembered.
func (v *VerifiedInodes) Len() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.cur) + len(v.old)
}

// trustedFS: file systems whose ctime is kept by this kernel.
var trustedFS = map[int64]bool{
	unix.EXT4_SUPER_MAGIC: true, unix.XFS_SUPER_MAGIC: true, unix.BTRFS_SUPER_MAGIC: true, unix.TMPFS_MAGIC: true,
}

// HashTree hashes every regular file below dir (a release) that only
// root can write and records it; it never follows a link nor crosses a
// mount point. It returns how many files it recorded.
func (v *VerifiedInodes) HashTree(ctx context.Context, dir string) (int, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	var sfs unix.Statfs_t
	var st unix.Stat_t
	if err := unix.Fstatfs(fd, &sfs); err != nil {
		return 0, err
	}
	if !trustedFS[int64(sfs.Type)] {
		return 0, nil
	}
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, err
	}
	h := &treeHasher{ctx: ctx, v: v, dev: st.Dev, buf: make([]byte, 256<<10)}
	err = h.dir(fd, dir, 0)
	return h.n, err
}

type treeHasher struct {
	ctx context.Context
	v   *VerifiedInodes
	dev uint64
	buf []byte
	n   int
}

func (h *treeHasher) dir(fd int, p string, depth int) error {
	if err := h.ctx.Err(); err != nil {
		return err
	}
	if depth > maxRecycleDepth {
		return nil
	}
	ents, err := readDirents(fd, h.buf)
	if err != nil {
		return err
	}
	for _, e := range ents {
		switch e.typ {
		case unix.DT_DIR:
			cfd, err := unix.Openat(fd, e.name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				continue
			}
			var st unix.Stat_t
			if unix.Fstat(cfd, &st) == nil && st.Dev == h.dev {
				err = h.dir(cfd, filepath.Join(p, e.name), depth+1)
			}
			_ = unix.Close(cfd)
			if err != nil {
				return err
			}
		case unix.DT_REG:
			h.file(fd, e.name)
		}
	}
	return nil
}

// file hashes one file and records it when it qualifies.
func (h *treeHasher) file(dirfd int, name string) {
	began := time.Now()
	fd, err := openBaseFile(dirfd, name)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || !rootOnly(&st) || st.Dev != h.dev {
		return
	}
	if time.Unix(st.Ctim.Unix()).After(began.Add(-racyMargin)) {
		return // changed too recently to tell a later write apart
	}
	if n, err := unix.Fgetxattr(fd, "system.posix_acl_access", nil); err == nil && n > 0 || err != nil && !errors.Is(err, unix.ENODATA) && !errors.Is(err, unix.EOPNOTSUPP) {
		return
	}
	sum := sha256.New()
	var off int64
	for off < st.Size {
		n, err := unix.Pread(fd, h.buf[:min(int64(len(h.buf)), st.Size-off)], off)
		if err != nil || n == 0 {
			return
		}
		sum.Write(h.buf[:n])
		off += int64(n)
	}
	var after unix.Stat_t
	if unix.Fstat(fd, &after) != nil || keyOf(&after) != keyOf(&st) {
		return
	}
	h.v.record(&st, hex.EncodeToString(sum.Sum(nil)))
	h.n++
}
