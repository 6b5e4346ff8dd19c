package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// describeFS says what file system dir is on and, for ext4, whether it has
// a journal. It matters for every figure here: without a journal, ext4's
// inode allocator skips every inode deleted in the last 60 s (360 s while
// its inode-table block is dirty), reading each one's table block, so
// right after a run deletes a 90,000-inode tree each mkdir and create
// scans past all of them (docs/benchmarks.md, "Delta deploys").
func describeFS(dir string) string {
	var fs unix.Statfs_t
	var st unix.Stat_t
	if unix.Statfs(dir, &fs) != nil || unix.Stat(dir, &st) != nil {
		return "unknown file system"
	}
	if fs.Type != unix.EXT4_SUPER_MAGIC {
		return fmt.Sprintf("file system type %#x", fs.Type)
	}
	dev, err := os.Readlink(fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev)))
	if err != nil {
		return "ext4 (journal unknown)"
	}
	name := filepath.Base(dev)
	journals, _ := filepath.Glob("/proc/fs/jbd2/" + name + "-*")
	if len(journals) == 0 {
		return "ext4 on " + name + " WITHOUT a journal (inode allocation skips recently deleted inodes: absolute times depend on what earlier runs deleted)"
	}
	return "ext4 on " + name + " with a journal (" + strings.TrimPrefix(filepath.Base(journals[0]), name+"-") + ")"
}
