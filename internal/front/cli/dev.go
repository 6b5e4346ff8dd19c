package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/mageflow/mageflow/internal/build/builder"
	"github.com/mageflow/mageflow/internal/build/catalog"
	"github.com/mageflow/mageflow/internal/build/release"
	"github.com/mageflow/mageflow/internal/front/agentapp"
	"github.com/mageflow/mageflow/internal/front/demo"
	"github.com/mageflow/mageflow/internal/front/devserver"
	"github.com/mageflow/mageflow/internal/front/workerapp"
	"github.com/mageflow/mageflow/internal/host/webstack"
	"github.com/mageflow/mageflow/internal/platform/codec"
	"github.com/mageflow/mageflow/internal/platform/config"
	"github.com/mageflow/mageflow/internal/platform/secrets"
	"github.com/mageflow/mageflow/workflows"
)

// DemoApp is the app name the shipped mageflow.yaml gives the demo store.
const DemoApp = "demo"

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	e, o := devFlags(stderr)
	if err := e.parse(args); err != nil {
		return err
	}
	cfg, err := e.config(true)
	if err != nil {
		return err
	}
	logger := e.logger(stderr)
	var ft *fleetTarget
	if o.fleet {
		if ft, err = findFleet(cfg); err != nil {
			return err
		}
		defer fmt.Fprintf(stdout, fleetLeftRunning, ft.key, ft.group.Name, ft.group.Name)
	}
	devAddresses(cfg, o.ip, o.port, o.uiPort, o.listen)
	if err := devPrepare(cfg, stdout); err != nil {
		return err
	}
	srv, err := startDevServer(ctx, cfg, o, stdout, stderr)
	if err != nil {
		return err
	}
	defer srv.Stop()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	procs, err := startLocalWeb(ctx, cfg, stdout)
	defer func() {
		for _, p := range procs {
			_ = p.Stop()
		}
	}()
	if err != nil {
		return err
	}
	if ft != nil {
		relay, lb, err := startFleetEdge(ctx, cfg, ft, stdout)
		if relay != nil {
			defer relay.Close()
		}
		if err != nil {
			return err
		}
		procs = append(procs, lb)
	}
	started := time.Now()
	errc := make(chan error, 3+len(cfg.Hosts))
	startDevWorkers(ctx, cfg, logger, errc)

	c, cdc, err := dial(ctx, cfg, e.quietLogger(stderr))
	if err != nil {
		return err
	}
	defer c.Close()
	if err := serveDev(ctx, cfg, c, cdc, logger, errc); err != nil {
		return err
	}
	printRunning(stdout, cfg)

	if o.demo || ft != nil {
		if err := runDevDemos(ctx, cfg, c, ft, o.demoSource, started, stdout); err != nil {
			return err
		}
	}
	if o.exitAfter {
		return nil
	}
	return waitDev(ctx, errc, srv.Done(), stdout)
}

// startDevServer starts the Temporal dev server with its history in the
// -db file.
func startDevServer(ctx context.Context, cfg *config.Config, o *devOptions, stdout, stderr io.Writer) (*devserver.Server, error) {
	absDB, _ := filepath.Abs(o.db)
	fmt.Fprintf(stdout, "starting Temporal dev server on %s (UI %s, history in %s)\n", cfg.Temporal.Address, cfg.Temporal.UIURL, absDB)
	return devserver.Start(ctx, devserver.Options{
		CLI: o.cli, IP: o.ip, Port: o.port, UIPort: o.uiPort, DBFile: absDB, Namespace: cfg.Temporal.Namespace,
		CodecEndpoint: strings.TrimRight(cfg.Server.PublicURL, "/") + "/codec", Log: stderr,
	})
}

// startFleetEdge relays Temporal to the fleet's instances, which reach it
// through the docker network's gateway (the dev server keeps listening on
// loopback only), and starts the group's local balancer. A non-nil relay
// is the caller's to close, also with an error.
func startFleetEdge(ctx context.Context, cfg *config.Config, ft *fleetTarget, stdout io.Writer) (net.Listener, *webstack.Proc, error) {
	relay, err := relayTemporal(ctx, cfg, ft)
	if err != nil {
		return nil, nil, err
	}
	fmt.Fprintf(stdout, "instances of group %s reach Temporal at %s\n", ft.key, relay.Addr())
	lb, err := startFleetBalancer(ctx, cfg, ft, stdout)
	if err != nil {
		return relay, nil, err
	}
	return relay, lb, nil
}

