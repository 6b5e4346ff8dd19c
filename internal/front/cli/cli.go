// Package cli implements the `mageflow` command. Each subcommand parses its
// own flags, loads the config and talks to Temporal through the same client
// setup as the worker, so what the CLI starts is what the worker runs.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/mageflow/mageflow/internal/build/catalog"
	"github.com/mageflow/mageflow/internal/build/release"
	"github.com/mageflow/mageflow/internal/build/store"
	"github.com/mageflow/mageflow/internal/front/start"
	"github.com/mageflow/mageflow/internal/front/tclient"
	"github.com/mageflow/mageflow/internal/platform/codec"
	"github.com/mageflow/mageflow/internal/platform/config"
	"github.com/mageflow/mageflow/internal/platform/units"
)

// Version is set at build time with -ldflags.
var Version = "dev"

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"dev", "run the embedded default: Temporal dev server, worker, HTTP server and the demo", runDev},
		{"cluster", "run the demo on a real Temporal cluster: PostgreSQL, frontend/history/matching/worker processes, Web UI, 2 control workers, serve", runCluster},
		{"demo", "push another demo commit to a running `mageflow dev` and follow its build and deploy", runDemo},
		{"serve", "run the HTTP server: webhooks, dashboard, codec endpoints, /healthz", runServe},
		{"build", "build a release of an app: --app A --ref BRANCH|TAG|SHA [--wait] [--json]", runBuild},
		{"releases", "list an app's releases, newest first: --app A [--json]", runReleases},
		{"deploy", "deploy a release: --app A --env E [--release ID] [--wait] [--queue] [--json]", runDeploy},
		{"rollback", "switch back to an earlier release: --app A --env E [--to ID] [--force] [--wait]", runRollback},
		{"refresh", "roll a new image through a group and its warm pool: --group G [--image ID] [--batch N] [--checkpoint] [--wait]", runRefresh},
		{"harden", "audit (and with --apply fix) a Magento 1 host: --host H [--app A] [--apply] [--wait] [--json]", runHarden},
		{"schedule", "keep the config's Temporal Schedules in sync: apply | list", runSchedule},
		{"approve", "approve the deploy waiting for approval: --app A --env E [--by WHO] [--reason WHY]", runApprove},
		{"reject", "reject the deploy waiting for approval: --app A --env E --reason WHY", runReject},
		{"version", "print the version", func(_ context.Context, _ []string, out, _ io.Writer) error {
			fmt.Fprintln(out, "mageflow", Version)
			return nil
		}},
	}
}

// Main runs the CLI and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) < 1 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) < 1 {
			return 2
		}
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	for _, c := range commands() {
		if c.name == args[0] {
			err := c.run(ctx, args[1:], stdout, stderr)
			if err == nil {
				return 0
			}
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			var ue usageError
			if errors.As(err, &ue) {
				fmt.Fprintf(stderr, "mageflow %s: %v\n", c.name, err)
				return 2
			}
			fmt.Fprintf(stderr, "mageflow %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "mageflow: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: mageflow <command> [flags]\n\ncommands:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range commands() {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nEvery command takes --config FILE (default ./mageflow.yaml or $MAGEFLOW_CONFIG).\nTemporal client settings: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_* (override the config).")
}

type usageError struct{ error }

// common flags and the loaded config.
type env struct {
	fs         *flag.FlagSet
	configPath *string
	logLevel   *string
}

func newFlags(name string, stderr io.Writer) *env {
	fs := flag.NewFlagSet("mageflow "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return &env{
		fs:         fs,
		configPath: fs.String("config", "", "config file (default ./mageflow.yaml, or $MAGEFLOW_CONFIG)"),
		logLevel:   fs.String("log-level", "info", "log level: debug, info, warn, error"),
	}
}

func (e *env) parse(args []string) error {
	if err := e.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if e.fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", e.fs.Arg(0))}
	}
	return nil
}

func (e *env) config(allowMissing bool) (*config.Config, error) {
	p := config.Path(*e.configPath)
	// An explicitly named file must exist.
	return config.Load(p, allowMissing && *e.configPath == "" && os.Getenv(config.EnvFile) == "")
}

func (e *env) logger(w io.Writer) *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*e.logLevel)); err != nil {
		lvl = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl}))
}

// dial connects to Temporal the way the worker does (same address,
// namespace and payload codec); the codec is returned for servers that
// answer the Web UI's decode requests.
func dial(ctx context.Context, cfg *config.Config, logger *slog.Logger) (client.Client, *codec.Codec, error) {
	dc, cdc, err := tclient.DataConverter(cfg)
	if err != nil {
		return nil, nil, err
	}
	opts, err := tclient.Options(cfg, logger, dc, nil)
	if err != nil {
		return nil, nil, err
	}
	c, err := tclient.Dial(ctx, opts)
	if err != nil {
		return nil, nil, err
	}
	return c, cdc, nil
}

// dialQuiet is dial with the CLI's quiet logger.
func (e *env) dialQuiet(ctx context.Context, cfg *config.Config, stderr io.Writer) (client.Client, error) {
	c, _, err := dial(ctx, cfg, e.quietLogger(stderr))
	return c, err
}

// client loads the config (it must exist), runs checks on it before any
// connection is made (so a wrong --app fails without a server), then
// dials Temporal. The caller closes the client.
func (e *env) client(ctx context.Context, stderr io.Writer, checks ...func(*config.Config) error) (client.Client, *config.Config, error) {
	cfg, err := e.config(false)
	if err != nil {
		return nil, nil, err
	}
	for _, check := range checks {
		if err := check(cfg); err != nil {
			return nil, nil, err
		}
	}
	c, err := e.dialQuiet(ctx, cfg, stderr)
	if err != nil {
		return nil, nil, err
	}
	return c, cfg, nil
}

