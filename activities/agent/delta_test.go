package agent_test

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"

	"github.com/mageflow/mageflow/activities/agent"
	"github.com/mageflow/mageflow/internal/build/artifact"
	"github.com/mageflow/mageflow/internal/host/hostops"
)

// changeTemplate edits one file of the fixture app, as a one-template
// commit would.
func changeTemplate(t *testing.T, f *hostFixture, text string) string {
	t.Helper()
	rel := "app/code/Vendor/Module/Model/Greeting.php"
	require.NoError(t, os.WriteFile(filepath.Join(f.repo, rel), []byte("<?php // "+text+"\n"), 0o644))
	return rel
}

// addBulk adds files of random bytes (frames' worth) to the fixture app,
// so an artifact has many zstd frames and a delta can skip most.
func addBulk(t *testing.T, f *hostFixture) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 4 {
		b := make([]byte, 3<<20)
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		p := filepath.Join(f.repo, "lib/bulk", fmt.Sprintf("blob%d.bin", i))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, b, 0o644))
	}
}

func nlink(t *testing.T, p string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	require.NoError(t, syscall.Lstat(p, &st))
	return uint64(st.Nlink)
}

// The second release on a host is built from the first: unchanged files
// are hard links, only the changed file's frames are fetched, and the
// first release does not change — not by the delta, not by pruning.
func TestPrepareDeltaFromTheCurrentRelease(t *testing.T) {
	f := newHostFixture(t, "")
	addBulk(t, f)
	r1 := f.release("1-aaaaaaa")
	p1 := f.prepare(r1)
	require.Equal(t, agent.TransferFull, p1.Transfer.Mode)
	require.Contains(t, p1.Transfer.FallbackReason, "no complete release")
	require.Equal(t, r1.Artifact.Size, p1.Transfer.BytesFetched)
	require.NoError(t, f.exec(f.acts.Switch, f.ref(r1.ID), nil))
	before := snapshot(t, p1.ReleaseDir)

	changed := changeTemplate(t, f, "v2")
	r2 := f.release("2-bbbbbbb")
	p2 := f.prepare(r2)
	tr := p2.Transfer
	require.Equal(t, agent.TransferDelta, tr.Mode, "%+v", tr)
	require.Equal(t, r1.ID, tr.Base)
	require.Empty(t, tr.FallbackReason)
	require.Positive(t, tr.FilesLinked)
	// One 4 MiB frame (the changed file and its neighbours) of three.
	require.Less(t, tr.BytesFetched, r2.Artifact.Size/2, "a delta fetches only the frames of changed files: %+v", tr)
	b, err := os.ReadFile(filepath.Join(p2.ReleaseDir, changed))
	require.NoError(t, err)
	require.Equal(t, "<?php // v2\n", string(b))
	require.Equal(t, before, snapshot(t, p1.ReleaseDir), "the older release changed")
	// The marker the host writes comes from the new release, not the base.
	m, err := os.ReadFile(filepath.Join(p2.ReleaseDir, hostops.ReleaseMarkerPath("magento2")))
	require.NoError(t, err)
	require.Equal(t, r2.ID+"\n", string(m))
	require.Greater(t, nlink(t, filepath.Join(p2.ReleaseDir, "lib/bulk/blob0.bin")), uint64(1), "an unchanged file is a hard link")

	// Pruning the older release frees only what no release uses: the new
	// release keeps every file, with its content.
	after2 := snapshot(t, p2.ReleaseDir)
	require.NoError(t, f.exec(f.acts.Switch, f.ref(r2.ID), nil))
	require.NoError(t, hostops.RemoveTree(filepath.Dir(p1.ReleaseDir), r1.ID))
	require.Equal(t, after2, snapshot(t, p2.ReleaseDir), "pruning the base changed the new release")
	require.EqualValues(t, 1, nlink(t, filepath.Join(p2.ReleaseDir, "lib/bulk/blob0.bin")), "the pruned release's links are gone")
}

