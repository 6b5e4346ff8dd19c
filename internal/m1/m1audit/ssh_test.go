package m1audit

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// sshdFixture makes a host key with ssh-keygen (sshd -T refuses to run
// without one) and returns options pointing at it.
func sshdFixture(t *testing.T) (AuditOptions, string) {
	t.Helper()
	sshd, err := exec.LookPath("sshd")
	if err != nil {
		if _, e := os.Stat("/usr/sbin/sshd"); e != nil {
			t.Fatal("sshd not found: install the Debian package openssh-server (apt-get install -y --no-install-recommends openssh-server)")
		}
		sshd = "/usr/sbin/sshd"
	}
	dir := t.TempDir()
	key := filepath.Join(dir, "host_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen (Debian package openssh-client): %v %s", err, out)
	}
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	o := AuditOptions{SSHDBinary: sshd, SSHDHostKeys: []string{key},
		PasswdFile: writePasswd(t, "root:x:0:0:root:/root:/bin/bash\nwww-data:x:33:33:www-data:"+home+":/usr/sbin/nologin\n"),
		GroupFile:  writePasswd(t, "root:x:0:\nwww-data:x:33:\nweb:x:1001:www-data,deploy\n")}
	return o, dir
}

func TestSSHChecks(t *testing.T) {
	base, dir := sshdFixture(t)
	home := filepath.Join(dir, "home")
	tg := &Target{PHPUser: "www-data"}
	cases := []struct {
		name                string
		config              string
		shell               string
		keyFile             string
		wantShell, wantKeys Status
		wantDaemon          Status
		detail              string
	}{
		{"hardened", "DenyUsers www-data\n", "", "", StatusPass, StatusPass, StatusPass, "DenyUsers www-data"},
		{"defaults", "", "", "", StatusPass, StatusPass, StatusFail, "no DenyUsers"},
		{"allowusers", "AllowUsers deploy admin@10.*\n", "", "", StatusPass, StatusPass, StatusPass, "AllowUsers"},
		{"denygroups supplementary", "DenyGroups web\n", "", "", StatusPass, StatusPass, StatusPass, "DenyGroups web"},
		{"allowgroups", "AllowGroups sudo\n", "", "", StatusPass, StatusPass, StatusPass, "AllowGroups"},
		{"allowgroups includes", "AllowGroups web\n", "", "", StatusPass, StatusPass, StatusFail, "includes group web"},
		{"deny from one host only", "DenyUsers www-data@10.0.0.1\n", "", "", StatusPass, StatusPass, StatusFail, ""},
		{"wildcard", "DenyUsers www-*\n", "", "", StatusPass, StatusPass, StatusPass, ""},
		{"match block", "Match User www-data\n  AllowUsers nobody\n", "", "", StatusPass, StatusPass, StatusPass, ""},
		{"shell and keys", "DenyUsers www-data\n", "/bin/bash", ".ssh/authorized_keys", StatusFail, StatusFail, StatusPass, ""},
		{"custom keys file", "AuthorizedKeysFile " + dir + "/keys/%u\nDenyUsers www-data\n", "", "keys/www-data", StatusPass, StatusFail, StatusPass, ""},
		{"broken config", "NoSuchKeyword yes\n", "", "", StatusPass, StatusPass, StatusError, "NoSuchKeyword"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := base
			o.SSHDConfig = filepath.Join(t.TempDir(), "sshd_config")
			writeFile(t, o.SSHDConfig, "UsePAM no\n"+c.config)
			if c.shell != "" {
				o.PasswdFile = writePasswd(t, "www-data:x:33:33:www-data:"+home+":"+c.shell+"\n")
			}
			os.RemoveAll(filepath.Join(home, ".ssh"))
			os.RemoveAll(filepath.Join(dir, "keys"))
			if c.keyFile != "" {
				p := filepath.Join(home, c.keyFile)
				if strings.HasPrefix(c.keyFile, "keys/") {
					p = filepath.Join(dir, c.keyFile)
				}
				writeFile(t, p, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample attacker@example.invalid\n")
			}
			rs := sshChecks(context.Background(), tg, o)
			got := map[string]CheckResult{}
			for _, r := range rs {
				got[r.ID] = r
			}
			for id, want := range map[string]Status{CheckPHPUserShell: c.wantShell, CheckPHPUserKeys: c.wantKeys, CheckSSHDDenied: c.wantDaemon} {
				if got[id].Status != want {
					t.Errorf("%s: %s, want %s (%s; %s)", id, got[id].Status, want, got[id].Evidence.Detail, got[id].Evidence.Command)
				}
			}
			if d := got[CheckSSHDDenied]; !strings.Contains(d.Evidence.Detail, c.detail) || !strings.Contains(d.Evidence.Command, "-C user=www-data,host=localhost,addr=127.0.0.1") {
				t.Errorf("daemon evidence %q / %q, want detail containing %q", d.Evidence.Detail, d.Evidence.Command, c.detail)
			}
		})
	}
	o := base
	o.PasswdFile = writePasswd(t, "root:x:0:0::/root:/bin/sh\n")
	for _, r := range sshChecks(context.Background(), tg, o) {
		if r.Status != StatusError {
			t.Errorf("unknown user: %s %s", r.ID, r.Status)
		}
	}
}

func TestSSHMatchList(t *testing.T) {
	for _, c := range []struct {
		list, s string
		want    bool
	}{
		{"www-data", "www-data", true},
		{"www-*", "www-data", true},
		{"a,b,www-data", "www-data", true},
		{"www-*,!www-data", "www-data", false},
		{"deploy", "www-data", false},
		{"www-dat?", "www-data", true},
	} {
		if got := sshMatchList(c.list, c.s); got != c.want {
			t.Errorf("sshMatchList(%q, %q) = %v", c.list, c.s, got)
		}
	}
}
