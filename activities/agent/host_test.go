package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/mageflow/mageflow/activities/agent"
	"github.com/mageflow/mageflow/internal/build/artifact"
	"github.com/mageflow/mageflow/internal/build/catalog"
	"github.com/mageflow/mageflow/internal/build/release"
	"github.com/mageflow/mageflow/internal/build/store"
	"github.com/mageflow/mageflow/internal/host/hostops"
	"github.com/mageflow/mageflow/internal/platform/config"
	"github.com/mageflow/mageflow/internal/platform/secrets"
	"github.com/mageflow/mageflow/test/fixtures"
)

// Secret values the tests plant; none may ever show up in an error, a
// heartbeat or a log line.
const (
	secretEnvMarker = "ENV-PHP-SECRET-5d1f"
	secretConfig    = "CONFIG-SECRET-9a7c"
	secretSensitive = "SENSITIVE-SECRET-41be"
	secretBypass    = "BYPASS-SECRET-77e0"
)

var allSecrets = []string{secretEnvMarker, secretConfig, secretSensitive, secretBypass}

// captureLogger records every log line of the activity environment.
type captureLogger struct {
	mu    sync.Mutex
	lines []string
}

func (l *captureLogger) add(level, msg string, kv ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf("%s %s %v", level, msg, kv))
}
func (l *captureLogger) Debug(msg string, kv ...any) { l.add("DEBUG", msg, kv...) }
func (l *captureLogger) Info(msg string, kv ...any)  { l.add("INFO", msg, kv...) }
func (l *captureLogger) Warn(msg string, kv ...any)  { l.add("WARN", msg, kv...) }
func (l *captureLogger) Error(msg string, kv ...any) { l.add("ERROR", msg, kv...) }

func (l *captureLogger) all() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

type hostFixture struct {
	t       *testing.T
	dir     string
	root    string
	cfg     *config.Config
	st      store.Store
	acts    *agent.HostActivities
	env     *testsuite.TestActivityEnvironment
	log     *captureLogger
	repo    string
	phpLog  string // config:set calls seen by the php wrapper
	dbFile  string
	errs    []string // every error message returned, checked for secrets
	errsMu  sync.Mutex
	targets agent.HostTarget
}

// phpWrapper stands in for php-cli: setup:upgrade fails when
// $DIR/fail-upgrade exists; everything else runs the real php.
const phpWrapper = `#!/bin/sh
if [ "$1" = bin/magento ] && [ "$2" = setup:upgrade ] && [ -e "@DIR@/fail-upgrade" ]; then
  echo "SQLSTATE[HY000] [2002] Connection refused"; exit 1
fi
exec php "$@"
`

// configSetFront replaces the fixture's bin/magento (renamed
// bin/magento-fixture), which has no config:set: config:set and
// config:sensitive:set are recorded in @LOG@, "fail/me" fails echoing its
// value like a careless command would, everything else runs the fixture.
// It reads the command line from $argv, so it sees what the agent passed
// however php was started.
const configSetFront = `#!/usr/bin/env php
<?php
$cmd = $argv[1] ?? '';
if ($cmd === 'config:set' || $cmd === 'config:sensitive:set') {
    if (($argv[2] ?? '') !== '--') { echo "expected -- before the path\n"; exit(1); }
    if ($argv[3] === 'fail/me') { echo "cannot save value {$argv[4]}\n"; exit(1); }
    file_put_contents('@LOG@', "$cmd {$argv[3]} {$argv[4]}\n", FILE_APPEND);
    exit(0);
}
require __DIR__ . '/magento-fixture';
`