// startDevWorkers runs the worker and one agent per local host; each sends
// its end to errc.
func startDevWorkers(ctx context.Context, cfg *config.Config, logger *slog.Logger, errc chan<- error) {
	go func() { errc <- wrap("worker", workerapp.Run(ctx, workerapp.Options{Config: cfg, Logger: logger})) }()
	for _, h := range localHosts(cfg) {
		go func() {
			errc <- wrap("agent "+h, agentapp.Run(ctx, agentapp.Options{Config: cfg, Logger: logger.With("agent", h), Host: h}))
		}()
	}
}

// serveDev starts the HTTP server and returns once it listens, or with the
// first error on errc.
func serveDev(ctx context.Context, cfg *config.Config, c client.Client, cdc *codec.Codec, logger *slog.Logger, errc chan error) error {
	ready := make(chan string, 1)
	go func() { errc <- wrap("http server", Serve(ctx, cfg, c, cdc, logger, ready)) }()
	select {
	case <-ready:
		return nil
	case err := <-errc:
		return err
	}
}

// devOptions are the flags of `mageflow dev`.
type devOptions struct {
	cli, ip, listen, db, demoSource string
	port, uiPort                    int
	demo, exitAfter, fleet          bool
}

func devFlags(stderr io.Writer) (*env, *devOptions) {
	e := newFlags("dev", stderr)
	o := &devOptions{}
	e.fs.StringVar(&o.cli, "temporal-cli", "./bin/temporal", "path to the temporal CLI (v1.5.1)")
	e.fs.StringVar(&o.ip, "ip", "127.0.0.1", "address the dev server, UI and HTTP server bind to")
	e.fs.IntVar(&o.port, "temporal-port", 7233, "Temporal frontend port")
	e.fs.IntVar(&o.uiPort, "ui-port", 8233, "Temporal Web UI port")
	e.fs.StringVar(&o.listen, "listen", "", "mageflow HTTP server address (default server.listen, 127.0.0.1:8080)")
	e.fs.StringVar(&o.db, "db", "./var/temporal.db", "SQLite file of the dev server (kept between runs)")
	e.fs.BoolVar(&o.demo, "demo", true, "push a demo commit through the webhook and print the release")
	e.fs.StringVar(&o.demoSource, "demo-source", "./test/fixtures/magento2-app", "the demo app's source tree")
	e.fs.BoolVar(&o.exitAfter, "exit-after-demo", false, "stop after the demo instead of running until Ctrl-C")
	e.fs.BoolVar(&o.fleet, "fleet", false, "also run the config's docker group behind a local nginx and show a deploy, a scale-out (ScaleOutReadiness) and a WarmPoolImageRefresh; Temporal then listens on the docker network's gateway so instances reach it")
	return e, o
}

// runDevDemos pushes the demo commit through the webhook and, with a
// fleet, runs the fleet demo with the release it built.
func runDevDemos(ctx context.Context, cfg *config.Config, c client.Client, ft *fleetTarget, source string, started time.Time, stdout io.Writer) error {
	rel, err := runDemoBuild(ctx, cfg, c, source, stdout)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if ft != nil {
		if err := runFleetDemo(ctx, cfg, c, ft, rel, started, stdout); err != nil {
			return fmt.Errorf("fleet demo: %w", err)
		}
	}
	return nil
}

// devAddresses points the config at the dev server, its UI and the
// --listen address; the dev stack talks to its own server only.
func devAddresses(cfg *config.Config, ip string, port, uiPort int, listen string) {
	cfg.Temporal.Address = net.JoinHostPort(ip, strconv.Itoa(port))
	cfg.Temporal.UIURL = "http://" + net.JoinHostPort(ip, strconv.Itoa(uiPort))
	if listen != "" {
		cfg.Server.Listen = listen
		cfg.Server.PublicURL = "http://" + listen
	}
	for _, k := range []string{"TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE"} {
		os.Unsetenv(k)
	}
}

// devPrepare runs the start-up checks, each saying what to do, and creates
// the payload key and the secrets the demo needs.
func devPrepare(cfg *config.Config, stdout io.Writer) error {
	if err := devserver.CheckPort("mageflow HTTP server", cfg.Server.Listen, "--listen"); err != nil {
		return err
	}
	if err := devserver.CheckPort("worker metrics", cfg.Worker.MetricsListen, "worker.metrics_listen in the config"); err != nil {
		return err
	}
	if err := checkBuilders(cfg); err != nil {
		return err
	}
	if !cfg.Codec.Disabled {
		created, err := codec.GenerateKeyFile(cfg.Codec.KeyFile)
		if err != nil {
			return fmt.Errorf("create payload key %s: %w", cfg.Codec.KeyFile, err)
		}
		if created {
			fmt.Fprintf(stdout, "created payload encryption key %s\n", cfg.Codec.KeyFile)
		}
	}
	if err := seedWebhookSecrets(cfg); err != nil {
		return err
	}
	return seedDemoSecrets(cfg)
}

