package m1fix

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"

	"github.com/mageflow/mageflow/internal/m1/m1audit"
)

// SSHDropIn is the drop-in's file name: sorted early so its DenyUsers is
// read before AllowUsers lines of later files (sshd checks DenyUsers first
// anyway, and DenyUsers lines accumulate).
const SSHDropIn = "10-mageflow-m1-deny-php-user.conf"

var sshUserRE = regexp.MustCompile(`^[a-z_][a-z0-9_.-]{0,31}\$?$`)

func sshDropIn(user string) string {
	return "# managed by mageflow: the PHP-FPM user never logs in over SSH. A web\n" +
		"# shell running as this user must not turn into an interactive login.\n" +
		"DenyUsers " + user + "\n"
}

func applySSHD(ctx context.Context, t *m1audit.Target, o Options) m1audit.CheckResult {
	r := result(IDSSHDenyPHP, "sshd refuses the PHP user (DenyUsers drop-in)", m1audit.SeverityHigh, "", "")
	bin, err := findBinary(o.SSHDBinary, "/usr/sbin/sshd", "sshd")
	if err != nil {
		r.Status, r.Evidence.Detail = m1audit.StatusNotApplicable, "no sshd installed on this host: nobody can log in over SSH"
		return r
	}
	if t.PHPUser == "" {
		r.Status, r.Evidence.Detail = m1audit.StatusNeedsPerson, "PHP user unknown (no pool `user` found)"
		r.Fix = "find the PHP-FPM pool's user and add `DenyUsers <user>` to /etc/ssh/sshd_config.d/"
		return r
	}
	if !sshUserRE.MatchString(t.PHPUser) {
		r.Status, r.Evidence.Detail = m1audit.StatusNeedsPerson, fmt.Sprintf("PHP user %q is not a name sshd patterns take literally", t.PHPUser)
		return r
	}
	if t.PHPUser == "root" {
		r.Status, r.Evidence.Detail = m1audit.StatusNeedsPerson, "PHP runs as root: denying root over SSH is not this fix's call; run PHP as its own user first"
		return r
	}
	dir := orDefault(o.SSHDDropInDir, DefaultSSHDDir)
	path := filepath.Join(dir, SSHDropIn)
	r.Evidence.Files = []string{path}
	want := []byte(sshDropIn(t.PHPUser))
	old, err := readMaybe(path)
	if err != nil {
		r.Status, r.Evidence.Detail = m1audit.StatusError, err.Error()
		return r
	}
	if old != nil && string(old) == string(want) {
		r.Status, r.Evidence.Detail = m1audit.StatusPass, unchanged
		return r
	}
	r.Before = "no mageflow DenyUsers drop-in"
	if old != nil {
		r.Before = "drop-in " + path + " differs: " + strings.TrimSpace(string(old))
	}
	r.After = "DenyUsers " + t.PHPUser + " in " + path
	if o.DryRun {
		r.Status, r.Evidence.Detail = m1audit.StatusFail, "dry run: would write "+path
		return r
	}
	testArgs := append([]string{"-t"}, o.SSHDArgs...)
	r.Evidence.Command = bin + " " + strings.Join(testArgs, " ")
	if msg, err := run(ctx, bin, testArgs...); err != nil {
		r.Status, r.Evidence.Detail = m1audit.StatusError, "sshd -t rejects the config before any change: "+msg
		return r
	}
	if err := writeAtomic(path, want, 0o644, -1); err != nil {
		r.Status, r.Evidence.Detail = m1audit.StatusError, err.Error()
		return r
	}
	if msg, err := run(ctx, bin, testArgs...); err != nil {
		rerr := restore(change{path: path, old: old, mode: 0o644})
		r.Status, r.Evidence.Detail = m1audit.StatusError, fmt.Sprintf("sshd -t rejected the drop-in (%s); removed it again (error: %v)", msg, rerr)
		return r
	}
	// Does the running config include the drop-in directory? `sshd -T`
	// for the PHP user must show it denied.
	tArgs := append(append([]string{"-T"}, o.SSHDArgs...), "-C", "user="+t.PHPUser+",host=localhost,addr=127.0.0.1")
	if out, err := run(ctx, bin, tArgs...); err != nil || !deniesUser(out, t.PHPUser) {
		rerr := restore(change{path: path, old: old, mode: 0o644})
		r.Status = m1audit.StatusNeedsPerson
		r.Evidence.Detail = fmt.Sprintf("sshd does not read %s (no Include of %s/*.conf in sshd_config?); drop-in removed again (error: %v)", path, dir, rerr)
		r.Fix = fmt.Sprintf("add `Include %s/*.conf` at the top of sshd_config, or `DenyUsers %s` to it, then reload sshd", dir, t.PHPUser)
		r.Before, r.After = "", ""
		return r
	}
	if err := reloadSSHD(ctx, o); err != nil {
		r.Status, r.Evidence.Detail = m1audit.StatusError, fmt.Sprintf("drop-in written and sshd -t passed, but the reload failed: %v (reload sshd by hand)", err)
		return r
	}
	r.Status, r.Evidence.Detail = m1audit.StatusFixed, "drop-in written, sshd -t passed, sshd -T -C user="+t.PHPUser+" shows the user denied, sshd reloaded"
	return r
}

// deniesUser reads `sshd -T` output for a DenyUsers entry naming user.
func deniesUser(out, user string) bool {
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && strings.EqualFold(f[0], "denyusers") {
			for _, u := range f[1:] {
				if u == user {
					return true
				}
			}
		}
	}
	return false
}

// reloadSSHD reloads sshd: the caller's function, else SIGHUP to
// /run/sshd.pid when sshd runs (a stopped sshd reads the drop-in when it
// starts).
func reloadSSHD(ctx context.Context, o Options) error {
	if o.ReloadSSHD != nil {
		return o.ReloadSSHD(ctx)
	}
	if _, err := os.Stat("/run/sshd.pid"); err != nil {
		return nil
	}
	_, err := signalPIDFile("/run/sshd.pid", syscall.SIGHUP)
	return err
}