func newHostFixture(t *testing.T, hostExtra string) *hostFixture {
	t.Helper()
	if _, err := exec.LookPath("php"); err != nil {
		t.Fatal("php not found: install the Debian package php-cli")
	}
	f := &hostFixture{t: t, dir: t.TempDir(), repo: fixtures.Magento2App(t)}
	f.root = filepath.Join(f.dir, "srv")
	f.phpLog = filepath.Join(f.dir, "config-set.log")
	f.dbFile = filepath.Join(f.dir, "db.json")
	sec := filepath.Join(f.dir, "secrets")
	area := secrets.Area{Dir: sec}
	require.NoError(t, area.Write("shop-env.php", []byte(fmt.Sprintf("<?php return ['MAGE_MODE' => 'production', 'fixture_db' => %q, 'crypt' => ['key' => %q]];\n", f.dbFile, secretEnvMarker))))
	require.NoError(t, area.Write("broken-env.php", []byte("<?php return ['MAGE_MODE' => 'production'];\n")))
	require.NoError(t, area.Write("shop-config.json", []byte(fmt.Sprintf(`{"web/secure/base_url": "https://shop.example.com/%s", "payment/key": %q, "catalog/frontend/flat": true, "dev/js/merge": 0}`, secretConfig, secretSensitive))))
	require.NoError(t, area.Write("bad-config.json", []byte(fmt.Sprintf(`{"fail/me": %q}`, secretConfig))))
	require.NoError(t, area.Write("bypass", []byte(secretBypass)))

	yml := fmt.Sprintf(`artifacts:
  dir: %[1]s/artifacts
secrets:
  dir: %[2]s
hosts:
  web1:
    root: %[3]s
    url: http://127.0.0.1:1
    nginx:
      maintenance_bypass: file:bypass
%[5]s
apps:
  shop:
    repo: %[4]s
    type: magento2
    shared: [pub/sitemaps]
    environments:
      production:
        branch: main
        hosts: [web1]
        url: https://shop.example.com
        env_php: file:shop-env.php
        config: file:shop-config.json
        sensitive_config: [payment/key]
        keep_releases: 3
      broken:
        branch: broken
        hosts: [web1]
        env_php: file:broken-env.php
      badconfig:
        branch: badconfig
        hosts: [web1]
        env_php: file:shop-env.php
        config: file:bad-config.json
  legacy:
    repo: %[4]s
    type: magento1
    environments:
      production:
        branch: main
        hosts: [web1]
        env_php: file:shop-env.php
`, f.dir, sec, f.root, f.repo, hostExtra)
	p := filepath.Join(f.dir, "mageflow.yaml")
	require.NoError(t, os.WriteFile(p, []byte(yml), 0o644))
	cfg, err := config.Load(p, false)
	require.NoError(t, err)
	f.cfg = cfg
	f.st, err = store.NewLocal(cfg.Artifacts.Dir)
	require.NoError(t, err)

	bin := filepath.Join(f.repo, "bin")
	require.NoError(t, os.Rename(filepath.Join(bin, "magento"), filepath.Join(bin, "magento-fixture")))
	require.NoError(t, os.WriteFile(filepath.Join(bin, "magento"), []byte(strings.ReplaceAll(configSetFront, "@LOG@", f.phpLog)), 0o755))
	wrapper := filepath.Join(f.dir, "php")
	w := strings.ReplaceAll(phpWrapper, "@DIR@", f.dir)
	require.NoError(t, os.WriteFile(wrapper, []byte(w), 0o755))

	f.acts = &agent.HostActivities{Host: "web1", Config: cfg, Store: f.st, Secrets: area, PHP: wrapper, HeartbeatEvery: 50 * time.Millisecond}
	var s testsuite.WorkflowTestSuite
	f.log = &captureLogger{}
	s.SetLogger(f.log)
	f.env = s.NewTestActivityEnvironment()
	f.env.RegisterActivity(f.acts)
	f.targets = agent.HostTarget{Host: "web1", App: "shop", Env: "production"}
	t.Cleanup(f.checkNoSecrets)
	t.Cleanup(func() { agent.StopSpares(f.acts) })
	return f
}

// checkNoSecrets runs after every test: no secret in logs or errors.
func (f *hostFixture) checkNoSecrets() {
	f.errsMu.Lock()
	defer f.errsMu.Unlock()
	text := f.log.all() + "\n" + strings.Join(f.errs, "\n")
	for _, s := range allSecrets {
		if strings.Contains(text, s) {
			f.t.Errorf("secret %s leaked into logs or errors:\n%s", s, text)
		}
	}
}

// exec runs an activity and records its error for the secrets check.
func (f *hostFixture) exec(fn any, in any, out any) error {
	v, err := f.env.ExecuteActivity(fn, in)
	if err != nil {
		f.errsMu.Lock()
		f.errs = append(f.errs, err.Error())
		var ae *temporal.ApplicationError
		if errors.As(err, &ae) {
			f.errs = append(f.errs, ae.Message())
		}
		f.errsMu.Unlock()
		return err
	}
	if out != nil {
		require.NoError(f.t, v.Get(out))
	}
	return nil
}

// release packages the fixture tree as release id and stores it.
func (f *hostFixture) release(id string) release.Meta {
	f.t.Helper()
	m := release.Meta{ID: id, App: "shop", Commit: strings.Repeat("a", 40)}
	manifest, err := json.Marshal(m)
	require.NoError(f.t, err)
	tmp := filepath.Join(f.dir, id+".tar.zst")
	res, err := artifact.WriteFile(context.Background(), tmp, f.repo, manifest, artifact.Options{Exclude: f.cfg.Apps["shop"].SharedPaths()})
	require.NoError(f.t, err)
	uri, _, err := f.st.Put(context.Background(), catalog.ArtifactKey("shop", id), tmp, res.SHA256, store.PutOptions{})
	require.NoError(f.t, err)
	m.Artifact = release.Artifact{URI: uri, SHA256: res.SHA256, Size: res.Size, UncompressedSize: res.TarSize, IndexSHA256: res.IndexSHA256}
	return m
}

func (f *hostFixture) prepareInput(m release.Meta) agent.PrepareInput {
	return agent.PrepareInput{HostTarget: f.targets, ReleaseID: m.ID, ArtifactURI: m.Artifact.URI, SHA256: m.Artifact.SHA256, Size: m.Artifact.Size,
		UncompressedSize: m.Artifact.UncompressedSize, IndexSHA256: m.Artifact.IndexSHA256, ContentVersion: "7"}
}

func (f *hostFixture) prepare(m release.Meta) agent.PrepareResult {
	f.t.Helper()
	var res agent.PrepareResult
	require.NoError(f.t, f.exec(f.acts.Prepare, f.prepareInput(m), &res))
	return res
}

func (f *hostFixture) ref(id string) agent.ReleaseRef {
	return agent.ReleaseRef{HostTarget: f.targets, ReleaseID: id}
}

