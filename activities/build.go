package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/mageflow/mageflow/activities/internal/heartbeat"
	"github.com/mageflow/mageflow/internal/build/artifact"
	"github.com/mageflow/mageflow/internal/build/builder"
	"github.com/mageflow/mageflow/internal/build/catalog"
	"github.com/mageflow/mageflow/internal/build/gitmeta"
	"github.com/mageflow/mageflow/internal/build/release"
	"github.com/mageflow/mageflow/internal/build/store"
	"github.com/mageflow/mageflow/internal/platform/config"
	"github.com/mageflow/mageflow/internal/platform/metrics"
	"github.com/mageflow/mageflow/internal/platform/secrets"
)

// BuildActivities resolve commits and build, package and store releases.
type BuildActivities struct {
	Config  *config.Config
	Git     *gitmeta.Cache
	Store   store.Store
	Secrets secrets.Area
	Metrics *metrics.Build
	// NewRunner picks the runner for an app (docker or local); tests replace it.
	NewRunner func(app *config.App) (builder.Runner, error)
	// HeartbeatEvery is how often long phases heartbeat (default 10s).
	HeartbeatEvery time.Duration

	slotsOnce sync.Once
	slots     chan struct{}
}

// acquireSlot bounds the builds running at once on this worker
// (worker.max_concurrent_builds): builds are CPU- and disk-heavy, and the
// worker also runs short activities that must not starve behind them.
func (a *BuildActivities) acquireSlot(ctx context.Context) (release func(), err error) {
	a.slotsOnce.Do(func() {
		n := 2
		if a.Config != nil && a.Config.Worker.MaxConcurrentBuilds > 0 {
			n = a.Config.Worker.MaxConcurrentBuilds
		}
		a.slots = make(chan struct{}, n)
	})
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case a.slots <- struct{}{}:
			return func() { <-a.slots }, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
			activity.RecordHeartbeat(ctx, BuildProgress{Phase: "queued", Step: "waiting for a free build slot on this worker"})
		}
	}
}

// DefaultRunner builds the runner an app's build.builder asks for.
func DefaultRunner(app *config.App) (builder.Runner, error) {
	switch app.Build.Builder {
	case "local":
		return builder.NewLocal(), nil
	default:
		r, err := builder.NewDocker(builder.DockerOptions{Image: app.Build.Image, Network: app.Build.Network, CacheVolume: app.Build.CacheVolume})
		if err != nil {
			return nil, temporal.NewNonRetryableApplicationError(err.Error(), ErrConfig, err)
		}
		return r, nil
	}
}

func (a *BuildActivities) app(name string) (*config.App, error) {
	app, err := a.Config.App(name)
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError(err.Error()+" (the worker reads its own config file: update it and restart the worker)", ErrConfig, err)
	}
	return app, nil
}

func (a *BuildActivities) auth() (*gitmeta.AuthOptions, error) {
	g := a.Config.Git
	if g.SSHKey == "" && g.Token == "" {
		return nil, nil
	}
	opt := &gitmeta.AuthOptions{}
	if g.SSHKey != "" {
		// Read checks the key exists and is private; go-git loads it by path.
		if _, err := a.Secrets.Read(g.SSHKey); err != nil {
			return nil, temporal.NewNonRetryableApplicationError(err.Error(), ErrConfig, err)
		}
		opt.SSHKeyPath = filepath.Join(a.Secrets.Dir, strings.TrimPrefix(g.SSHKey, "file:"))
	}
	if g.Token != "" {
		tok, err := a.Secrets.Read(g.Token)
		if err != nil {
			return nil, temporal.NewNonRetryableApplicationError(err.Error(), ErrConfig, err)
		}
		opt.HTTPToken = string(tok)
	}
	return opt, nil
}

// heartbeatWhile records d (the latest value from current) every interval
// until stop is called, so a long git fetch or build step keeps its
// activity alive and visible.
func (a *BuildActivities) heartbeatWhile(ctx context.Context, current func() any) (stop func()) {
	return heartbeat.While(ctx, a.HeartbeatEvery, current)
}