// printRunning says where everything of the running dev stack is.
func printRunning(stdout io.Writer, cfg *config.Config) {
	fmt.Fprintf(stdout, "\nmageflow is running:\n  Temporal Web UI   %s\n  dashboard         %s/\n  webhooks          %s/hooks/{github,gitlab,bitbucket}\n  worker metrics    http://%s/metrics\n\n",
		cfg.Temporal.UIURL, cfg.Server.PublicURL, cfg.Server.PublicURL, cfg.Worker.MetricsListen)
	if cfg.Server.Auth.Token != "" {
		fmt.Fprintf(stdout, devCodecHint, cfg.Server.PublicURL, cfg.Server.PublicURL)
	}
}

// waitDev runs the dev stack until Ctrl-C (nil), a part fails or the
// Temporal dev server exits.
func waitDev(ctx context.Context, errc <-chan error, serverDone <-chan error, stdout io.Writer) error {
	fmt.Fprintln(stdout, "press Ctrl-C to stop")
	select {
	case <-ctx.Done():
		fmt.Fprintln(stdout, "\nstopping …")
		return nil
	case err := <-errc:
		return err
	case err := <-serverDone:
		return fmt.Errorf("temporal dev server exited: %v", err)
	}
}

// localHosts are the hosts whose agent `mageflow dev` runs in-process.
func localHosts(cfg *config.Config) []string {
	var hs []string
	for name, h := range cfg.Hosts {
		if h != nil && h.Local {
			hs = append(hs, name)
		}
	}
	sort.Strings(hs)
	return hs
}