func appErr(t *testing.T, err error, typ string) *temporal.ApplicationError {
	t.Helper()
	var ae *temporal.ApplicationError
	require.True(t, errors.As(err, &ae), "want an application error, got %v", err)
	require.Equal(t, typ, ae.Type(), "%v", err)
	return ae
}

func readLink(t *testing.T, p string) string {
	t.Helper()
	l, err := os.Readlink(p)
	require.NoError(t, err)
	return l
}

func TestHostPrepareInstallsRelease(t *testing.T) {
	f := newHostFixture(t, "")
	m := f.release("2-abcdef1")
	res := f.prepare(m)
	dir := hostops.ReleaseDir(f.root, "shop", m.ID)
	require.Equal(t, dir, res.ReleaseDir)
	require.False(t, res.AlreadyPrepared)
	require.Positive(t, res.FreeBytes)

	for _, p := range []string{hostops.CompleteMarker, "release.json", "bin/magento", "pub/index.php", "app/etc/config.php"} {
		require.FileExists(t, filepath.Join(dir, p))
	}
	b, err := os.ReadFile(filepath.Join(dir, "pub", hostops.ReleaseMarker))
	require.NoError(t, err)
	require.Equal(t, m.ID, strings.TrimSpace(string(b)))
	b, err = os.ReadFile(filepath.Join(dir, "pub/static/deployed_version.txt"))
	require.NoError(t, err)
	require.Equal(t, "7", string(b))

	shared := hostops.SharedDir(f.root, "shop")
	for _, p := range []string{"pub/media", "var", "app/etc/env.php", "pub/sitemaps"} {
		require.Equal(t, filepath.Join(shared, p), readLink(t, filepath.Join(dir, p)), p)
	}
	fi, err := os.Stat(filepath.Join(shared, "app/etc/env.php"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o640), fi.Mode().Perm())
	b, err = os.ReadFile(filepath.Join(dir, "app/etc/env.php"))
	require.NoError(t, err)
	require.Contains(t, string(b), secretEnvMarker)
	require.DirExists(t, filepath.Join(shared, "pub/media"))

	// Config applied in path order, sensitive paths with their own command,
	// booleans as 1/0.
	b, err = os.ReadFile(f.phpLog)
	require.NoError(t, err)
	require.Equal(t, "config:set catalog/frontend/flat 1\nconfig:set dev/js/merge 0\nconfig:sensitive:set payment/key "+secretSensitive+"\nconfig:set web/secure/base_url https://shop.example.com/"+secretConfig+"\n", string(b))

	// bin/magento works in the release with the installed env.php.
	out, err := exec.Command("php", filepath.Join(dir, "bin/magento"), "setup:db:status").CombinedOutput()
	require.Error(t, err, "the fixture database is empty, so an upgrade is due")
	require.Contains(t, string(out), "Run 'setup:upgrade'")

	// Second run: nothing to do.
	require.NoError(t, os.Remove(f.phpLog))
	again := f.prepare(m)
	require.True(t, again.AlreadyPrepared)
	require.NoFileExists(t, f.phpLog, "an already prepared release is not configured again")

	var st agent.HostState
	require.NoError(t, f.exec(f.acts.State, f.targets, &st))
	require.Equal(t, agent.HostState{Releases: []string{m.ID}}, st)
	assertNoTemps(t, f)
}

// assertNoTemps: no work directory is left under releases/ once the
// background work after Prune is stopped (a cancelled spare staging
// removes its own).
func assertNoTemps(t *testing.T, f *hostFixture) {
	t.Helper()
	agent.StopSpares(f.acts)
	ents, err := os.ReadDir(hostops.ReleasesDir(f.root, "shop"))
	require.NoError(t, err)
	for _, e := range ents {
		require.False(t, strings.HasPrefix(e.Name(), ".") && !hostops.IsRecycleSlot(e.Name()), "leftover %s", e.Name())
	}
}

func TestHostRefusesOtherHostAndBadInput(t *testing.T) {
	f := newHostFixture(t, "")
	m := f.release("2-abcdef1")
	in := f.prepareInput(m)
	in.Host = "web2"
	err := f.exec(f.acts.Prepare, in, nil)
	ae := appErr(t, err, agent.ErrInvalidInput)
	require.True(t, ae.NonRetryable())
	require.Contains(t, err.Error(), `serves host "web1"`)

	in = f.prepareInput(m)
	in.ReleaseID = "../../etc"
	appErr(t, f.exec(f.acts.Prepare, in, nil), agent.ErrInvalidInput)

	// Switching to something never prepared is refused.
	appErr(t, f.exec(f.acts.Switch, f.ref("9-1234567"), nil), agent.ErrInvalidInput)
}

func TestHostPrepareChecksumMismatch(t *testing.T) {
	f := newHostFixture(t, "")
	m := f.release("2-abcdef1")
	in := f.prepareInput(m)
	in.SHA256 = strings.Repeat("0", 64)
	err := f.exec(f.acts.Prepare, in, nil)
	ae := appErr(t, err, agent.ErrChecksum)
	require.True(t, ae.NonRetryable())
	require.Contains(t, err.Error(), m.Artifact.SHA256, "the message names the digest actually read")
	require.NoDirExists(t, hostops.ReleaseDir(f.root, "shop", m.ID))
	assertNoTemps(t, f)
}