// ResolveCommit fetches the app's mirror and describes the commit a ref
// names, with its build number.
func (a *BuildActivities) ResolveCommit(ctx context.Context, in ResolveInput) (*CommitMeta, error) {
	app, err := a.app(in.App)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(in.Ref) == "" {
		return nil, temporal.NewNonRetryableApplicationError("no ref given: pass a branch, tag or commit sha", ErrInvalidInput, nil)
	}
	auth, err := a.auth()
	if err != nil {
		return nil, err
	}
	stop := a.heartbeatWhile(ctx, func() any { return "fetching " + app.Repo })
	repo, err := a.Git.Sync(ctx, app.Repo, auth)
	stop()
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w (check the repo URL and credentials in the config; the fetch is retried)", app.Repo, err)
	}
	c, err := repo.Resolve(ctx, in.Ref)
	if err != nil {
		if errors.Is(err, gitmeta.ErrUnknownRef) || errors.Is(err, gitmeta.ErrAmbiguousRef) {
			return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: %v", in.App, err), ErrRefNotFound, err)
		}
		return nil, err
	}
	cm := &CommitMeta{
		Commit: c.Hash, ShortCommit: c.Short, Branch: c.Branch, Tag: c.Tag, BuildNumber: c.BuildNumber,
		Message: c.Message, Author: c.AuthorName, AuthorEmail: c.AuthorEmail, CommittedAt: c.When.UTC(),
	}
	if in.Branch != "" {
		cm.Branch = in.Branch
	}
	if cm.ComposerLockHash, err = repo.FileHash(c.Hash, "composer.lock"); err != nil {
		return nil, err
	}
	if cm.PackageLockHash, err = repo.FileHash(c.Hash, "package-lock.json"); err != nil {
		return nil, err
	}
	return cm, nil
}

// FindRelease returns the stored release with this id, or nil. A meta whose
// artifact is missing is treated as absent so the build repairs it.
func (a *BuildActivities) FindRelease(ctx context.Context, in FindReleaseInput) (*release.Meta, error) {
	if !release.ValidID(in.ReleaseID) {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("invalid release id %q", in.ReleaseID), ErrInvalidInput, nil)
	}
	m, err := catalog.Get(ctx, a.Store, in.App, in.ReleaseID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	info, err := a.Store.Stat(ctx, catalog.ArtifactKey(in.App, in.ReleaseID))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if info.SHA256 != "" && info.SHA256 != m.Artifact.SHA256 {
		return nil, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("stored artifact %s has sha256 %s but its meta says %s: the store was modified; remove both and rebuild", m.Artifact.URI, info.SHA256, m.Artifact.SHA256),
			ErrArtifactCorrupt, nil)
	}
	return m, nil
}

// BuildArtifact checks out the commit into a clean directory, runs the app's
// recipe in the builder, packages the result into one artifact and stores
// it with its build log. It heartbeats its phase and step; on retry it skips
// to the upload when the artifact was already packaged.
func (a *BuildActivities) BuildArtifact(ctx context.Context, in BuildArtifactInput) (*BuildArtifactResult, error) {
	app, err := a.app(in.App)
	if err != nil {
		return nil, err
	}
	if !release.ValidID(in.ReleaseID) {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("invalid release id %q", in.ReleaseID), ErrInvalidInput, nil)
	}
	releaseSlot, err := a.acquireSlot(ctx)
	if err != nil {
		return nil, err
	}
	defer releaseSlot()
	started := time.Now()
	logger := activity.GetLogger(ctx)
	work := filepath.Join(a.Config.Worker.WorkDir, in.App, in.ReleaseID)
	src := filepath.Join(work, "src")
	staged := filepath.Join(work, in.ReleaseID+".tar.zst")
	resultFile := filepath.Join(work, "result.json")
	logPath := filepath.Join(work, "build.log")

	var prog BuildProgress
	if activity.HasHeartbeatDetails(ctx) {
		_ = activity.GetHeartbeatDetails(ctx, &prog)
	}
	var mu sync.Mutex
	setProg := func(f func(*BuildProgress)) {
		mu.Lock()
		f(&prog)
		p := prog
		mu.Unlock()
		activity.RecordHeartbeat(ctx, p)
	}
	current := func() any { mu.Lock(); defer mu.Unlock(); return prog }

	var res BuildArtifactResult
	resumed := false
	if prog.Packaged && prog.ArtifactSHA256 != "" {
		// A previous attempt packaged the artifact: reuse it if it is intact.
		if err := artifact.VerifyFile(staged, prog.ArtifactSHA256); err == nil {
			if b, err := os.ReadFile(resultFile); err == nil && json.Unmarshal(b, &res) == nil {
				resumed = true
				logger.Info("resuming after packaging", "artifact", staged)
			}
		}
	}
	if !resumed {
		res, err = a.buildAndPackage(ctx, app, in, work, src, staged, logPath, setProg, current)
		if err != nil {
			a.uploadLog(ctx, in, logPath)
			a.Metrics.Observe(in.App, "failed", time.Since(started), nil)
			return nil, err
		}
		b, _ := json.Marshal(res)
		if err := writeFileAtomic(resultFile, b); err != nil {
			return nil, err
		}
		setProg(func(p *BuildProgress) { p.Phase, p.Packaged, p.ArtifactSHA256 = "upload", true, res.Artifact.SHA256 })
	}

	// Upload: a no-op when the same bytes are already stored.
	stop := a.heartbeatWhile(ctx, current)
	uri, existed, err := a.Store.Put(ctx, catalog.ArtifactKey(in.App, in.ReleaseID), staged, res.Artifact.SHA256, store.PutOptions{})
	stop()
	if err != nil {
		if errors.Is(err, store.ErrConflict) {
			return nil, temporal.NewNonRetryableApplicationError(err.Error()+": a different artifact is stored under this release id; builds are meant to be reproducible per commit, so remove the stored one if it is wrong", ErrArtifactCorrupt, err)
		}
		return nil, fmt.Errorf("store artifact: %w", err)
	}
	res.Artifact.URI = uri
	res.LogURI = a.uploadLog(ctx, in, logPath)
	logger.Info("artifact stored", "uri", uri, "alreadyStored", existed, "sha256", res.Artifact.SHA256)
	a.Metrics.Observe(in.App, "succeeded", time.Since(started), res.Steps)
	if err := os.RemoveAll(work); err != nil {
		logger.Warn("could not clean the work dir", "dir", work, "error", err)
	}
	return &res, nil
}

