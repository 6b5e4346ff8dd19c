package cli

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/mageflow/mageflow/internal/front/start"
	"github.com/mageflow/mageflow/workflows"
)

// errRefreshGroup is the usage error of a refresh without a group.
var errRefreshGroup = errors.New("--group is required, e.g. mageflow refresh --group web --batch 1 --wait (add --image ami-0abc to roll a given image; without it an image of a running instance is taken)")

// runRefresh starts WarmPoolImageRefresh for a group.
func runRefresh(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	e := newFlags("refresh", stderr)
	group := e.fs.String("group", "", "group name from the config's groups: (required)")
	image := e.fs.String("image", "", "the new machine image (AMI id, or image tag for the docker provider); empty: an image of a running instance of the group is taken first")
	batch := e.fs.Int("batch", 1, "instances replaced at once")
	checkpoint := e.fs.Bool("checkpoint", false, "wait for `mageflow approve --group G` after the first batch")
	wait := e.fs.Bool("wait", false, "wait for the refresh to finish")
	if err := e.parse(args); err != nil {
		return err
	}
	if *group == "" {
		return usageError{errRefreshGroup}
	}
	if *batch < 1 {
		return usageError{errors.New("--batch must be at least 1")}
	}
	c, cfg, err := e.client(ctx, stderr)
	if err != nil {
		return err
	}
	defer c.Close()
	run, err := (&start.Fleet{Client: c, Config: cfg}).Refresh(ctx, workflows.RefreshInput{Group: *group, ImageID: *image, Batch: *batch, ApproveAfterFirstBatch: *checkpoint})
	if err != nil {
		return fmt.Errorf("start refresh of %s: %w (one refresh per group at a time)", *group, err)
	}
	link := WorkflowURL(cfg, run.GetID(), run.GetRunID())
	fmt.Fprintf(stdout, "refresh started: %s\n  follow it: %s\n", run.GetID(), link)
	if !*wait {
		return nil
	}
	var res workflows.RefreshResult
	if err := run.Get(ctx, &res); err != nil {
		return fmt.Errorf("refresh failed: %w\n  details: %s", err, link)
	}
	fmt.Fprintf(stdout, "refreshed %s to launch template version %s: replaced %v with %v\n", *group, res.NewTemplate.Version, res.Replaced, res.Added)
	return nil
}
