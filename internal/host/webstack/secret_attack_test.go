package webstack

import (
	"bytes"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBypassSecretNotReadableByLocalUsers is the attack of a local user on
// a host who reads nginx's config to learn the maintenance bypass secret
// (and then reaches a store mid-upgrade): the stack directory is made
// searchable by everyone, as /etc/nginx is, and no file anybody but the
// nginx master's user can read holds the secret. As root, the read is
// attempted for real as the user nobody. The bypass itself still works.
func TestBypassSecretNotReadableByLocalUsers(t *testing.T) {
	requireStack(t)
	const secret = "bypass-attack-5f0c9e1d77"
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "shop"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(MaintenanceFlag(root, "shop"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	site, err := RenderHost(HostSite{Host: "h", App: "shop", Root: root, Listen: addr, FastCGI: "/nonexistent.sock", BypassSecret: secret})
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	dir := filepath.Join(base, "nginx")
	p, err := StartNginx(t.Context(), dir, site)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop() })
	// Reload writes the config (and the secret file) again.
	if err := p.Reload(site); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}

	var secretFiles []string
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil || !bytes.Contains(b, []byte(secret)) {
			return err
		}
		secretFiles = append(secretFiles, path)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().Perm() != 0o600 || int(st.Uid) != os.Geteuid() {
			t.Errorf("%s holds the bypass secret with mode %o, uid %d: want 0600, owned by the nginx master's user (%d)", path, fi.Mode().Perm(), st.Uid, os.Geteuid())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(secretFiles) != 1 || filepath.Base(secretFiles[0]) == "nginx.conf" {
		t.Fatalf("the secret should be in exactly one file of its own, found it in %v", secretFiles)
	}
	if os.Geteuid() == 0 {
		grep := exec.Command("grep", "-rl", "--", secret, dir)
		grep.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, _ := grep.CombinedOutput()
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if l != "" && !strings.HasPrefix(l, "grep:") {
				t.Errorf("the user nobody read the bypass secret in %s", l)
			}
		}
		if !strings.Contains(string(out), secretFiles[0]+": Permission denied") {
			t.Fatalf("nobody's grep did not meet the secret file (the test proves nothing):\n%s", out)
		}
	}

	// nginx read the included file: the header passes maintenance (404:
	// no release behind it), a wrong one gets the 503.
	c := &http.Client{Timeout: 5 * time.Second}
	for hdr, want := range map[string]int{secret: http.StatusNotFound, secret + "x": http.StatusServiceUnavailable} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/index.php", nil)
		req.Header.Set(BypassHeader, hdr)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("bypass header %q: HTTP %d, want %d", hdr, resp.StatusCode, want)
		}
	}
}
