package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
)

// Defaults for DockerOptions.
const (
	DefaultImage       = "mageflow/builder:bookworm"
	DefaultCacheVolume = "mageflow-build-cache"
	DefaultNetwork     = "none"
)

// Paths inside the builder container.
const (
	containerCheckout = "/build"
	containerCache    = "/cache"
)

// DockerOptions configures the Docker runner. Zero values mean the defaults.
type DockerOptions struct {
	// Image is the builder image (build.image); it must exist locally,
	// nothing is pulled.
	Image string
	// CacheVolume is a named volume mounted at /cache that keeps composer
	// and npm downloads between builds.
	CacheVolume string
	// Network is the container network mode. "none" (the default) means a
	// build has no route anywhere: dependencies must come from the lockfile's
	// local sources or the cache, and a build cannot leak or fetch anything.
	Network string
	// User is "uid:gid" the steps run as; default the calling process's, so
	// files written to the bind-mounted checkout belong to the caller.
	User string
}

// Docker runs each step in a fresh container of the builder image with the
// checkout bind-mounted at /build.
type Docker struct {
	cli     *client.Client
	opts    DockerOptions
	imageID string
}

// NewDocker connects to the engine from the environment (DOCKER_HOST…) and
// checks the builder image is present, so misconfiguration fails before a
// build starts rather than at its first step.
func NewDocker(opts DockerOptions) (*Docker, error) {
	if opts.Image == "" {
		opts.Image = DefaultImage
	}
	if opts.CacheVolume == "" {
		opts.CacheVolume = DefaultCacheVolume
	}
	if opts.Network == "" {
		opts.Network = DefaultNetwork
	}
	if opts.User == "" {
		opts.User = fmt.Sprintf("%d:%d", os.Getuid(), os.Getgid())
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := cli.Ping(ctx); err != nil {
		host := cli.DaemonHost()
		_ = cli.Close()
		return nil, fmt.Errorf("Docker engine not reachable at %s: start it or set build.builder: local (%v)", host, err)
	}
	img, err := cli.ImageInspect(ctx, opts.Image)
	if err != nil {
		_ = cli.Close()
		if cerrdefs.IsNotFound(err) {
			return nil, fmt.Errorf("builder image %s not found: run `make builder-image` (internal/build/builder/image/build.sh) or set build.image to an image available on this host", opts.Image)
		}
		return nil, fmt.Errorf("inspect builder image %s: %w", opts.Image, err)
	}
	return &Docker{cli: cli, opts: opts, imageID: img.ID}, nil
}

// Close releases the engine connection.
func (d *Docker) Close() error { return d.cli.Close() }

// Describe implements Runner: the image id, which pins the exact toolchain a
// release was built with.
func (d *Docker) Describe() string { return "docker image " + d.imageID }

// ImageID is the resolved id of the builder image.
func (d *Docker) ImageID() string { return d.imageID }

// removeTimeout bounds cleanup, which runs even after ctx is cancelled.
const removeTimeout = 30 * time.Second

// Run implements Runner.
func (d *Docker) Run(ctx context.Context, checkoutDir string, step Step, log io.Writer) (int, error) {
	if _, err := stepDir(checkoutDir, step.Dir); err != nil {
		return -1, err
	}
	abs, err := filepath.Abs(checkoutDir)
	if err != nil {
		return -1, err
	}
	id, err := d.create(ctx, abs, step)
	if err != nil {
		return -1, err
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.Background(), removeTimeout)
		defer cancel()
		_ = d.cli.ContainerRemove(rctx, id, container.RemoveOptions{Force: true, RemoveVolumes: false})
	}()
	return d.attachAndRun(ctx, id, log)
}

// create creates the step's container with the checkout at abs and the
// cache volume mounted, and returns its id.
func (d *Docker) create(ctx context.Context, abs string, step Step) (string, error) {
	dir, _ := cleanRelDir(step.Dir)
	env := map[string]string{
		"HOME":             "/tmp",
		"COMPOSER_HOME":    containerCache + "/composer",
		"npm_config_cache": containerCache + "/npm",
		"LANG":             "C.UTF-8",
	}
	for k, v := range step.Env {
		env[k] = v
	}
	created, err := d.cli.ContainerCreate(ctx,
		&container.Config{
			Image:        d.opts.Image,
			Cmd:          []string{"sh", "-euc", step.Script},
			WorkingDir:   path.Join(containerCheckout, dir),
			Env:          envList(env),
			User:         d.opts.User,
			AttachStdout: true,
			AttachStderr: true,
			Labels:       map[string]string{"org.mageflow.builder.step": step.Name},
		},
		&container.HostConfig{
			NetworkMode: container.NetworkMode(d.opts.Network),
			AutoRemove:  false,
			Mounts: []mount.Mount{
				{Type: mount.TypeBind, Source: abs, Target: containerCheckout},
				{Type: mount.TypeVolume, Source: d.opts.CacheVolume, Target: containerCache},
			},
		}, nil, nil, "")
	if err != nil {
		return "", fmt.Errorf("create build container from %s: %w", d.opts.Image, err)
	}
	return created.ID, nil
}

// attachAndRun attaches to container id, starts it and returns its exit
// code once it exits, stopping it when ctx ends first.
func (d *Docker) attachAndRun(ctx context.Context, id string, log io.Writer) (int, error) {
	// Attach before start so no output is lost, independent of the
	// daemon's log driver.
	att, err := d.cli.ContainerAttach(ctx, id, container.AttachOptions{Stream: true, Stdout: true, Stderr: true})
	if err != nil {
		return -1, fmt.Errorf("attach to build container: %w", err)
	}
	defer att.Close()
	copied := make(chan error, 1)
	go func() {
		_, err := stdcopy.StdCopy(log, log, att.Reader)
		copied <- err
	}()

	waitCh, waitErr := d.cli.ContainerWait(ctx, id, container.WaitConditionNextExit)
	if err := d.cli.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		return -1, fmt.Errorf("start build container: %w", err)
	}
	select {
	case res := <-waitCh:
		// The stream ends when the container's stdio closes; drain it so the
		// log (and the failure tail) is complete.
		select {
		case <-copied:
		case <-time.After(10 * time.Second):
		}
		if res.Error != nil {
			return -1, fmt.Errorf("build container: %s", res.Error.Message)
		}
		return int(res.StatusCode), nil
	case err := <-waitErr:
		if ctx.Err() != nil {
			return -1, d.stop(ctx, id)
		}
		return -1, fmt.Errorf("wait for build container: %w", err)
	case <-ctx.Done():
		return -1, d.stop(ctx, id)
	}
}

// stop force-removes (kills) a container whose step was cancelled.
func (d *Docker) stop(ctx context.Context, id string) error {
	rctx, cancel := context.WithTimeout(context.Background(), removeTimeout)
	defer cancel()
	if err := d.cli.ContainerRemove(rctx, id, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		return errors.Join(fmt.Errorf("step stopped: %w", ctx.Err()), fmt.Errorf("remove build container %s: %w", id[:12], err))
	}
	return fmt.Errorf("step stopped: %w", ctx.Err())
}
