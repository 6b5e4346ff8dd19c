package m1audit

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

// passwdEntry is one /etc/passwd line.
type passwdEntry struct {
	Name, UID, GID, Home, Shell string
}

// lookupPasswd finds user via getent (NSS: LDAP users too) or a passwd file.
func lookupPasswd(ctx context.Context, name, file string) (passwdEntry, string, error) {
	var data []byte
	src := file
	if file == "" {
		out, err := exec.CommandContext(ctx, "getent", "passwd", name).Output()
		if err == nil {
			data, src = out, "getent passwd "+name
		} else {
			file, src = "/etc/passwd", "/etc/passwd"
		}
	}
	if data == nil {
		b, err := os.ReadFile(file)
		if err != nil {
			return passwdEntry{}, src, fmt.Errorf("read %s: %w", file, err)
		}
		data = b
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) >= 7 && f[0] == name {
			return passwdEntry{Name: f[0], UID: f[2], GID: f[3], Home: f[5], Shell: f[6]}, src, nil
		}
	}
	return passwdEntry{}, src, fmt.Errorf("user %q not found in %s", name, src)
}

// groupsOf returns the names of the groups user belongs to: the primary
// group (by gid) and every group listing the user.
func groupsOf(user, gid, groupFile string) []string {
	if groupFile == "" {
		groupFile = "/etc/group"
	}
	data, err := os.ReadFile(groupFile)
	if err != nil {
		return nil
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) < 4 {
			continue
		}
		member := f[2] == gid
		for _, m := range strings.Split(f[3], ",") {
			if m == user {
				member = true
			}
		}
		if member {
			out = append(out, f[0])
		}
	}
	return out
}

var noLoginShells = map[string]bool{
	"/usr/sbin/nologin": true, "/sbin/nologin": true, "/bin/false": true, "/usr/bin/false": true,
	"/usr/bin/nologin": true, "/bin/nologin": true,
}

func sshChecks(ctx context.Context, t *Target, o AuditOptions) []CheckResult {
	shell, keys, daemon := newResult(CheckPHPUserShell), newResult(CheckPHPUserKeys), newResult(CheckSSHDDenied)
	if t.PHPUser == "" {
		err := fmt.Errorf("PHP-FPM pool user unknown: %s", strings.Join(t.Notes, "; "))
		return []CheckResult{errResult(shell, err), errResult(keys, err), errResult(daemon, err)}
	}
	pw, src, err := lookupPasswd(ctx, t.PHPUser, o.PasswdFile)
	shell.Evidence.Command = src
	if err != nil {
		return []CheckResult{errResult(shell, err), errResult(keys, err), errResult(daemon, err)}
	}
	shell.Evidence.Detail = fmt.Sprintf("%s has shell %s", pw.Name, pw.Shell)
	if noLoginShells[pw.Shell] {
		shell.Status = StatusPass
	} else {
		shell.Status = StatusFail
		shell.Fix = fmt.Sprintf("usermod -s /usr/sbin/nologin %s: the PHP user needs no shell; give people their own accounts.", pw.Name)
	}

	// sshd: the effective settings for this user, Match blocks applied.
	sshdSettings, sshdErr := sshdEffective(ctx, t.PHPUser, o)
	daemon.Evidence.Command = sshdCommand(t.PHPUser, o)

	// authorized_keys: the files sshd would read (AuthorizedKeysFile with %h,
	// %u, %%), or ~/.ssh/authorized_keys{,2} when sshd cannot tell.
	patterns := []string{".ssh/authorized_keys", ".ssh/authorized_keys2"}
	if v := sshdSettings["authorizedkeysfile"]; len(v) > 0 {
		patterns = v
	}
	var found []string
	for _, p := range patterns {
		if p == "none" {
			continue
		}
		p = strings.NewReplacer("%%", "%", "%h", pw.Home, "%u", pw.Name, "%U", pw.UID).Replace(p)
		if !path.IsAbs(p) {
			p = filepath.Join(pw.Home, p)
		}
		keys.Evidence.Files = append(keys.Evidence.Files, p)
		if fi, err := os.Stat(p); err == nil && fi.Size() > 0 {
			found = append(found, p)
		}
	}
	if len(found) > 0 {
		keys.Status = StatusFail
		keys.Evidence.Detail = "authorized keys present: " + strings.Join(found, ", ")
		keys.Fix = "Remove the PHP user's authorized_keys (after checking whose keys they are: an unknown key is a backdoor); grant temporary access through the hardening workflow, which reverts it."
	} else {
		keys.Status = StatusPass
		keys.Evidence.Detail = "no authorized keys file for " + pw.Name
	}

	var notFound *exec.Error
	switch {
	case sshdErr != nil && errors.As(sshdErr, &notFound):
		daemon.Status = StatusNotApplicable
		daemon.Evidence.Detail = "sshd not installed: " + sshdErr.Error()
	case sshdErr != nil:
		daemon = errResult(daemon, sshdErr)
		daemon.Fix = "Run the audit as root on the host where sshd runs (sshd -T needs the host keys), or pass the sshd configuration."
	default:
		groups := groupsOf(pw.Name, pw.GID, o.GroupFile)
		denied, why := sshdDenies(sshdSettings, pw.Name, groups)
		daemon.Evidence.Detail = why
		if denied {
			daemon.Status = StatusPass
		} else {
			daemon.Status = StatusFail
			daemon.Fix = fmt.Sprintf("Add \"DenyUsers %s\" to an sshd_config.d drop-in and run sshd -t before reloading: a nologin shell still allows key-authenticated tunnels.", pw.Name)
		}
	}
	return []CheckResult{shell, keys, daemon}
}

