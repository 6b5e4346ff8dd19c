package main

import (
	"bytes"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
)

// cpuTicks is CPU time (user + system, in clock ticks) per process, read
// from /proc/<pid>/stat, grouped by role.
type cpuTicks map[int]procCPU

type procCPU struct {
	group string
	ticks int64
}

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100

// cpuOf snapshots the server's processes (the tree under root) and this
// process (the control worker and every agent of the benchmark).
func cpuOf(root int) cpuTicks {
	c := cpuTicks{}
	if root != 0 {
		for _, p := range tree(root) {
			c.add(p.pid, groupOf(p))
		}
	}
	c.add(os.Getpid(), "workers+agents (benchmark process)")
	return c
}

func (c cpuTicks) add(pid int, group string) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return
	}
	end := bytes.LastIndexByte(b, ')')
	if end < 0 {
		return
	}
	// Fields after "(comm)": state(3) … utime(14) stime(15), 1-based.
	f := strings.Fields(string(b[end+1:]))
	if len(f) < 13 {
		return
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	c[pid] = procCPU{group: group, ticks: u + s}
}

// groupOf names a server process's role: PostgreSQL, a Temporal service
// (from its --service argument), or the rest (dev server, supervisor).
func groupOf(p proc) string {
	if strings.HasPrefix(p.comm, "postgres") {
		return "PostgreSQL"
	}
	cmd, _ := os.ReadFile("/proc/" + strconv.Itoa(p.pid) + "/cmdline")
	args := strings.Split(string(cmd), "\x00")
	for i, a := range args {
		if a == "--service" && i+1 < len(args) {
			return "temporal " + args[i+1]
		}
	}
	return p.comm
}

// cpuSince is CPU seconds per group between two snapshots (processes that
// started in between count whole; ones that ended are missing).
func cpuSince(before, after cpuTicks) map[string]float64 {
	out := map[string]float64{}
	for pid, a := range after {
		d := a.ticks - before[pid].ticks
		if b, ok := before[pid]; ok && b.group != a.group {
			d = a.ticks
		}
		out[a.group] += float64(d) / clockTicks
	}
	return out
}

// formatCPU prints CPU seconds per group, largest first.
func formatCPU(m map[string]float64) string {
	type kv struct {
		k string
		v float64
	}
	var s []kv
	var total float64
	for k, v := range m {
		s = append(s, kv{k, v})
		total += v
	}
	sort.Slice(s, func(i, j int) bool { return s[i].v > s[j].v })
	var parts []string
	for _, e := range s {
		parts = append(parts, fmt.Sprintf("%s %.1f s", e.k, e.v))
	}
	return fmt.Sprintf("%.1f CPU s: %s", total, strings.Join(parts, ", "))
}