// A base file edited in place after it was prepared (a hot fix on the
// server, or tampering) must not be linked into the next release: the
// host falls back to the full download and says why.
func TestPrepareDeltaFallsBackWhenTheBaseChanged(t *testing.T) {
	f := newHostFixture(t, "")
	r1 := f.release("1-aaaaaaa")
	p1 := f.prepare(r1)
	require.NoError(t, f.exec(f.acts.Switch, f.ref(r1.ID), nil))
	victim := filepath.Join(p1.ReleaseDir, "composer.json")
	require.NoError(t, os.WriteFile(victim, []byte("<?php /* hot fix */\n"), 0o644))

	changeTemplate(t, f, "v2")
	r2 := f.release("2-bbbbbbb")
	p2 := f.prepare(r2)
	require.Equal(t, agent.TransferFull, p2.Transfer.Mode)
	require.Contains(t, p2.Transfer.FallbackReason, "composer.json")
	b, err := os.ReadFile(filepath.Join(p2.ReleaseDir, "composer.json"))
	require.NoError(t, err)
	require.NotContains(t, string(b), "hot fix", "the edited base file reached the new release")
}

// A release built before delta deploys (no index digest) is downloaded
// whole, with the reason.
func TestPrepareWithoutIndexDownloadsTheArtifact(t *testing.T) {
	f := newHostFixture(t, "")
	r1 := f.release("1-aaaaaaa")
	f.prepare(r1)
	changeTemplate(t, f, "v2")
	r2 := f.release("2-bbbbbbb")
	in := f.prepareInput(r2)
	in.IndexSHA256 = ""
	var res agent.PrepareResult
	require.NoError(t, f.exec(f.acts.Prepare, in, &res))
	require.Equal(t, agent.TransferFull, res.Transfer.Mode)
	require.Contains(t, res.Transfer.FallbackReason, "no per-file index")
}

// A wrong index digest in the workflow input (a swapped index, or a
// tampered artifact) never installs bytes from it: the delta is refused
// and the full download's sha256 check decides.
func TestPrepareDeltaRefusesAnIndexOtherThanRecorded(t *testing.T) {
	f := newHostFixture(t, "")
	r1 := f.release("1-aaaaaaa")
	f.prepare(r1)
	require.NoError(t, f.exec(f.acts.Switch, f.ref(r1.ID), nil))
	changeTemplate(t, f, "v2")
	r2 := f.release("2-bbbbbbb")
	in := f.prepareInput(r2)
	in.IndexSHA256 = strings.Repeat("0", 64)
	var res agent.PrepareResult
	require.NoError(t, f.exec(f.acts.Prepare, in, &res))
	require.Equal(t, agent.TransferFull, res.Transfer.Mode)
	require.NotEmpty(t, res.Transfer.FallbackReason)
	b, err := os.ReadFile(filepath.Join(res.ReleaseDir, "app/code/Vendor/Module/Model/Greeting.php"))
	require.NoError(t, err)
	require.Equal(t, "<?php // v2\n", string(b))
}

// deployThree prepares and switches three releases and prunes with
// keep_releases 2: the first is set aside in the recycle slot.
func deployThree(t *testing.T, f *hostFixture) []agent.PrepareResult {
	t.Helper()
	var out []agent.PrepareResult
	for i := range 3 {
		changeTemplate(t, f, fmt.Sprintf("v%d", i+1))
		r := f.release(fmt.Sprintf("%d-aaaaaa%d", i+1, i))
		out = append(out, f.prepare(r))
		require.NoError(t, f.exec(f.acts.Switch, f.ref(r.ID), nil))
	}
	var pr agent.PruneResult
	require.NoError(t, f.exec(f.acts.Prune, agent.PruneInput{HostTarget: f.targets, Keep: 2}, &pr))
	require.Equal(t, "1-aaaaaa0", pr.SetAside)
	return out
}

