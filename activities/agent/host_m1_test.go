package agent_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mageflow/mageflow/activities/agent"
	"github.com/mageflow/mageflow/internal/host/hostops"
	"github.com/mageflow/mageflow/internal/host/webstack"
)

// m1Release lays out a prepared Magento 1 release by hand: one module at
// version, and an index.php that records it ran (as Magento 1's first
// request runs pending setup scripts).
func m1Release(t *testing.T, root, id, version, ranFile string) {
	t.Helper()
	dir := hostops.ReleaseDir(root, "legacy", id)
	mod := filepath.Join(dir, "app", "code", "local", "Acme", "Shop", "etc")
	require.NoError(t, os.MkdirAll(mod, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(mod, "config.xml"), []byte(
		`<?xml version="1.0"?><config><modules><Acme_Shop><version>`+version+`</version></Acme_Shop></modules></config>`), 0o644))
	php := fmt.Sprintf("<?php file_put_contents(%q, %q . \" \" . $_SERVER['HTTP_HOST'] . \"\\n\", FILE_APPEND); echo 'ok';\n", ranFile, id)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "index.php"), []byte(php), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, hostops.CompleteMarker), []byte(id), 0o644))
}

func TestHostMagento1UpgradeThroughIndexPHP(t *testing.T) {
	poolDir := t.TempDir()
	pool := webstack.Pool{Name: "m1", Dir: poolDir}
	f := newHostFixture(t, fmt.Sprintf("    php_fpm: {socket: %s}\n", pool.SocketPath()))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	fpm, err := webstack.StartPHPFPM(ctx, pool)
	require.NoError(t, err, "php-fpm (Debian php8.2-fpm) runs the setup request")
	defer fpm.Stop()

	ran := filepath.Join(t.TempDir(), "setup-ran.txt")
	m1Release(t, f.root, "1-aaaaaaa", "0.1.0", ran)
	m1Release(t, f.root, "2-bbbbbbb", "0.1.0", ran)
	m1Release(t, f.root, "3-ccccccc", "0.2.0", ran)
	target := agent.HostTarget{Host: "web1", App: "legacy", Env: "production"}
	ref := func(id string) agent.ReleaseRef { return agent.ReleaseRef{HostTarget: target, ReleaseID: id} }

	var dec agent.UpgradeDecision
	require.NoError(t, f.exec(f.acts.UpgradeStatus, ref("1-aaaaaaa"), &dec))
	require.True(t, dec.Needed, "the first deploy runs every setup script")
	require.NoError(t, f.exec(f.acts.Switch, ref("1-aaaaaaa"), nil))

	require.NoError(t, f.exec(f.acts.UpgradeStatus, ref("2-bbbbbbb"), &dec))
	require.False(t, dec.Needed, "same module versions: no maintenance")

	require.NoError(t, f.exec(f.acts.UpgradeStatus, ref("3-ccccccc"), &dec))
	require.True(t, dec.Needed)
	require.Equal(t, []string{"Acme_Shop: 0.1.0 -> 0.2.0, setup scripts pending"}, dec.Reasons)

	// The setup request goes through the NEW release's index.php, before
	// any switch: current still points at the first release.
	require.NoError(t, f.exec(f.acts.RunUpgrade, ref("3-ccccccc"), nil))
	b, err := os.ReadFile(ran)
	require.NoError(t, err, "index.php of the new release must have run")
	require.Equal(t, "3-ccccccc localhost\n", string(b), "the environment has no url, so the request names localhost")
	cur, err := hostops.ReadCurrent(f.root, "legacy")
	require.NoError(t, err)
	require.Equal(t, "1-aaaaaaa", cur)
}