// hasApp is a check for client: the config declares app.
func hasApp(app string) func(*config.Config) error {
	return func(cfg *config.Config) error {
		_, err := cfg.App(app)
		return err
	}
}

// quietLogger keeps SDK chatter off a CLI's terminal unless asked for.
func (e *env) quietLogger(w io.Writer) *slog.Logger {
	if *e.logLevel == "info" {
		return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return e.logger(w)
}

func runBuild(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	e := newFlags("build", stderr)
	app := e.fs.String("app", "", "app name from the config (required)")
	ref := e.fs.String("ref", "", "branch, tag or commit sha to build (required)")
	wait := e.fs.Bool("wait", false, "wait for the build to finish and print the release")
	jsonOut := e.fs.Bool("json", false, "print JSON (with --wait: the release object)")
	if err := e.parse(args); err != nil {
		return err
	}
	if *app == "" || *ref == "" {
		return usageError{errors.New("--app and --ref are required, e.g. mageflow build --app shop --ref main --wait")}
	}
	c, cfg, err := e.client(ctx, stderr, hasApp(*app))
	if err != nil {
		return err
	}
	defer c.Close()
	st := &start.Builds{Client: c, Config: cfg}
	run, err := st.Start(ctx, start.BuildRequest{App: *app, Ref: *ref, Trigger: "cli"})
	if err != nil {
		return err
	}
	link := WorkflowURL(cfg, run.GetID(), run.GetRunID())
	if !*wait {
		if *jsonOut {
			return json.NewEncoder(stdout).Encode(map[string]string{"workflow_id": run.GetID(), "run_id": run.GetRunID(), "url": link})
		}
		fmt.Fprintf(stdout, "build started: %s\n  follow it: %s\n", run.GetID(), link)
		return nil
	}
	if !*jsonOut {
		fmt.Fprintf(stderr, "building %s (%s) …\n  follow it: %s\n", run.GetID(), *ref, link)
	}
	var m release.Meta
	if err := run.Get(ctx, &m); err != nil {
		return fmt.Errorf("build %s failed: %w\n  details and build log: %s", run.GetID(), err, link)
	}
	if *jsonOut {
		return writeJSON(stdout, m)
	}
	printRelease(stdout, &m, link)
	return nil
}

func runReleases(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	e := newFlags("releases", stderr)
	app := e.fs.String("app", "", "app name from the config (required)")
	jsonOut := e.fs.Bool("json", false, "print a JSON array")
	if err := e.parse(args); err != nil {
		return err
	}
	if *app == "" {
		return usageError{errors.New("--app is required")}
	}
	cfg, err := e.config(false)
	if err != nil {
		return err
	}
	if _, err := cfg.App(*app); err != nil {
		return err
	}
	st, err := store.Configured(ctx, cfg.Artifacts)
	if err != nil {
		return err
	}
	list, err := catalog.List(ctx, st, *app)
	if err != nil {
		return err
	}
	if *jsonOut {
		return writeJSON(stdout, list)
	}
	if len(list) == 0 {
		fmt.Fprintf(stdout, "no releases of %s yet: run mageflow build --app %s --ref BRANCH\n", *app, *app)
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RELEASE\tBUILD\tBRANCH\tCOMMIT\tAUTHOR\tCOMMITTED\tSIZE\tMESSAGE")
	for _, m := range list {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, m.BuildNumber, m.Branch, m.ShortCommit, m.Author,
			m.CommittedAt.Local().Format("2006-01-02 15:04"), units.Bytes(m.Artifact.Size), units.FirstLine(m.Message, messageWidth))
	}
	return tw.Flush()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// PrintRelease prints a release for people.
func printRelease(w io.Writer, m *release.Meta, link string) {
	fmt.Fprintf(w, "release %s of %s\n", m.ID, m.App)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  commit\t%s (%s)\n", m.Commit, m.ShortCommit)
	fmt.Fprintf(tw, "  branch\t%s\n", m.Branch)
	fmt.Fprintf(tw, "  build number\t%d\n", m.BuildNumber)
	fmt.Fprintf(tw, "  author\t%s <%s>\n", m.Author, m.AuthorEmail)
	fmt.Fprintf(tw, "  committed\t%s\n", m.CommittedAt.Format(time.RFC3339))
	fmt.Fprintf(tw, "  message\t%s\n", units.FirstLine(m.Message, messageWidth))
	fmt.Fprintf(tw, "  artifact\t%s\n", m.Artifact.URI)
	fmt.Fprintf(tw, "  sha256\t%s\n", m.Artifact.SHA256)
	fmt.Fprintf(tw, "  size\t%s\n", units.Bytes(m.Artifact.Size))
	var steps []string
	for _, s := range m.Steps {
		steps = append(steps, fmt.Sprintf("%s %.1fs", s.Name, s.Seconds))
	}
	if len(steps) > 0 {
		fmt.Fprintf(tw, "  steps\t%s\n", strings.Join(steps, ", "))
	}
	if link != "" {
		fmt.Fprintf(tw, "  workflow\t%s\n", link)
	}
	tw.Flush()
}

// PrintRelease is exported for the dev command's demo.
func PrintRelease(w io.Writer, m *release.Meta, link string) { printRelease(w, m, link) }

// WorkflowURL links a workflow (with runID, that run) in the config's Web UI.
func WorkflowURL(cfg *config.Config, id, runID string) string {
	return tclient.WorkflowURL(cfg.Temporal.UIURL, cfg.Temporal.Namespace, id, runID)
}

// messageWidth is the most of a commit message's first line a release
// listing shows.
const messageWidth = 60