func TestHostPrepareDiskFull(t *testing.T) {
	f := newHostFixture(t, "    min_free_bytes: 1000000000000000")
	m := f.release("2-abcdef1")
	err := f.exec(f.acts.Prepare, f.prepareInput(m), nil)
	ae := appErr(t, err, agent.ErrDiskFull)
	require.True(t, ae.NonRetryable())
	require.Contains(t, err.Error(), "free")
	require.Contains(t, err.Error(), "needed")
	require.Contains(t, err.Error(), "keep_releases")
	require.NoDirExists(t, hostops.ReleaseDir(f.root, "shop", m.ID))
	assertNoTemps(t, f)
}

// TestHostPrepareDiskFullTmpfs puts the host root on a real 16 KiB tmpfs,
// smaller than three times the artifact.
func TestHostPrepareDiskFullTmpfs(t *testing.T) {
	f := newHostFixture(t, "")
	m := f.release("2-abcdef1")
	require.NoError(t, os.MkdirAll(f.root, 0o755))
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", f.root).CombinedOutput(); err != nil {
		// Containers without CAP_SYS_ADMIN cannot mount; the
		// min_free_bytes test above covers the same code path.
		t.Logf("tmpfs not available here (%v: %s); covered by TestHostPrepareDiskFull only", err, strings.TrimSpace(string(out)))
		return
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", f.root).Run() })
	require.Greater(t, 3*m.Artifact.Size, int64(16<<10), "the artifact must be big enough for this test to mean something")
	err := f.exec(f.acts.Prepare, f.prepareInput(m), nil)
	appErr(t, err, agent.ErrDiskFull)
	t.Logf("%v", err)
}

// TestHostPrepareResumes plays the states a SIGKILL can leave behind.
func TestHostPrepareResumes(t *testing.T) {
	f := newHostFixture(t, "")
	m := f.release("2-abcdef1")
	rels := hostops.ReleasesDir(f.root, "shop")
	require.NoError(t, os.MkdirAll(rels, 0o755))

	// Killed mid-extraction: a work directory with half a tree.
	half := filepath.Join(rels, ".tmp-"+m.ID+"-deadbeef")
	require.NoError(t, os.MkdirAll(filepath.Join(half, "tree/app"), 0o755))
	f.prepare(m)
	dir := hostops.ReleaseDir(f.root, "shop", m.ID)
	require.FileExists(t, filepath.Join(dir, hostops.CompleteMarker))

	// Killed while writing env.php: the temporary copy is cleaned up.
	envTmp := filepath.Join(hostops.SharedDir(f.root, "shop"), "app/etc/.env.php.tmp-123")
	require.NoError(t, os.WriteFile(envTmp, []byte(secretEnvMarker), 0o600))

	// Killed after the rename, before the complete marker: only the rest
	// runs, nothing is downloaded again (the artifact is gone now).
	require.NoError(t, os.Remove(filepath.Join(dir, hostops.CompleteMarker)))
	require.NoError(t, os.Remove(filepath.Join(dir, "pub/media")))
	require.NoError(t, os.Remove(filepath.Join(dir, "var")))
	require.NoError(t, os.Remove(filepath.Join(f.cfg.Artifacts.Dir, "shop", m.ID+".tar.zst")))
	res := f.prepare(m)
	require.False(t, res.AlreadyPrepared)
	require.FileExists(t, filepath.Join(dir, hostops.CompleteMarker))
	require.Equal(t, filepath.Join(hostops.SharedDir(f.root, "shop"), "var"), readLink(t, filepath.Join(dir, "var")))
	require.NoFileExists(t, envTmp)

	// The stale work directory goes with the next prune, once an hour old.
	var pr agent.PruneResult
	require.NoError(t, f.exec(f.acts.Prune, agent.PruneInput{HostTarget: f.targets, Keep: 3}, &pr))
	require.DirExists(t, half, "a work directory younger than an hour may belong to a running Prepare")
	f.acts.Now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	require.NoError(t, f.exec(f.acts.Prune, agent.PruneInput{HostTarget: f.targets, Keep: 3}, &pr))
	require.NoDirExists(t, half)
	require.DirExists(t, dir)
}