func (a *BuildActivities) buildAndPackage(ctx context.Context, app *config.App, in BuildArtifactInput, work, src, staged, logPath string,
	setProg func(func(*BuildProgress)), current func() any) (BuildArtifactResult, error) {
	var res BuildArtifactResult
	// A fresh work dir every attempt: a half-built tree is never reused.
	if err := os.RemoveAll(work); err != nil {
		return res, err
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return res, err
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return res, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "mageflow build of %s release %s (commit %s, build #%d)\n", in.App, in.ReleaseID, in.Commit.Commit, in.Commit.BuildNumber)

	setProg(func(p *BuildProgress) { *p = BuildProgress{Phase: "checkout"} })
	if err := a.checkout(ctx, app, in.Commit.Commit, src, logf, current); err != nil {
		return res, err
	}
	if err := a.runRecipe(ctx, app, src, logf, &res, setProg, current); err != nil {
		return res, err
	}
	if err := a.packageBuild(ctx, app, in, src, staged, logf, &res, setProg, current); err != nil {
		return res, err
	}
	return res, nil
}

// checkout exports the commit from the app's mirror into src and refuses a
// committed link out of the checkout before any build step runs next to it;
// packaging checks the build's own links too.
func (a *BuildActivities) checkout(ctx context.Context, app *config.App, commit, src string, logf io.Writer, current func() any) error {
	repo, err := a.Git.Open(app.Repo)
	if err != nil {
		return fmt.Errorf("open mirror of %s: %w", app.Repo, err)
	}
	stop := a.heartbeatWhile(ctx, current)
	err = repo.Export(ctx, commit, src)
	stop()
	if err != nil {
		return fmt.Errorf("check out %s: %w", commit, err)
	}
	if err := artifact.CheckLinks(src, app.SharedPaths()); err != nil {
		return escapingLinkFailure(logf, "commit "+commit, err)
	}
	return nil
}

// runRecipe plans the app's recipe and runs its steps in the builder,
// recording the recipe, builder and steps in res.
func (a *BuildActivities) runRecipe(ctx context.Context, app *config.App, src string, logf io.Writer, res *BuildArtifactResult,
	setProg func(func(*BuildProgress)), current func() any) error {
	steps, err := builder.Plan(BuilderSpec(app), src)
	if err != nil {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("plan the %s recipe: %v", app.Type, err), ErrConfig, err)
	}
	newRunner := a.NewRunner
	if newRunner == nil {
		newRunner = DefaultRunner
	}
	runner, err := newRunner(app)
	if err != nil {
		return err
	}
	res.Recipe = app.Type
	res.Builder = app.Build.Builder
	res.BuilderImage = runner.Describe()
	fmt.Fprintf(logf, "builder: %s\n", res.BuilderImage)

	stop := a.heartbeatWhile(ctx, current)
	res.Steps, err = builder.Execute(ctx, runner, src, steps, logf, func(i, n int, name string) {
		setProg(func(p *BuildProgress) { p.Phase, p.Step, p.Index, p.Total = "build", name, i+1, n })
	})
	stop()
	if err != nil {
		var se *builder.StepError
		if errors.As(err, &se) {
			return temporal.NewNonRetryableApplicationError(se.Error(), ErrBuildStepFailed, nil)
		}
		return err
	}
	return nil
}

