package artifact

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// smallFile is the largest file Extract hands to its writer pool; larger
// ones are streamed by the reading goroutine itself, so memory stays
// bounded by poolQueue small files (16 MiB). Nearly every file of a
// Magento release is smaller.
const smallFile = 256 << 10

// poolQueue is how many read files may wait for a writer.
const poolQueue = 64

// writerPool writes small files while the reading goroutine decompresses
// and parses the next entries. Creating a file costs five syscalls
// (openat, write, fchmod, utimensat, close), which on a 60,000-file
// release is where the time goes, not decompression: several writers
// keep the file system busy while one of them waits on the journal.
// Each worker has its own dirStack; concurrent creation of the same
// parent directory is fine (EEXIST is expected), and every guarantee of
// dirStack holds per worker.
type writerPool struct {
	ctx  context.Context
	jobs chan fileJob
	wg   sync.WaitGroup

	mu  sync.Mutex
	err error
}

type fileJob struct {
	name, hdrName string
	perm          uint32
	mtime         time.Time
	data          []byte
}

func poolWorkers() int { return min(4, max(2, runtime.GOMAXPROCS(0))) }

func startWriterPool(ctx context.Context, dir string) *writerPool {
	p := &writerPool{ctx: ctx, jobs: make(chan fileJob, poolQueue)}
	for range poolWorkers() {
		p.wg.Go(func() {
			s, err := openDirStack(dir)
			if err != nil {
				p.fail(err)
			} else {
				defer s.close()
			}
			for j := range p.jobs {
				if err == nil && p.failed() == nil && ctx.Err() == nil {
					p.fail(writeSmall(s, j))
				}
			}
		})
	}
	return p
}

func (p *writerPool) fail(err error) {
	if err == nil {
		return
	}
	p.mu.Lock()
	if p.err == nil {
		p.err = err
	}
	p.mu.Unlock()
}

func (p *writerPool) failed() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// submit queues j; it returns the pool's first error, if any, so the
// reader stops early.
func (p *writerPool) submit(j fileJob) error {
	if err := p.failed(); err != nil {
		return err
	}
	select {
	case p.jobs <- j:
		return nil
	case <-p.ctx.Done():
		return p.ctx.Err()
	}
}

// wait lets the workers finish and returns the first error.
func (p *writerPool) wait() error {
	close(p.jobs)
	p.wg.Wait()
	if err := p.ctx.Err(); err != nil {
		return err
	}
	return p.failed()
}

func writeSmall(s *dirStack, j fileJob) error {
	fd, err := s.createFile(j.name)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return unsafeEntry(j.hdrName, "duplicate entry")
		}
		return fmt.Errorf("artifact: create %s: %w", j.name, err)
	}
	if err := writeAll(fd, j.data); err != nil {
		_ = unix.Close(fd)
		return fmt.Errorf("artifact: write %s: %w", j.name, err)
	}
	return s.finishFile(fd, j.name, j.perm, j.mtime)
}