func TestHostSwitchIsAtomicAndIdempotent(t *testing.T) {
	f := newHostFixture(t, "")
	a, b := f.release("2-aaaaaaa"), f.release("3-bbbbbbb")
	f.prepare(a)
	f.prepare(b)

	var sw agent.SwitchResult
	require.NoError(t, f.exec(f.acts.Switch, f.ref(a.ID), &sw))
	require.Equal(t, "", sw.Previous)
	require.Equal(t, a.ID, sw.Current)
	var again agent.SwitchResult
	require.NoError(t, f.exec(f.acts.Switch, f.ref(a.ID), &again))
	require.Equal(t, sw.Previous, again.Previous)
	require.True(t, sw.SwitchedAt.Equal(again.SwitchedAt), "a retried switch answers what the first one did")
	require.Equal(t, "releases/"+a.ID, readLink(t, hostops.CurrentLink(f.root, "shop")))

	// Readers hammer current while it flips back and forth: every read
	// must see a whole release, never a missing or dangling link.
	marker := filepath.Join(hostops.CurrentLink(f.root, "shop"), "pub", hostops.ReleaseMarker)
	stop := make(chan struct{})
	var reads atomic.Int64
	var bad atomic.Value
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				got, err := os.ReadFile(marker)
				id := strings.TrimSpace(string(got))
				if err != nil || (id != a.ID && id != b.ID) {
					bad.Store(fmt.Sprintf("read %q, %v", id, err))
					return
				}
				reads.Add(1)
			}
		})
	}
	start := time.Now()
	const flips = 200
	for i := range flips {
		id := b.ID
		if i%2 == 1 {
			id = a.ID
		}
		require.NoError(t, f.exec(f.acts.Switch, f.ref(id), &sw))
		require.Equal(t, id, sw.Current)
	}
	close(stop)
	wg.Wait()
	require.Nil(t, bad.Load(), "a reader saw a partial switch")
	require.Positive(t, reads.Load())
	t.Logf("%d switches in %s with %d concurrent reads, none failed", flips, time.Since(start).Round(time.Millisecond), reads.Load())
	require.Equal(t, a.ID, sw.Current)
	require.Equal(t, b.ID, sw.Previous)

	// Discard refuses current, removes the other.
	err := f.exec(f.acts.Discard, f.ref(a.ID), nil)
	appErr(t, err, agent.ErrInvalidInput)
	require.NoError(t, f.exec(f.acts.Discard, f.ref(b.ID), nil))
	require.NoDirExists(t, hostops.ReleaseDir(f.root, "shop", b.ID))
	require.NoError(t, f.exec(f.acts.Discard, f.ref(b.ID), nil), "discarding twice is fine")
	ents, _ := os.ReadDir(hostops.AppDir(f.root, "shop"))
	for _, e := range ents {
		require.False(t, strings.HasPrefix(e.Name(), "current.tmp-"), "leftover %s", e.Name())
	}
}

// fakeRelease makes a complete release directory prepared at when.
func fakeRelease(t *testing.T, root, id string, when time.Time) {
	t.Helper()
	dir := hostops.ReleaseDir(root, "shop", id)
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "pub"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "pub", hostops.ReleaseMarker), []byte(id), 0o644))
	m := filepath.Join(dir, hostops.CompleteMarker)
	require.NoError(t, os.WriteFile(m, []byte("{}"), 0o644))
	require.NoError(t, os.Chtimes(m, when, when))
}

func TestHostPrune(t *testing.T) {
	f := newHostFixture(t, "")
	base := time.Now().Add(-48 * time.Hour)
	var ids []string
	for i := range 8 {
		id := fmt.Sprintf("%d-abcdef%d", i+1, i)
		ids = append(ids, id)
		fakeRelease(t, f.root, id, base.Add(time.Duration(i)*time.Hour))
	}
	// current is the oldest (a rollback), the previous one is protected
	// by the last switch, ids[2] by the caller.
	require.NoError(t, hostops.SwitchCurrent(f.root, "shop", ids[1]))
	require.NoError(t, f.exec(f.acts.Switch, f.ref(ids[0]), nil))
	// A release symlinking outside must not take the outside with it.
	outside := filepath.Join(f.dir, "outside")
	require.NoError(t, os.MkdirAll(outside, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(outside, "keep.txt"), []byte("x"), 0o644))
	require.NoError(t, os.Symlink(outside, filepath.Join(hostops.ReleaseDir(f.root, "shop", ids[3]), "escape")))
	// An entry of releases/ that is itself a symlink.
	require.NoError(t, os.Symlink(outside, filepath.Join(hostops.ReleasesDir(f.root, "shop"), "9-abcdef9")))

	var pr agent.PruneResult
	require.NoError(t, f.exec(f.acts.Prune, agent.PruneInput{HostTarget: f.targets, Keep: 3, Protect: []string{ids[2]}}, &pr))
	require.ElementsMatch(t, []string{ids[3], ids[4]}, pr.Removed)
	// The newest one removed waits in the recycle slot for the next delta.
	require.Equal(t, ids[4], pr.SetAside)
	// Current has no per-file index, so it is no delta base and no spare
	// of it replaces the slot (that raced this check in CI).
	require.Empty(t, pr.SpareStaging)
	agent.StopSpares(f.acts)
	slot, err := hostops.RecycleSlot(hostops.ReleasesDir(f.root, "shop"))
	require.NoError(t, err)
	require.Equal(t, ids[4], slot)
	var st agent.HostState
	require.NoError(t, f.exec(f.acts.State, f.targets, &st))
	require.Equal(t, ids[0], st.Current)
	require.Equal(t, []string{ids[0], ids[1], ids[2], ids[5], ids[6], ids[7]}, st.Releases, "oldest first")
	require.FileExists(t, filepath.Join(outside, "keep.txt"))

	// Keep 0 falls back to the environment's keep_releases (3).
	f.acts.Now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	require.NoError(t, f.exec(f.acts.Prune, agent.PruneInput{HostTarget: f.targets}, &pr))
	require.ElementsMatch(t, []string{ids[2], "9-abcdef9"}, pr.Removed, "the stale symlink entry goes as a link")
	// One slot: the release retired now replaces what it held.
	slots, err := filepath.Glob(filepath.Join(hostops.ReleasesDir(f.root, "shop"), hostops.RecyclePrefix+"*"))
	require.NoError(t, err)
	require.Equal(t, []string{filepath.Join(hostops.ReleasesDir(f.root, "shop"), hostops.RecyclePrefix+ids[2])}, slots)
	require.FileExists(t, filepath.Join(outside, "keep.txt"))
	require.NoError(t, f.exec(f.acts.State, f.targets, &st))
	require.Equal(t, []string{ids[0], ids[1], ids[5], ids[6], ids[7]}, st.Releases)
	assertNoTemps(t, f)
}

