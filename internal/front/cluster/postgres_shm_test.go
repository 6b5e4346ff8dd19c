package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// A SIGKILLed postmaster's backends hold its System V segment until they
// notice and exit; the restart must wait for them (a new postmaster refuses
// to start meanwhile), and not wait when nobody holds it.
func TestWaitSharedMemoryFree(t *testing.T) {
	id, err := unix.SysvShmGet(unix.IPC_PRIVATE, 4096, unix.IPC_CREAT|0o600)
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = unix.SysvShmCtl(id, unix.IPC_RMID, nil) })
	pg := &postgres{dataDir: t.TempDir()}
	pid := fmt.Sprintf("4242\n%s\n1700000000\n5434\n\n127.0.0.1\n  10070404 %10d\nready   \n", pg.dataDir, id)
	require.NoError(t, os.WriteFile(filepath.Join(pg.dataDir, "postmaster.pid"), []byte(pid), 0o600))

	require.NoError(t, pg.waitSharedMemoryFree(time.Second), "nobody attached")

	mem, err := unix.SysvShmAttach(id, 0, 0) // a backend still running
	require.NoError(t, err)
	err = pg.waitSharedMemoryFree(300 * time.Millisecond)
	require.ErrorContains(t, err, "still hold its shared memory")

	go func() {
		time.Sleep(400 * time.Millisecond)
		_ = unix.SysvShmDetach(mem) // the backend exits
	}()
	start := time.Now()
	require.NoError(t, pg.waitSharedMemoryFree(10*time.Second))
	require.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond, "returned before the last process let go")

	_, err = unix.SysvShmCtl(id, unix.IPC_RMID, nil)
	require.NoError(t, err)
	require.NoError(t, pg.waitSharedMemoryFree(time.Second), "segment removed")
	require.NoError(t, (&postgres{dataDir: t.TempDir()}).waitSharedMemoryFree(time.Second), "no postmaster.pid")
}