func sshdArgs(user string, o AuditOptions) []string {
	args := []string{"-T", "-C", fmt.Sprintf("user=%s,host=localhost,addr=127.0.0.1", user)}
	if o.SSHDConfig != "" {
		args = append(args, "-f", o.SSHDConfig)
	}
	for _, h := range o.SSHDHostKeys {
		args = append(args, "-h", h)
	}
	return args
}

func sshdBinary(o AuditOptions) string {
	if o.SSHDBinary != "" {
		return o.SSHDBinary
	}
	return sbin("sshd")
}

func sshdCommand(user string, o AuditOptions) string {
	return sshdBinary(o) + " " + strings.Join(sshdArgs(user, o), " ")
}

// sshdEffective runs sshd -T for the user and returns its keyword -> values.
func sshdEffective(ctx context.Context, user string, o AuditOptions) (map[string][]string, error) {
	bin := sshdBinary(o)
	if _, err := exec.LookPath(bin); err != nil {
		return nil, &exec.Error{Name: bin, Err: exec.ErrNotFound}
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, sshdArgs(user, o)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %v: %s", sshdCommand(user, o), err, strings.TrimSpace(stderr.String()))
	}
	return parseSSHDT(stdout.String()), nil
}

// parseSSHDT reads `sshd -T` output: lower-case keyword, then values.
// Keywords printed several times (denyusers with many entries on some
// versions) accumulate.
func parseSSHDT(out string) map[string][]string {
	m := map[string][]string{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		k := strings.ToLower(f[0])
		m[k] = append(m[k], f[1:]...)
	}
	return m
}

// sshdDenies applies sshd's order: DenyUsers, AllowUsers, DenyGroups,
// AllowGroups. A USER@HOST pattern denies only when its host part matches
// any host ("*"), since an attacker need not come from the host tested;
// for Allow lists any entry matching the user counts as allowing.
func sshdDenies(s map[string][]string, user string, groups []string) (bool, string) {
	userMatch := func(pat string, deny bool) bool {
		u, host, hasHost := strings.Cut(pat, "@")
		if !sshMatchList(u, user) {
			return false
		}
		if hasHost && deny {
			return host == "*"
		}
		return true
	}
	for _, p := range s["denyusers"] {
		if userMatch(p, true) {
			return true, fmt.Sprintf("DenyUsers %s matches %s", p, user)
		}
	}
	if al := s["allowusers"]; len(al) > 0 {
		ok := false
		for _, p := range al {
			if userMatch(p, false) {
				ok = true
			}
		}
		if !ok {
			return true, fmt.Sprintf("AllowUsers (%s) does not include %s", strings.Join(al, " "), user)
		}
	}
	for _, p := range s["denygroups"] {
		for _, g := range groups {
			if sshMatchList(p, g) {
				return true, fmt.Sprintf("DenyGroups %s matches group %s of %s", p, g, user)
			}
		}
	}
	if ag := s["allowgroups"]; len(ag) > 0 {
		for _, p := range ag {
			for _, g := range groups {
				if sshMatchList(p, g) {
					return false, fmt.Sprintf("AllowGroups %s includes group %s of %s; nothing denies it", p, g, user)
				}
			}
		}
		return true, fmt.Sprintf("AllowGroups (%s) includes none of %s's groups (%s)", strings.Join(ag, " "), user, strings.Join(groups, " "))
	}
	return false, fmt.Sprintf("no DenyUsers/AllowUsers/DenyGroups/AllowGroups rule keeps %s out", user)
}

// sshMatchList matches an sshd pattern list ("a,b*,!c"): a negated match
// wins, then any positive match.
func sshMatchList(list, s string) bool {
	matched := false
	for _, p := range strings.Split(list, ",") {
		neg := strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(p, "!")
		if ok, _ := path.Match(p, s); ok {
			if neg {
				return false
			}
			matched = true
		}
	}
	return matched
}