func TestHostMaintenanceFlag(t *testing.T) {
	f := newHostFixture(t, "")
	flag := hostops.MaintenanceFlag(f.root, "shop")
	require.Equal(t, filepath.Join(f.root, "shop", "maintenance.flag"), flag)
	require.NoError(t, f.exec(f.acts.SetMaintenance, agent.MaintenanceInput{HostTarget: f.targets, On: true, Reason: "upgrading to 3-bbbbbbb"}, nil))
	b, err := os.ReadFile(flag)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(b), "upgrading to 3-bbbbbbb\nsince "), "%q", b)
	require.NoError(t, f.exec(f.acts.SetMaintenance, agent.MaintenanceInput{HostTarget: f.targets, On: true, Reason: "again"}, nil))
	b2, _ := os.ReadFile(flag)
	require.Equal(t, b, b2, "turning it on again keeps the original")
	require.NoError(t, f.exec(f.acts.SetMaintenance, agent.MaintenanceInput{HostTarget: f.targets, On: false}, nil))
	require.NoFileExists(t, flag)
	require.NoError(t, f.exec(f.acts.SetMaintenance, agent.MaintenanceInput{HostTarget: f.targets, On: false}, nil))
}

func TestHostUpgradeStatusAndRunUpgrade(t *testing.T) {
	f := newHostFixture(t, "")
	m := f.release("2-abcdef1")
	f.prepare(m)

	var dec agent.UpgradeDecision
	require.NoError(t, f.exec(f.acts.UpgradeStatus, f.ref(m.ID), &dec))
	require.True(t, dec.Needed)
	require.Len(t, dec.Reasons, 2)
	require.True(t, strings.HasPrefix(dec.Reasons[0], "setup:db:status: Vendor_Module schema: current version - none"), dec.Reasons[0])
	require.True(t, strings.HasPrefix(dec.Reasons[1], "app:config:status: Config files have changed"), dec.Reasons[1])

	// A database that cannot be reached fails the upgrade for good.
	require.NoError(t, os.WriteFile(filepath.Join(f.dir, "fail-upgrade"), nil, 0o644))
	err := f.exec(f.acts.RunUpgrade, f.ref(m.ID), nil)
	ae := appErr(t, err, agent.ErrUpgradeFailed)
	require.True(t, ae.NonRetryable())
	require.Contains(t, err.Error(), "SQLSTATE[HY000] [2002] Connection refused")
	require.NoError(t, os.Remove(filepath.Join(f.dir, "fail-upgrade")))

	require.NoError(t, f.exec(f.acts.RunUpgrade, f.ref(m.ID), nil))
	require.NoError(t, f.exec(f.acts.UpgradeStatus, f.ref(m.ID), &dec))
	require.Equal(t, agent.UpgradeDecision{}, dec)
	require.NoError(t, f.exec(f.acts.RunUpgrade, f.ref(m.ID), nil), "running it again is harmless")

	// The database file is what setup:upgrade wrote.
	b, err := os.ReadFile(f.dbFile)
	require.NoError(t, err)
	require.Contains(t, string(b), "Vendor_Module")

	// cache:flush runs in current.
	require.NoError(t, f.exec(f.acts.Switch, f.ref(m.ID), nil))
	cache := filepath.Join(hostops.SharedDir(f.root, "shop"), "var/cache/x")
	require.NoError(t, os.MkdirAll(cache, 0o755))
	require.NoError(t, f.exec(f.acts.FlushCache, f.ref(m.ID), nil))
	require.NoDirExists(t, cache)
}

func TestHostUpgradeStatusBrokenEnvironment(t *testing.T) {
	f := newHostFixture(t, "")
	f.targets.Env = "broken"
	m := f.release("2-abcdef1")
	f.prepare(m)
	err := f.exec(f.acts.UpgradeStatus, f.ref(m.ID), nil)
	require.Error(t, err)
	require.Contains(t, err.Error(), "exited 1")
	require.Contains(t, err.Error(), "the Magento application is not installed", "the output tail explains")
}

func TestHostConfigErrorsHideValues(t *testing.T) {
	f := newHostFixture(t, "")
	f.targets.Env = "badconfig"
	m := f.release("2-abcdef1")
	err := f.exec(f.acts.Prepare, f.prepareInput(m), nil)
	require.Error(t, err)
	require.Contains(t, err.Error(), "fail/me")
	require.Contains(t, err.Error(), "cannot save value [redacted]")
	require.NoFileExists(t, filepath.Join(hostops.ReleaseDir(f.root, "shop", m.ID), hostops.CompleteMarker))
}