// The release Prune set aside is the next delta's tree, and what a local
// user left in it (a web shell, a directory swapped for a link to root's
// files) does not reach the new release; the kept releases and the files
// outside do not change.
func TestPrepareDeltaReusesTheRetiredTree(t *testing.T) {
	f := newHostFixture(t, "")
	bait := newBait(t, f.dir)
	prev := deployThree(t, f)
	slot := filepath.Join(hostops.ReleasesDir(f.root, "shop"), hostops.RecyclePrefix+"1-aaaaaa0")
	require.NoError(t, os.WriteFile(filepath.Join(slot, "app/code/Vendor/Module/Model/Shell.php"), []byte("<?php system($_GET['c']);"), 0o644))
	require.NoError(t, os.RemoveAll(filepath.Join(slot, "app/etc")))
	require.NoError(t, os.Symlink(filepath.Join(bait, "code"), filepath.Join(slot, "app/etc")))
	baitBefore, kept := snapshot(t, bait), map[string]map[string]string{}
	for _, p := range prev[1:] {
		kept[p.ReleaseDir] = snapshot(t, p.ReleaseDir)
	}

	changed := changeTemplate(t, f, "v4")
	r4 := f.release("4-bbbbbbb")
	p4 := f.prepare(r4)
	tr := p4.Transfer
	require.Equal(t, agent.TransferDelta, tr.Mode, "%+v", tr)
	require.Equal(t, "1-aaaaaa0", tr.Recycled, "%+v", tr)
	require.NoDirExists(t, slot)
	require.NoFileExists(t, filepath.Join(p4.ReleaseDir, "app/code/Vendor/Module/Model/Shell.php"))
	fi, err := os.Lstat(filepath.Join(p4.ReleaseDir, "app/etc"))
	require.NoError(t, err)
	require.True(t, fi.IsDir(), "app/etc is still the planted symlink")
	b, err := os.ReadFile(filepath.Join(p4.ReleaseDir, changed))
	require.NoError(t, err)
	require.Equal(t, "<?php // v4\n", string(b))
	require.Equal(t, baitBefore, snapshot(t, bait))
	for dir, snap := range kept {
		require.Equal(t, snap, snapshot(t, dir), "%s changed", dir)
	}
	// The same release prepared on a host with no retired tree.
	g := newHostFixture(t, "")
	changeTemplate(t, g, "v4")
	pg := g.prepare(g.release("4-bbbbbbb"))
	require.Equal(t, contentOf(t, pg.ReleaseDir, g.dir), contentOf(t, p4.ReleaseDir, f.dir))
}

// contentOf is a release as PHP sees it: paths, types, modes, contents
// (the fixture's directory, which the fixture app and the shared links
// name, as <fixture>; the complete marker, which has a time, left out).
func contentOf(t *testing.T, dir, fixture string) map[string]string {
	t.Helper()
	out := map[string]string{}
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		fi, err := os.Lstat(p)
		require.NoError(t, err)
		rel, _ := filepath.Rel(dir, p)
		v := fi.Mode().String()
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			v += " " + string(b)
		} else if fi.Mode()&fs.ModeSymlink != 0 {
			l, _ := os.Readlink(p)
			v += " -> " + l
		}
		if rel != hostops.CompleteMarker && rel != artifact.IndexName {
			out[rel] = strings.ReplaceAll(v, fixture, "<fixture>")
		}
		return nil
	}))
	return out
}

// A process still working in the retired release (a queue consumer, a
// cron job started from it) keeps it: the delta builds a fresh tree and
// says why.
func TestPrepareDeltaLeavesARetiredTreeInUse(t *testing.T) {
	f := newHostFixture(t, "")
	deployThree(t, f)
	slot := filepath.Join(hostops.ReleasesDir(f.root, "shop"), hostops.RecyclePrefix+"1-aaaaaa0")
	cmd := exec.Command("sleep", "60")
	cmd.Dir = filepath.Join(slot, "app")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	changeTemplate(t, f, "v4")
	p4 := f.prepare(f.release("4-bbbbbbb"))
	tr := p4.Transfer
	require.Equal(t, agent.TransferDelta, tr.Mode, "%+v", tr)
	require.Empty(t, tr.Recycled)
	require.Contains(t, tr.RecycleNote, fmt.Sprintf("process %d (sleep) has its cwd", cmd.Process.Pid))
	require.DirExists(t, slot)
}

