package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/mageflow/mageflow/internal/build/catalog"
	"github.com/mageflow/mageflow/internal/build/store"
	"github.com/mageflow/mageflow/internal/front/start"
	"github.com/mageflow/mageflow/internal/m1/m1audit"
	"github.com/mageflow/mageflow/internal/platform/config"
	"github.com/mageflow/mageflow/workflows"
)

// errChecksFail makes `mageflow harden --wait` exit 1 after printing the
// report, so a cron job or CI step notices a failing check.
var errChecksFail = errors.New("checks fail")

// runHarden is `mageflow harden --host H [--app A] [--apply] [--wait] [--json]`.
func runHarden(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	e := newFlags("harden", stderr)
	host := e.fs.String("host", "", "host from the config's hosts: whose Magento 1 store to audit (required)")
	app := e.fs.String("app", "", "app the store belongs to (recorded; optional)")
	apply := e.fs.Bool("apply", false, "fix what may be fixed (nginx include, PHP-FPM limit_extensions, sshd, ownership); without it nothing on the host changes except temporary verification canaries, which are always removed")
	wait := e.fs.Bool("wait", false, "wait for the report, print it and exit 1 when any check fails")
	jsonOut := e.fs.Bool("json", false, "print JSON (with --wait: the report)")
	by := e.fs.String("by", whoami(), "who asks (shown in the workflow)")
	if err := e.parse(args); err != nil {
		return err
	}
	if *host == "" {
		return usageError{errors.New("--host is required, e.g. mageflow harden --host web1 --wait (add --apply to fix)")}
	}
	c, cfg, err := e.client(ctx, stderr, func(cfg *config.Config) error {
		if cfg.Hosts[*host] == nil {
			return fmt.Errorf("host %q is not declared under hosts: in %s", *host, cfg.File)
		}
		if *app != "" {
			return hasApp(*app)(cfg)
		}
		return nil
	})
	if err != nil {
		return err
	}
	defer c.Close()
	in := workflows.HardenInput{Host: *host, App: *app, Environment: environmentOf(cfg, *app, *host), Apply: *apply, RequestedBy: "cli:" + *by}
	run, err := start.Harden(ctx, c, cfg, in)
	if err != nil {
		return err
	}
	link := WorkflowURL(cfg, run.GetID(), run.GetRunID())
	if !*wait {
		if *jsonOut {
			return writeJSON(stdout, map[string]string{"workflow_id": run.GetID(), "run_id": run.GetRunID(), "url": link})
		}
		fmt.Fprintf(stdout, "hardening started: %s\n  follow it: %s\n", run.GetID(), link)
		return nil
	}
	if !*jsonOut {
		mode := "audit only"
		if *apply {
			mode = "audit and apply"
		}
		fmt.Fprintf(stderr, "hardening %s (%s) …\n  follow it: %s\n", *host, mode, link)
	}
	var rep m1audit.Report
	if err := run.Get(ctx, &rep); err != nil {
		return fmt.Errorf("hardening of %s failed: %w\n  details: %s", *host, err, link)
	}
	if *jsonOut {
		if err := writeJSON(stdout, rep); err != nil {
			return err
		}
	} else {
		fmt.Fprint(stdout, rep.Markdown())
	}
	if n := rep.Summary.Fail + rep.Summary.Errors; n > 0 {
		return fmt.Errorf("%w: %d of %d checks fail or could not run on %s (report: %s)", errChecksFail, n, rep.Summary.Checks, *host, link)
	}
	return nil
}

// environmentOf is the environment that deploys to host (of app, or of
// any app when app is empty), for the Environment search attribute; ""
// when none or several do.
func environmentOf(cfg *config.Config, app, host string) string {
	found := ""
	for _, an := range cfg.AppNames() {
		if app != "" && an != app {
			continue
		}
		a := cfg.Apps[an]
		if a == nil {
			continue
		}
		for en, env := range a.Environments {
			if env != nil && slices.Contains(env.Hosts, host) {
				if found != "" && found != en {
					return ""
				}
				found = en
			}
		}
	}
	return found
}

// hardenReports serves the stored hardening reports to the dashboard.
type hardenReports struct {
	cfg *config.Config
	st  store.Store
}

func (h hardenReports) Hosts() []string {
	hosts := make([]string, 0, len(h.cfg.Hosts))
	for n := range h.cfg.Hosts {
		hosts = append(hosts, n)
	}
	slices.Sort(hosts)
	return hosts
}

func (h hardenReports) Latest(ctx context.Context, host, ext string) ([]byte, error) {
	return catalog.LatestHardenReport(ctx, h.st, host, ext)
}