func TestHostJobs(t *testing.T) {
	out := filepath.Join(t.TempDir(), "jobs")
	f := newHostFixture(t, fmt.Sprintf("    jobs_stop: echo stopped $MAGEFLOW_APP > %s\n    jobs_start: echo cron would not start; exit 3", out))
	require.NoError(t, f.exec(f.acts.StopJobs, f.targets, nil))
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	require.Equal(t, "stopped shop\n", string(b))
	err = f.exec(f.acts.StartJobs, f.targets, nil)
	require.ErrorContains(t, err, "jobs_start")
	require.ErrorContains(t, err, "cron would not start")

	// Unset commands are no-ops.
	g := newHostFixture(t, "")
	require.NoError(t, g.exec(g.acts.StopJobs, g.targets, nil))
	require.NoError(t, g.exec(g.acts.StartJobs, g.targets, nil))
}

func TestHostWarmAndHealth(t *testing.T) {
	f := newHostFixture(t, "")
	var mu sync.Mutex
	var hosts, bypass []string
	serving := "2-abcdef1"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hosts = append(hosts, r.Host)
		bypass = append(bypass, r.Header.Get(agent.MaintenanceBypassHeader))
		mu.Unlock()
		switch r.URL.Path {
		case "/.mageflow-release":
			fmt.Fprintln(w, serving)
		case "/", "/catalog":
			fmt.Fprint(w, "ok")
		case "/moved":
			http.Redirect(w, r, "https://elsewhere.example.com/", http.StatusFound)
		default:
			http.Error(w, "boom", http.StatusBadGateway)
		}
	}))
	defer srv.Close()
	f.cfg.Hosts["web1"].URL = srv.URL

	require.NoError(t, f.exec(f.acts.Warm, agent.WarmInput{HostTarget: f.targets, Paths: []string{"/", "/catalog"}}, nil))
	err := f.exec(f.acts.Warm, agent.WarmInput{HostTarget: f.targets, Paths: []string{"/", "/broken"}}, nil)
	require.ErrorContains(t, err, "/broken: HTTP 502")
	mu.Lock()
	require.Equal(t, "shop.example.com", hosts[0], "requests name the environment's host")
	mu.Unlock()

	var hr agent.HealthResult
	require.NoError(t, f.exec(f.acts.Health, agent.HealthInput{HostTarget: f.targets, Paths: []string{"/", "/catalog"}, ExpectRelease: "2-abcdef1"}, &hr))
	require.Empty(t, hr.Failures)

	require.NoError(t, f.exec(f.acts.Health, agent.HealthInput{HostTarget: f.targets, Paths: []string{"/", "/broken", "/moved"}, ExpectRelease: "3-bbbbbbb", BypassMaintain: true}, &hr))
	require.Len(t, hr.Failures, 3, "%v", hr.Failures)
	require.Contains(t, hr.Failures[0], "/broken: HTTP 502")
	require.Contains(t, hr.Failures[1], "/moved: HTTP 302", "redirects are not followed")
	require.Contains(t, hr.Failures[2], `serves release "2-abcdef1", want "3-bbbbbbb"`)
	mu.Lock()
	require.Equal(t, secretBypass, bypass[len(bypass)-1])
	mu.Unlock()
	for _, fl := range hr.Failures {
		require.NotContains(t, fl, secretBypass)
	}

	// BaseURL (the environment URL) is used as given.
	mu.Lock()
	hosts = nil
	mu.Unlock()
	require.NoError(t, f.exec(f.acts.Health, agent.HealthInput{HostTarget: f.targets, BaseURL: srv.URL, ExpectRelease: "2-abcdef1"}, &hr))
	require.Empty(t, hr.Failures)
	mu.Lock()
	require.Equal(t, strings.TrimPrefix(srv.URL, "http://"), hosts[0])
	mu.Unlock()

	// Nothing listening: failures, not an error.
	srv.Close()
	require.NoError(t, f.exec(f.acts.Health, agent.HealthInput{HostTarget: f.targets, ExpectRelease: "2-abcdef1"}, &hr))
	require.Len(t, hr.Failures, 2)
}

func TestHostReloadPHPRefusesUnsafe(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "php-fpm.conf")
	require.NoError(t, os.WriteFile(conf, []byte("[global]\npid = "+dir+"/fpm.pid\n"), 0o644))
	f := newHostFixture(t, "    php_fpm:\n      pid_file: "+dir+"/fpm.pid\n      config: "+conf)
	err := f.exec(f.acts.ReloadPHP, f.targets, nil)
	ae := appErr(t, err, agent.ErrUnsafeReload)
	require.True(t, ae.NonRetryable())
	require.Contains(t, err.Error(), "process_control_timeout")
	require.Contains(t, err.Error(), "php_fpm.socket")
}