// Before Prune has retired anything, it stages a spare of current into
// the slot, and the next delta recycles that: the host's second release
// is built from it. What a local user planted in the spare meanwhile does
// not reach the new release, and current does not change.
func TestPruneStagesASpareTheNextDeltaRecycles(t *testing.T) {
	f := newHostFixture(t, "")
	changeTemplate(t, f, "v1")
	r1 := f.release("1-aaaaaa0")
	p1 := f.prepare(r1)
	require.NoError(t, f.exec(f.acts.Switch, f.ref(r1.ID), nil))
	var pr agent.PruneResult
	require.NoError(t, f.exec(f.acts.Prune, agent.PruneInput{HostTarget: f.targets}, &pr))
	require.Empty(t, pr.Removed)
	require.Equal(t, r1.ID, pr.SpareStaging)
	slot := filepath.Join(hostops.ReleasesDir(f.root, "shop"), hostops.RecyclePrefix+r1.ID)
	require.Eventually(t, func() bool { _, err := os.Stat(slot); return err == nil }, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, os.WriteFile(filepath.Join(slot, "pub/shell.php"), []byte("<?php system($_GET['c']);"), 0o644))
	current := snapshot(t, p1.ReleaseDir)
	// Then current's files are hashed, once the spare's links are old
	// enough: the delta need not read them again.
	require.Eventually(t, func() bool { return agent.KnownInodes(f.acts) > 0 }, 10*time.Second, 10*time.Millisecond)

	changed := changeTemplate(t, f, "v2")
	p2 := f.prepare(f.release("2-bbbbbbb"))
	require.Equal(t, agent.TransferDelta, p2.Transfer.Mode, "%+v", p2.Transfer)
	require.Equal(t, r1.ID, p2.Transfer.Recycled, "%+v", p2.Transfer)
	require.Positive(t, p2.Transfer.FilesKnown, "%+v", p2.Transfer)
	require.NoDirExists(t, slot)
	require.NoFileExists(t, filepath.Join(p2.ReleaseDir, "pub/shell.php"))
	b, err := os.ReadFile(filepath.Join(p2.ReleaseDir, changed))
	require.NoError(t, err)
	require.Equal(t, "<?php // v2\n", string(b))
	require.Equal(t, current, snapshot(t, p1.ReleaseDir))
	g := newHostFixture(t, "")
	changeTemplate(t, g, "v2")
	pg := g.prepare(g.release("2-bbbbbbb"))
	require.Equal(t, contentOf(t, pg.ReleaseDir, g.dir), contentOf(t, p2.ReleaseDir, f.dir))

	// The slot is empty again: the next prune stages the new current.
	require.NoError(t, f.exec(f.acts.Switch, f.ref("2-bbbbbbb"), nil))
	require.NoError(t, f.exec(f.acts.Prune, agent.PruneInput{HostTarget: f.targets}, &pr))
	require.Equal(t, "2-bbbbbbb", pr.SpareStaging)
	agent.StopSpares(f.acts)
}

// A slot holding a tree unlike current's (a small release retired after
// the app grew) is replaced by a spare of current.
func TestPruneReplacesASlotUnlikeCurrent(t *testing.T) {
	f := newHostFixture(t, "")
	deployThree(t, f)
	for i := range 40 {
		p := filepath.Join(f.repo, "lib/grown", fmt.Sprintf("Class%d.php", i))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(fmt.Sprintf("<?php class C%d {}\n", i)), 0o644))
	}
	r4 := f.release("4-ccccccc")
	f.prepare(r4)
	require.NoError(t, f.exec(f.acts.Switch, f.ref(r4.ID), nil))
	var pr agent.PruneResult
	require.NoError(t, f.exec(f.acts.Prune, agent.PruneInput{HostTarget: f.targets, Keep: 2}, &pr))
	require.Equal(t, "2-aaaaaa1", pr.SetAside)
	require.Equal(t, r4.ID, pr.SpareStaging)
	rels := hostops.ReleasesDir(f.root, "shop")
	require.Eventually(t, func() bool { id, _ := hostops.RecycleSlot(rels); return id == r4.ID }, 10*time.Second, 10*time.Millisecond)
	require.NoDirExists(t, filepath.Join(rels, hostops.RecyclePrefix+"2-aaaaaa1"))

	// The next retired release is small too; the one after that is as
	// large as current, so it stays in the slot.
	for _, id := range []string{"5-ddddddd", "6-eeeeeee"} {
		agent.StopSpares(f.acts)
		r := f.release(id)
		f.prepare(r)
		require.NoError(t, f.exec(f.acts.Switch, f.ref(r.ID), nil))
		pr = agent.PruneResult{}
		require.NoError(t, f.exec(f.acts.Prune, agent.PruneInput{HostTarget: f.targets, Keep: 2}, &pr))
	}
	require.Equal(t, r4.ID, pr.SetAside)
	require.Empty(t, pr.SpareStaging)
}