func wrap(what string, err error) error {
	if err == nil {
		return fmt.Errorf("%s stopped", what)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// seedWebhookSecrets creates missing file: webhook secrets of apps whose repo
// lives under ./var (the demo), so the first run needs no manual step.
func seedWebhookSecrets(cfg *config.Config) error {
	area := secrets.Area{Dir: cfg.Secrets.Dir}
	for _, name := range cfg.AppNames() {
		a := cfg.Apps[name]
		if a.Webhook == nil || !strings.HasPrefix(a.Webhook.Secret, "file:") {
			continue
		}
		if _, err := area.Read(a.Webhook.Secret); err == nil {
			continue
		}
		if name != DemoApp {
			continue
		}
		b := make([]byte, 24)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		if err := area.Write(strings.TrimPrefix(a.Webhook.Secret, "file:"), []byte(hex.EncodeToString(b))); err != nil {
			return fmt.Errorf("create demo webhook secret: %w", err)
		}
	}
	return nil
}

func runDemoBuild(ctx context.Context, cfg *config.Config, c client.Client, source string, stdout io.Writer) (*release.Meta, error) {
	app, err := cfg.App(DemoApp)
	if err != nil {
		return nil, fmt.Errorf("%w (the shipped mageflow.yaml declares it; run from the repository root or pass --demo=false)", err)
	}
	if app.Webhook == nil {
		return nil, errors.New("the demo app needs a webhook: section")
	}
	branch := "main"
	for _, env := range []string{"staging", "production"} {
		if e := app.Environments[env]; e != nil {
			branch = e.Branch
			break
		}
	}
	repo := demo.Repo{Dir: filepath.Dir(app.Repo), Source: source, Branch: branch}
	if filepath.Base(app.Repo) != "shop.git" {
		return nil, fmt.Errorf("the demo app's repo must be <dir>/shop.git, got %s", app.Repo)
	}
	msg := fmt.Sprintf("Demo change at %s\n\nPushed by `mageflow dev` to show a push becoming a release.", time.Now().UTC().Format(time.RFC3339))
	sha, err := repo.Push(ctx, msg)
	if err != nil {
		return nil, err
	}
	secret, err := secrets.Area{Dir: cfg.Secrets.Dir}.Read(app.Webhook.Secret)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(stdout, "demo: pushed %s to %s (%s); delivering the signed GitHub webhook …\n", sha[:7], repo.Bare(), branch)
	id, err := demo.Delivery{
		URL: strings.TrimRight(cfg.Server.PublicURL, "/") + "/hooks/github", Secret: string(secret),
		RepoURL: "file://" + repo.Bare(), FullName: "mageflow/demo-shop", Branch: branch, After: sha, Message: msg,
	}.Send(ctx)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(stdout, "demo: webhook accepted, building %s\n  follow it: %s\n", id, WorkflowURL(cfg, id, ""))
	var m release.Meta
	if err := c.GetWorkflow(ctx, id, "").Get(ctx, &m); err != nil {
		return nil, fmt.Errorf("build %s: %w (open %s for the failing step)", id, err, WorkflowURL(cfg, id, ""))
	}
	fmt.Fprintln(stdout)
	PrintRelease(stdout, &m, WorkflowURL(cfg, id, ""))
	fmt.Fprintf(stdout, "\n  list releases: ./bin/mageflow releases --app %s\n", DemoApp)
	return &m, waitDemoDeploy(ctx, cfg, c, app, branch, stdout)
}

// waitDemoDeploy follows the auto-deploy the build started and prints where
// the deployed release is served.
func waitDemoDeploy(ctx context.Context, cfg *config.Config, c client.Client, app *config.App, branch string, stdout io.Writer) error {
	env, ok := app.EnvironmentForBranch(branch)
	if !ok || !app.Environments[env].AutoDeploy {
		return nil
	}
	e := app.Environments[env]
	id := workflows.DeployWorkflowID(DemoApp, env)
	fmt.Fprintf(stdout, "\ndemo: deploying to %s (auto_deploy) …\n  follow it: %s\n", env, WorkflowURL(cfg, id, ""))
	var rec catalog.Deploy
	if err := c.GetWorkflow(ctx, id, "").Get(ctx, &rec); err != nil {
		return fmt.Errorf("deploy %s: %w (open %s)", id, err, WorkflowURL(cfg, id, ""))
	}
	printDeploy(stdout, &rec, WorkflowURL(cfg, id, rec.RunID))
	fmt.Fprintf(stdout, "\n  the store: %s  (release %s; push another demo commit: make demo-push)\n", e.URL, rec.ReleaseID)
	fmt.Fprintf(stdout, "  dashboard actions: log in at %s/login with the token in %s\n", cfg.Server.PublicURL, filepath.Join(cfg.Secrets.Dir, strings.TrimPrefix(cfg.Server.Auth.Token, "file:")))
	return nil
}

// devCodecHint tells a newcomer why the Web UI shows encrypted payloads:
// the codec decrypts only for a logged-in operator (docs/operations.md,
// "Web UI codec").
const devCodecHint = `payloads in the Web UI are encrypted; to see them decoded, log in at %s/login
(token below), then in the Web UI's codec dialog (glasses icon) set the endpoint %s/codec
and tick "Include cross-origin credentials" (once per browser)

`

// seedDemoSecrets creates, on first run, the secrets the shipped config
// references for the demo: the dashboard token and the staging env.php
// (whose fixture "database" lives in var/demo/db.json).
func seedDemoSecrets(cfg *config.Config) error {
	area := secrets.Area{Dir: cfg.Secrets.Dir}
	if ref := cfg.Server.Auth.Token; ref != "" {
		if err := seedSecret(area, ref, func() string { return randomHex(16) }); err != nil {
			return err
		}
	}
	app := cfg.Apps[DemoApp]
	if app == nil {
		return nil
	}
	for _, name := range sortedEnvNames(app) {
		e := app.Environments[name]
		if e.EnvPHP == "" {
			continue
		}
		db := filepath.Join(filepath.Dir(app.Repo), name+"-db.json")
		php := fmt.Sprintf("<?php\nreturn ['MAGE_MODE' => 'production', 'fixture_db' => %q];\n", db)
		if err := seedSecret(area, e.EnvPHP, func() string { return php }); err != nil {
			return err
		}
	}
	return nil
}

func sortedEnvNames(a *config.App) []string {
	var n []string
	for k := range a.Environments {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// checkBuilders verifies the Docker engine and builder image up front when an
// app builds with docker.
func checkBuilders(cfg *config.Config) error {
	for _, name := range cfg.AppNames() {
		a := cfg.Apps[name]
		if a.Build.Builder != "docker" {
			continue
		}
		d, err := builder.NewDocker(builder.DockerOptions{Image: a.Build.Image})
		if err != nil {
			return fmt.Errorf("app %s builds with docker: %w", name, err)
		}
		d.Close()
	}
	return nil
}

// runDemo pushes one more demo commit through the webhook of a running
// `mageflow dev` and follows its build and deploy (`make demo-push`).
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	e := newFlags("demo", stderr)
	source := e.fs.String("demo-source", "./test/fixtures/magento2-app", "the demo app's source tree (first run only)")
	if err := e.parse(args); err != nil {
		return err
	}
	cfg, err := e.config(false)
	if err != nil {
		return err
	}
	c, err := e.dialQuiet(ctx, cfg, stderr)
	if err != nil {
		return fmt.Errorf("%w (is `make run` running?)", err)
	}
	defer c.Close()
	_, err = runDemoBuild(ctx, cfg, c, *source, stdout)
	return err
}