// packageBuild writes the artifact of the built tree to staged with its
// release.json inside: everything but the artifact's own checksum, which
// cannot be known before the artifact is written. res gets the artifact.
func (a *BuildActivities) packageBuild(ctx context.Context, app *config.App, in BuildArtifactInput, src, staged string, logf io.Writer,
	res *BuildArtifactResult, setProg func(func(*BuildProgress)), current func() any) error {
	manifest := release.Meta{
		ID: in.ReleaseID, App: in.App, Commit: in.Commit.Commit, ShortCommit: in.Commit.ShortCommit, Branch: in.Commit.Branch,
		BuildNumber: in.Commit.BuildNumber, Message: in.Commit.Message, Author: in.Commit.Author, AuthorEmail: in.Commit.AuthorEmail,
		CommittedAt: in.Commit.CommittedAt, WorkflowID: in.WorkflowID, Recipe: res.Recipe, Builder: res.Builder,
		BuilderImage: res.BuilderImage, ComposerLockHash: in.Commit.ComposerLockHash, PackageLockHash: in.Commit.PackageLockHash,
		Steps: res.Steps, BuiltAt: time.Now().UTC(),
	}
	mb, err := json.MarshalIndent(manifest, "", "  ")
	if err != nil {
		return err
	}
	setProg(func(p *BuildProgress) { p.Phase, p.Step = "package", "" })
	stop := a.heartbeatWhile(ctx, current)
	ar, err := artifact.WriteFile(ctx, staged, src, mb, artifact.Options{Exclude: app.SharedPaths(), ModTime: in.Commit.CommittedAt})
	stop()
	if errors.Is(err, artifact.ErrEscapingLink) {
		return escapingLinkFailure(logf, "build output", err)
	}
	if err != nil {
		return fmt.Errorf("package: %w", err)
	}
	fmt.Fprintf(logf, "packaged %d files, %d bytes -> %d bytes, sha256 %s\n", ar.Files, ar.UncompressedBytes, ar.Size, ar.SHA256)
	res.Artifact = release.Artifact{SHA256: ar.SHA256, Size: ar.Size, UncompressedSize: ar.TarSize, IndexSHA256: ar.IndexSHA256}
	res.Files = ar.Files
	return nil
}

// escapingLinkFailure is the build's failure for a link that leaves the
// build directory (in the commit or made by a build step): the same
// commit builds the same link again, so it is not retried.
func escapingLinkFailure(logf io.Writer, where string, err error) error {
	if errors.Is(err, artifact.ErrEscapingLink) {
		msg := fmt.Sprintf("%s: %v", where, err)
		fmt.Fprintln(logf, msg)
		return temporal.NewNonRetryableApplicationError(msg, ErrBuildStepFailed, err)
	}
	return err
}

// uploadLog stores the build log beside the artifact (overwriting an
// earlier attempt's) and returns its URI; a failure here never hides the
// build's own outcome.
func (a *BuildActivities) uploadLog(ctx context.Context, in BuildArtifactInput, logPath string) string {
	b, err := os.ReadFile(logPath)
	if err != nil {
		return ""
	}
	uri, err := a.Store.PutBytes(ctx, catalog.LogKey(in.App, in.ReleaseID), b, store.PutOptions{Overwrite: true})
	if err != nil {
		activity.GetLogger(ctx).Warn("could not store the build log", "error", err)
		return ""
	}
	return uri
}

// PublishRelease writes the release's meta beside its artifact: the last
// step of a build, after which `mageflow releases` lists it.
func (a *BuildActivities) PublishRelease(ctx context.Context, m *release.Meta) error {
	if m == nil || !release.ValidID(m.ID) {
		return temporal.NewNonRetryableApplicationError("PublishRelease needs a release with a valid id", ErrInvalidInput, nil)
	}
	return catalog.Put(ctx, a.Store, m)
}

// BuilderSpec maps an app's config onto the builder's recipe spec.
func BuilderSpec(app *config.App) builder.Spec {
	b := app.Build
	spec := builder.Spec{
		Type: app.Type, Env: b.Env, Locales: b.Locales, Themes: b.Themes, Jobs: b.Jobs, Magepack: b.Magepack,
		NodeBuildScript: b.Script,
	}
	for _, s := range b.Stores {
		spec.Stores = append(spec.Stores, builder.PWAStore{Code: s.Code, Website: s.Website, Currency: s.Currency})
	}
	for _, s := range b.Steps {
		spec.Steps = append(spec.Steps, builder.CustomStep{Name: s.Name, Run: s.Run, Dir: s.Dir})
	}
	return spec
}

func writeFileAtomic(p string, b []byte) error {
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}