// An agent restarted after a deploy (its staging was stopped and removed,
// its hashes were in memory) rebuilds both as it starts: the first delta
// after the restart recycles a spare and reads no base file again.
func TestWarmUpAfterAgentRestart(t *testing.T) {
	f := newHostFixture(t, "")
	changeTemplate(t, f, "v1")
	r1 := f.release("1-aaaaaa0")
	f.prepare(r1)
	require.NoError(t, f.exec(f.acts.Switch, f.ref(r1.ID), nil))
	// The old agent stops before Prune's background work could run.
	agent.StopSpares(f.acts)
	rels := hostops.ReleasesDir(f.root, "shop")
	slot, err := hostops.RecycleSlot(rels)
	require.NoError(t, err)
	require.Empty(t, slot)

	restarted := agent.Restarted(f.acts)
	require.Zero(t, agent.KnownInodes(restarted))
	agent.WarmUp(t.Context(), restarted)
	slot, err = hostops.RecycleSlot(rels)
	require.NoError(t, err)
	require.Equal(t, r1.ID, slot, "a spare of current is staged")
	require.Positive(t, agent.KnownInodes(restarted), "current is hashed")

	f.acts = restarted
	f.env.RegisterActivityWithOptions(restarted, activity.RegisterOptions{DisableAlreadyRegisteredCheck: true})
	changeTemplate(t, f, "v2")
	p2 := f.prepare(f.release("2-bbbbbbb"))
	require.Equal(t, agent.TransferDelta, p2.Transfer.Mode, "%+v", p2.Transfer)
	require.Equal(t, r1.ID, p2.Transfer.Recycled, "%+v", p2.Transfer)
	require.Positive(t, p2.Transfer.FilesKnown, "%+v", p2.Transfer)
	g := newHostFixture(t, "")
	changeTemplate(t, g, "v2")
	pg := g.prepare(g.release("2-bbbbbbb"))
	require.Equal(t, contentOf(t, pg.ReleaseDir, g.dir), contentOf(t, p2.ReleaseDir, f.dir))

	// Stopping the agent during the warm-up leaves nothing half done.
	require.NoError(t, f.exec(f.acts.Switch, f.ref("2-bbbbbbb"), nil))
	again := agent.Restarted(f.acts)
	ctx, cancel := context.WithCancel(t.Context())
	warm := make(chan struct{})
	go func() { defer close(warm); agent.WarmUp(ctx, again) }()
	cancel() // what agentapp.Run does on shutdown
	<-warm
	agent.StopSpares(again)
	assertNoTemps(t, f)
}

// A local user (or a broken hand edit) points current at a release that
// is a symlink to another tree: the warm-up of a starting agent stages no
// spare of that tree and links none of its files.
func TestWarmUpNeverFollowsASymlinkedRelease(t *testing.T) {
	f := newHostFixture(t, "")
	changeTemplate(t, f, "v1")
	r1 := f.release("1-aaaaaa0")
	p1 := f.prepare(r1)
	outside := filepath.Join(f.dir, "outside")
	require.NoError(t, os.CopyFS(outside, os.DirFS(p1.ReleaseDir)))
	bait := filepath.Join(outside, artifact.IndexName)
	var before syscall.Stat_t
	require.NoError(t, syscall.Stat(bait, &before))
	rels := hostops.ReleasesDir(f.root, "shop")
	require.NoError(t, os.Symlink(outside, filepath.Join(rels, "9-fffffff")))
	require.NoError(t, hostops.SwitchCurrent(f.root, "shop", "9-fffffff"))

	restarted := agent.Restarted(f.acts)
	agent.WarmUp(t.Context(), restarted)
	agent.StopSpares(restarted)
	slot, err := hostops.RecycleSlot(rels)
	require.NoError(t, err)
	require.Empty(t, slot, "no spare of the tree behind the link")
	var after syscall.Stat_t
	require.NoError(t, syscall.Stat(bait, &after))
	require.Equal(t, before.Nlink, after.Nlink, "nothing outside was linked")
	assertNoTemps(t, f)
}
