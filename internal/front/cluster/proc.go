package cluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// stopGrace is how long a process gets after SIGTERM before SIGKILL.
const stopGrace = 20 * time.Second

// Proc is one supervised child process: its own process group (Ctrl-C in
// the terminal reaches the supervisor only, which stops children in
// order), its output appended to <log dir>/<name>.log.
type Proc struct {
	Name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	log  *os.File
}

// StartProc starts cmd as Name with its output in logDir/Name.log.
func StartProc(name, logDir string, cmd *exec.Cmd) (*Proc, error) {
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	lf, err := os.OpenFile(filepath.Join(logDir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return nil, fmt.Errorf("log of %s: %w", name, err)
	}
	fmt.Fprintf(lf, "---- %s start: %s\n", time.Now().UTC().Format(time.RFC3339), cmd.String())
	cmd.Stdout, cmd.Stderr = lf, lf
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, cmd: cmd, done: make(chan struct{}), log: lf}
	go func() {
		p.err = cmd.Wait()
		lf.Close()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id (and process group id).
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the exit status once Done is closed.
func (p *Proc) Err() error {
	<-p.done
	return p.err
}

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM to the process group, waits up to grace and then
// SIGKILLs it. Stopping an exited process is a no-op.
func (p *Proc) Stop(grace time.Duration) error {
	if p == nil || p.Exited() {
		return nil
	}
	if err := syscall.Kill(-p.Pid(), syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
	<-p.done
	return fmt.Errorf("%s did not stop within %s: killed", p.Name, grace)
}

// Kill SIGKILLs the process group at once (fault tests) and waits.
func (p *Proc) Kill() {
	if p == nil || p.Exited() {
		return
	}
	_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
	<-p.done
}

// reapGroup SIGKILLs what is left of the exited process p's group (its
// children) and waits until none is left.
func reapGroup(p *Proc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if err := syscall.Kill(-p.Pid(), syscall.SIGKILL); errors.Is(err, syscall.ESRCH) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes of %s's group %d still run after %s", p.Name, p.Pid(), timeout)
		}
		time.Sleep(50 * time.Millisecond) // waiting for the kernel to reap them
	}
}
