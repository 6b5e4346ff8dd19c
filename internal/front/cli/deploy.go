package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"text/tabwriter"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/mageflow/mageflow/activities"
	"github.com/mageflow/mageflow/internal/build/catalog"
	"github.com/mageflow/mageflow/internal/build/store"
	"github.com/mageflow/mageflow/internal/front/start"
	"github.com/mageflow/mageflow/workflows"
)

func whoami() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		host, _ := os.Hostname()
		return u.Username + "@" + host
	}
	return "cli"
}

func (e *env) deployClient(ctx context.Context, stderr io.Writer) (*start.Deploys, func(), error) {
	c, cfg, err := e.client(ctx, stderr)
	if err != nil {
		return nil, nil, err
	}
	st, err := store.Configured(ctx, cfg.Artifacts)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return &start.Deploys{Temporal: c, Config: cfg, Store: st}, c.Close, nil
}

func runDeploy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return startDeploy(ctx, "deploy", args, stdout, stderr)
}

func runRollback(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return startDeploy(ctx, "rollback", args, stdout, stderr)
}

func startDeploy(ctx context.Context, kind string, args []string, stdout, stderr io.Writer) error {
	e := newFlags(kind, stderr)
	app := e.fs.String("app", "", "app name (required)")
	envName := e.fs.String("env", "", "environment (required)")
	var rel, to *string
	if kind == "deploy" {
		rel = e.fs.String("release", "", "release id (default: the newest release of the environment's branch)")
	} else {
		to = e.fs.String("to", "", "release id to go back to (default: the release before current)")
	}
	force := e.fs.Bool("force", false, "rollback: go below the last database upgrade (only after restoring the database)")
	wait := e.fs.Bool("wait", false, "wait for the deploy to finish")
	queue := e.fs.Bool("queue", false, "if a deploy of the environment runs, wait for it and start after it")
	jsonOut := e.fs.Bool("json", false, "print JSON")
	reason := e.fs.String("reason", "", "why (recorded with the deploy)")
	by := e.fs.String("by", whoami(), "who asks (recorded with the deploy)")
	if err := e.parse(args); err != nil {
		return err
	}
	if *app == "" || *envName == "" {
		return usageError{fmt.Errorf("--app and --env are required, e.g. mageflow %s --app shop --env production", kind)}
	}
	if kind == "deploy" && *force {
		return usageError{errors.New("--force applies to rollback only")}
	}
	dc, closeFn, err := e.deployClient(ctx, stderr)
	if err != nil {
		return err
	}
	defer closeFn()
	req := activities.DeployRequest{App: *app, Env: *envName, Kind: kind, Force: *force, RequestedBy: *by, Reason: *reason}
	if rel != nil {
		req.ReleaseID = *rel
	}
	if to != nil {
		req.ReleaseID = *to
	}
	run, err := dc.Start(ctx, req, *queue)
	if err != nil {
		return err
	}
	link := WorkflowURL(dc.Config, run.GetID(), run.GetRunID())
	if !*wait {
		if *jsonOut {
			return writeJSON(stdout, map[string]string{"workflow_id": run.GetID(), "run_id": run.GetRunID(), "url": link})
		}
		fmt.Fprintf(stdout, "%s started: %s\n  follow it: %s\n", kind, run.GetID(), link)
		return nil
	}
	if !*jsonOut {
		fmt.Fprintf(stderr, "%s of %s to %s running …\n  follow it: %s\n", kind, *app, *envName, link)
	}
	var rec catalog.Deploy
	runErr := run.Get(ctx, &rec)
	if *jsonOut {
		if err := writeJSON(stdout, rec); err != nil {
			return err
		}
	} else if runErr == nil {
		printDeploy(stdout, &rec, link)
	}
	if runErr != nil {
		return fmt.Errorf("%s failed: %w\n  details: %s", kind, runErr, link)
	}
	return nil
}

func printDeploy(w io.Writer, d *catalog.Deploy, link string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "%s of %s to %s: %s\n", d.Kind, d.App, d.Env, d.Outcome)
	fmt.Fprintf(tw, "  release\t%s (previous %s)\n", d.ReleaseID, d.PreviousRelease)
	fmt.Fprintf(tw, "  hosts\t%v\n", d.Hosts)
	fmt.Fprintf(tw, "  upgrade\t%v %v\n", d.UpgradeNeeded, d.UpgradeReasons)
	if d.FinishedAt != nil {
		fmt.Fprintf(tw, "  duration\t%s\n", d.FinishedAt.Sub(d.StartedAt).Round(time.Millisecond))
	}
	for _, s := range d.Steps {
		fmt.Fprintf(tw, "  step %s\t%.2fs\n", s.Name, s.Seconds)
	}
	fmt.Fprintf(tw, "  workflow\t%s\n", link)
	tw.Flush()
}

func runApprove(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return decide(ctx, true, args, stdout, stderr)
}

func runReject(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return decide(ctx, false, args, stdout, stderr)
}

func decide(ctx context.Context, approve bool, args []string, stdout, stderr io.Writer) error {
	name := "reject"
	if approve {
		name = "approve"
	}
	e := newFlags(name, stderr)
	app := e.fs.String("app", "", "app name (required for a deploy)")
	envName := e.fs.String("env", "", "environment (required for a deploy)")
	group := e.fs.String("group", "", "decide the checkpoint of this group's image refresh instead of a deploy")
	by := e.fs.String("by", whoami(), "who decides")
	reason := e.fs.String("reason", "", "why")
	if err := e.parse(args); err != nil {
		return err
	}
	if *group != "" {
		return decideRefresh(ctx, e, approve, *group, *by, *reason, stdout, stderr)
	}
	if *app == "" || *envName == "" {
		return usageError{fmt.Errorf("--app and --env are required (or --group for an image refresh)")}
	}
	if !approve && *reason == "" {
		return usageError{errors.New("say why with --reason")}
	}
	dc, closeFn, err := e.deployClient(ctx, stderr)
	if err != nil {
		return err
	}
	defer closeFn()
	if err := dc.Decide(ctx, *app, *envName, approve, *by, *reason); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%sd the deploy of %s to %s\n", name, *app, *envName)
	return nil
}

func decideRefresh(ctx context.Context, e *env, approve bool, group, by, reason string, stdout, stderr io.Writer) error {
	c, _, err := e.client(ctx, stderr)
	if err != nil {
		return err
	}
	defer c.Close()
	name := workflows.UpdateReject
	if approve {
		name = workflows.UpdateApprove
	}
	h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: workflows.RefreshWorkflowID(group), UpdateName: name,
		Args: []any{workflows.Approval{By: by, Reason: reason}}, WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err != nil {
		return fmt.Errorf("%s the refresh of %s: %w", name, group, err)
	}
	if err := h.Get(ctx, nil); err != nil {
		return fmt.Errorf("%s the refresh of %s refused: %w", name, group, err)
	}
	fmt.Fprintf(stdout, "%sd the refresh of %s\n", name, group)
	return nil
}