// TestHostReloadPHPResetsOPcache runs a real php-fpm with
// process_control_timeout unset: the agent must not reload it but reset
// OPcache through the pool socket.
func TestHostReloadPHPResetsOPcache(t *testing.T) {
	bin, err := exec.LookPath("php-fpm8.2")
	if err != nil {
		t.Fatal("php-fpm8.2 not found: install the Debian package php8.2-fpm")
	}
	dir := t.TempDir()
	conf, sock, pid := filepath.Join(dir, "php-fpm.conf"), filepath.Join(dir, "fpm.sock"), filepath.Join(dir, "fpm.pid")
	require.NoError(t, os.WriteFile(conf, []byte(fmt.Sprintf("[global]\npid = %s\nerror_log = %s/fpm.log\n[www]\nuser = root\ngroup = root\nlisten = %s\npm = static\npm.max_children = 1\n", pid, dir, sock)), 0o644))
	cmd := exec.Command(bin, "-F", "-R", "-y", conf, "-p", dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		require.Less(t, i, 200, "php-fpm did not create its socket")
		time.Sleep(50 * time.Millisecond)
	}
	f := newHostFixture(t, fmt.Sprintf("    php_fpm:\n      pid_file: %s\n      config: %s\n      socket: %s", pid, conf, sock))
	var res agent.PHPResult
	require.NoError(t, f.exec(f.acts.ReloadPHP, f.targets, &res))
	require.Equal(t, "opcache-reset", res.Method)
	t.Logf("%+v", res)
	ents, _ := os.ReadDir(hostops.AppDir(f.root, "shop"))
	for _, e := range ents {
		require.False(t, strings.HasPrefix(e.Name(), ".mageflow-opcache"), "reset script left behind")
	}
}

// TestHostOwnership checks a hardened host: code owned by deploy_user and
// readable (not writable) by php_user's group; var, pub/media and the
// environment's writable paths writable by php_user.
func TestHostOwnership(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test changes file ownership and must run as root (as the agent does on hosts with deploy_user/php_user)")
	}
	f := newHostFixture(t, "    deploy_user: daemon\n    php_user: www-data")
	f.targets.Env = "broken" // no config secret: bin/magento does not run as www-data here
	f.cfg.Apps["shop"].Environments["broken"].Writable = []string{"generated", "pub/sitemaps"}
	m := f.release("2-abcdef1")
	f.prepare(m)
	dir := hostops.ReleaseDir(f.root, "shop", m.ID)
	shared := hostops.SharedDir(f.root, "shop")
	owner := func(p string) (uid, gid uint32, mode os.FileMode) {
		fi, err := os.Lstat(p)
		require.NoError(t, err, p)
		st := fi.Sys().(*syscall.Stat_t)
		return st.Uid, st.Gid, fi.Mode().Perm()
	}
	const daemon, wwwData = 1, 33
	for _, p := range []string{"bin/magento", "pub/index.php", "app/etc/config.php", "app"} {
		uid, gid, mode := owner(filepath.Join(dir, p))
		require.Equal(t, [2]uint32{daemon, wwwData}, [2]uint32{uid, gid}, p)
		require.Zero(t, mode&0o027, "%s: %o: no group write, nothing for others", p, mode)
		require.NotZero(t, mode&0o040, "%s: group-readable", p)
	}
	_, _, mode := owner(filepath.Join(dir, "bin/magento"))
	require.Equal(t, os.FileMode(0o750), mode)
	for _, p := range []string{"var", "pub/media", "pub/sitemaps"} {
		uid, _, mode := owner(filepath.Join(shared, p))
		require.Equal(t, uint32(wwwData), uid, p)
		require.NotZero(t, mode&0o200, p)
	}
	uid, gid, mode := owner(filepath.Join(dir, "generated"))
	require.Equal(t, [2]uint32{wwwData, wwwData}, [2]uint32{uid, gid})
	require.NotZero(t, mode&0o020)
	uid, gid, mode = owner(filepath.Join(shared, "app/etc/env.php"))
	require.Equal(t, [2]uint32{daemon, wwwData}, [2]uint32{uid, gid})
	require.Equal(t, os.FileMode(0o640), mode)
}

// TestHostMagento1 checks the Magento 1 layout: local.xml instead of
// env.php, media/ instead of pub/media, the marker in the release root, no
// bin/magento.
func TestHostMagento1(t *testing.T) {
	f := newHostFixture(t, "")
	f.targets.App = "legacy"
	// Stored under shop/: the agent opens the store at the URI's folder
	// because the URI is not the key it would derive for "legacy".
	m := f.release("2-abcdef1")
	res := f.prepare(m)
	shared := hostops.SharedDir(f.root, "legacy")
	for _, p := range []string{"media", "var", "app/etc/local.xml"} {
		require.Equal(t, filepath.Join(shared, p), readLink(t, filepath.Join(res.ReleaseDir, p)), p)
	}
	b, err := os.ReadFile(filepath.Join(res.ReleaseDir, hostops.ReleaseMarker))
	require.NoError(t, err)
	require.Equal(t, m.ID+"\n", string(b))
	require.NoFileExists(t, f.phpLog, "Magento 1 config is not applied with bin/magento")
	var dec agent.UpgradeDecision
	require.NoError(t, f.exec(f.acts.UpgradeStatus, f.ref(m.ID), &dec))
	require.True(t, dec.Needed, "a first Magento 1 deploy may run every setup script (see TestHostMagento1UpgradeThroughIndexPHP)")
	require.NoError(t, f.exec(f.acts.Switch, f.ref(m.ID), nil))
	require.NoError(t, os.MkdirAll(filepath.Join(shared, "var/cache/mage--0"), 0o755))
	require.NoError(t, f.exec(f.acts.FlushCache, f.ref(m.ID), nil))
	require.NoDirExists(t, filepath.Join(shared, "var/cache"))
	require.DirExists(t, filepath.Join(shared, "var"))
}
