package main

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// proc is one line of /proc: pid, parent and command name.
type proc struct {
	pid, ppid int
	comm      string
}

// procs lists every process.
func procs() []proc {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var ps []proc
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid …; comm may hold spaces and parentheses.
		open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
		if open < 0 || end < open {
			continue
		}
		f := strings.Fields(string(b[end+1:]))
		if len(f) < 2 {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(d))
		ppid, _ := strconv.Atoi(f[1])
		ps = append(ps, proc{pid: pid, ppid: ppid, comm: string(b[open+1 : end])})
	}
	return ps
}

// childNamed is the first child of parent whose command is comm (0: none).
func childNamed(parent int, comm string) int {
	for _, p := range procs() {
		if p.ppid == parent && p.comm == comm {
			return p.pid
		}
	}
	return 0
}

// tree is root and its descendants.
func tree(root int) []proc {
	ps := procs()
	in := map[int]bool{root: true}
	var out []proc
	for changed := true; changed; {
		changed = false
		for _, p := range ps {
			if (in[p.ppid] || p.pid == root) && !contains(out, p.pid) {
				in[p.pid] = true
				out = append(out, p)
				changed = true
			}
		}
	}
	return out
}

func contains(ps []proc, pid int) bool {
	for _, p := range ps {
		if p.pid == pid {
			return true
		}
	}
	return false
}

// vmRSS is a process's VmRSS in bytes.
func vmRSS(pid int) int64 { return procKB(pid, "status", "VmRSS:") }

// pss is a process's proportional set size in bytes: shared pages (like
// PostgreSQL's shared_buffers) divided among the processes mapping them,
// so a sum over processes does not count them many times as VmRSS does.
func pss(pid int) int64 { return procKB(pid, "smaps_rollup", "Pss:") }

// procKB reads the "<field> N kB" line of /proc/<pid>/<file>, in bytes.
func procKB(pid int, file, field string) int64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/" + file)
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// rssPeak samples the tree under root every half second and keeps the
// peak sums of PostgreSQL's processes and of everything else (Temporal;
// the cluster supervisor, bin/mageflow, is counted with Temporal).
type rssPeak struct {
	mu               sync.Mutex
	postgres, server int64
	pgPSS, serverPSS int64
	stop             chan struct{}
	done             chan struct{}
}

func sampleRSS(root int) *rssPeak {
	r := &rssPeak{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for i := 0; ; i++ {
			r.sample(root, i%pssEvery == 0)
			select {
			case <-r.stop:
				return
			case <-t.C:
			}
		}
	}()
	return r
}

// pssEvery: PSS is read on every pssEvery-th sample only. Reading
// smaps_rollup walks a process's page tables under its mmap lock; for the
// cluster's ~100 PostgreSQL backends every half second it took 4.6 s of
// this process's CPU in a 28 s deploy phase (and slowed the processes
// read), against one dev server process: it skewed the comparison.
const pssEvery = 10

func (r *rssPeak) sample(root int, withPSS bool) {
	if root == 0 {
		return
	}
	var pg, srv, pgP, srvP int64
	pssOf := func(pid int) int64 {
		if !withPSS {
			return 0
		}
		return pss(pid)
	}
	for _, p := range tree(root) {
		if strings.HasPrefix(p.comm, "postgres") {
			pg, pgP = pg+vmRSS(p.pid), pgP+pssOf(p.pid)
		} else {
			srv, srvP = srv+vmRSS(p.pid), srvP+pssOf(p.pid)
		}
	}
	r.mu.Lock()
	r.postgres, r.server = max(r.postgres, pg), max(r.server, srv)
	r.pgPSS, r.serverPSS = max(r.pgPSS, pgP), max(r.serverPSS, srvP)
	r.mu.Unlock()
}

// end stops sampling and returns the peaks.
func (r *rssPeak) end() memory {
	close(r.stop)
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	return memory{postgres: r.postgres, server: r.server, pgPSS: r.pgPSS, serverPSS: r.serverPSS}
}

// memory is the peak memory of a server's processes, in bytes.
type memory struct {
	postgres, server int64 // sum of VmRSS
	pgPSS, serverPSS int64 // sum of Pss
}
