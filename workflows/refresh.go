package workflows

import (
	"fmt"
	"sort"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/mageflow/mageflow/activities"
	"github.com/mageflow/mageflow/activities/agent"
	"github.com/mageflow/mageflow/internal/fleet"
)

// RefreshWorkflowID is one refresh per group at a time.
func RefreshWorkflowID(group string) string { return "refresh/" + group }

// RefreshInput starts WarmPoolImageRefresh.
type RefreshInput struct {
	Group   string
	ImageID string
	// Batch is how many instances are replaced at once (default 1).
	Batch int
	// ApproveAfterFirstBatch waits for the approve update after the first
	// batch (a canary checkpoint).
	ApproveAfterFirstBatch bool
	// ReadyTimeout bounds the wait for a batch's replacements to serve.
	ReadyTimeout time.Duration
	// Poll is how often the group and nginx are read while waiting.
	Poll time.Duration
}

// RefreshResult summarises a refresh.
type RefreshResult struct {
	Group       string
	NewTemplate fleet.LaunchTemplateRef
	Replaced    []string
	Added       []string
}

// WarmPoolImageRefresh rolls a new image through a group and its warm
// pool without ever having fewer ready members in nginx than the group's
// desired capacity: each batch adds replacements first, waits until
// ScaleOutReadiness put them in nginx, and only then removes, drains and
// terminates old instances. On failure it removes what it added, restores
// the launch template and bounds, and says what happened.
func WarmPoolImageRefresh(ctx workflow.Context, in RefreshInput) (*RefreshResult, error) {
	if in.Group == "" {
		return nil, temporal.NewNonRetryableApplicationError("a refresh needs a group", activities.ErrInvalidInput, nil)
	}
	if in.Batch <= 0 {
		in.Batch = 1
	}
	if in.ReadyTimeout <= 0 {
		in.ReadyTimeout = 20 * time.Minute
	}
	if in.Poll <= 0 {
		in.Poll = 5 * time.Second
	}
	r := &refreshRun{in: in, res: &RefreshResult{Group: in.Group}, committed: map[string]bool{}}
	return r.res, r.run(ctx)
}

type refreshRun struct {
	in      RefreshInput
	res     *RefreshResult
	plan    activities.GroupPlan
	start   fleet.Group
	oldRef  fleet.LaunchTemplateRef
	decided bool
	ok      bool
	// committed are replacements whose old instances are gone: an undo
	// keeps them, or the group would shrink.
	committed map[string]bool
	// outOfLB are old instances taken out of nginx and not yet terminated:
	// an undo puts them back before it removes any replacement, or a
	// failure between the two steps would leave nginx short of members.
	outOfLB []string
}

func (r *refreshRun) run(ctx workflow.Context) error {
	in := r.in
	ctl := controlCtx(ctx)
	if err := workflow.ExecuteActivity(ctl, fleetActs.PlanGroup, in.Group).Get(ctx, &r.plan); err != nil {
		return err
	}
	if err := workflow.ExecuteActivity(ctl, fleetActs.DescribeGroup, in.Group).Get(ctx, &r.start); err != nil {
		return err
	}
	r.oldRef = r.start.LaunchTemplate
	if in.ImageID == "" {
		id, err := r.takeImage(ctx)
		if err != nil {
			return err
		}
		r.in.ImageID, in.ImageID = id, id
	}
	var olds []string
	for _, i := range r.start.Instances {
		if i.LifecycleState == fleet.StateInService && !i.InWarmPool {
			olds = append(olds, i.ID)
		}
	}
	sort.Strings(olds)
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("**Publishing** image `%s` for %s (%d instances to replace, batch %d)", in.ImageID, in.Group, len(olds), in.Batch))
	var ref fleet.LaunchTemplateRef
	if err := workflow.ExecuteActivity(ctl, fleetActs.PublishImage, activities.PublishImageInput{Group: in.Group, ImageID: in.ImageID}).Get(ctx, &ref); err != nil {
		return err
	}
	r.res.NewTemplate = ref

	err := r.replace(ctx, olds)
	if err != nil {
		r.undo(ctx)
		workflow.SetCurrentDetails(ctx, fmt.Sprintf("**Refresh failed** and was undone: %v", err))
		return err
	}
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("**Refreshed** %s to `%s`: replaced %v", in.Group, in.ImageID, r.res.Replaced))
	return nil
}

func (r *refreshRun) replace(ctx workflow.Context, olds []string) error {
	in := r.in
	ctl := controlCtx(ctx)
	// Pin: autoscaling cannot shrink the group below its size mid-refresh.
	if err := workflow.ExecuteActivity(ctl, fleetActs.SetMinMax, activities.SetMinMaxInput{Group: in.Group, Min: r.start.Desired, Max: max(r.start.Max, r.start.Desired+in.Batch)}).Get(ctx, nil); err != nil {
		return fmt.Errorf("pin the group: %w", err)
	}
	if err := r.refreshWarmPool(ctx, ctl); err != nil {
		return err
	}
	if r.in.ApproveAfterFirstBatch {
		if err := r.setApprovalHandlers(ctx); err != nil {
			return err
		}
	}
	known := map[string]bool{}
	for _, i := range r.start.Instances {
		known[i.ID] = true
	}
	for b := 0; b < len(olds); b += in.Batch {
		batch := olds[b:min(b+in.Batch, len(olds))]
		if err := r.replaceBatch(ctx, ctl, b/in.Batch+1, batch, known); err != nil {
			return err
		}
		if b == 0 && in.ApproveAfterFirstBatch && len(olds) > len(batch) {
			if err := r.awaitCheckpoint(ctx); err != nil {
				return err
			}
		}
	}
	if err := workflow.ExecuteActivity(ctl, fleetActs.SetMinMax, activities.SetMinMaxInput{Group: in.Group, Min: r.start.Min, Max: r.start.Max}).Get(ctx, nil); err != nil {
		return fmt.Errorf("unpin the group: %w", err)
	}
	return nil
}

// refreshWarmPool replaces the warm pool first, so replacements come up
// warm on the new image: pooled instances on the old image are terminated
// without decrement.
func (r *refreshRun) refreshWarmPool(ctx, ctl workflow.Context) error {
	wp := r.start.WarmPool
	if wp == nil {
		return nil
	}
	for _, i := range wp.Instances {
		if i.ImageID != r.in.ImageID {
			if err := workflow.ExecuteActivity(ctl, fleetActs.Terminate, activities.TerminateInput{Group: r.in.Group, InstanceID: i.ID, Decrement: false}).Get(ctx, nil); err != nil {
				return fmt.Errorf("refresh warm pool instance %s: %w", i.ID, err)
			}
		}
	}
	return nil
}

// setApprovalHandlers registers the approve and reject updates of the
// checkpoint after the first batch.
func (r *refreshRun) setApprovalHandlers(ctx workflow.Context) error {
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateApprove, func(ctx workflow.Context, a Approval) (string, error) {
		r.decided, r.ok = true, true
		return "approved", nil
	}, workflow.UpdateHandlerOptions{Validator: func(a Approval) error {
		if a.By == "" {
			return fmt.Errorf("say who decides (--by)")
		}
		return nil
	}}); err != nil {
		return err
	}
	return workflow.SetUpdateHandlerWithOptions(ctx, UpdateReject, func(ctx workflow.Context, a Approval) (string, error) {
		r.decided, r.ok = true, false
		return "rejected", nil
	}, workflow.UpdateHandlerOptions{})
}

// replaceBatch adds len(batch) replacements, waits until they serve, and
// only then takes the batch out of nginx, drains and terminates it with
// decrement. known gains the replacements.
func (r *refreshRun) replaceBatch(ctx, ctl workflow.Context, n int, batch []string, known map[string]bool) error {
	in := r.in
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("**Batch %d**: adding %d replacement(s) before removing %v", n, len(batch), batch))
	if err := workflow.ExecuteActivity(ctl, fleetActs.SetDesired, activities.SetDesiredInput{Group: in.Group, Desired: r.start.Desired + len(batch)}).Get(ctx, nil); err != nil {
		return fmt.Errorf("add replacements: %w", err)
	}
	added, err := r.waitServing(ctx, known, len(batch))
	if err != nil {
		return err
	}
	r.res.Added = append(r.res.Added, added...)
	for _, id := range added {
		known[id] = true
	}
	// Only now: out of nginx, drained, terminated with decrement.
	if err := r.removeFromLB(ctx, batch); err != nil {
		return err
	}
	for _, id := range batch {
		if err := workflow.ExecuteActivity(ctl, fleetActs.Terminate, activities.TerminateInput{Group: in.Group, InstanceID: id, Decrement: true}).Get(ctx, nil); err != nil {
			return fmt.Errorf("terminate %s: %w", id, err)
		}
		r.res.Replaced = append(r.res.Replaced, id)
		r.outOfLB = r.outOfLB[1:]
	}
	for _, id := range added {
		r.committed[id] = true
	}
	return nil
}

// removeFromLB takes the batch out of the balancer's nginx and drains each
// member, when the group has a balancer.
func (r *refreshRun) removeFromLB(ctx workflow.Context, batch []string) error {
	if r.plan.Balancer == "" {
		return nil
	}
	r.outOfLB = append(r.outOfLB[:0], batch...)
	if err := workflow.ExecuteActivity(hostCtx(ctx, r.plan.Balancer, 2*time.Minute, 0), lbActs.SetMembers, agent.SetMembersInput{Group: r.in.Group, Remove: batch}).Get(ctx, nil); err != nil {
		return fmt.Errorf("remove %v from nginx: %w", batch, err)
	}
	for _, id := range batch {
		_ = workflow.ExecuteActivity(hostCtx(ctx, r.plan.Balancer, 2*time.Minute, 0), lbActs.Drain, agent.DrainInput{Group: r.in.Group, ID: id, Timeout: time.Minute}).Get(ctx, nil)
	}
	return nil
}

// errRejectedAtCheckpoint is the failure of a refresh rejected after its
// first batch.
const errRejectedAtCheckpoint = "rejected at the checkpoint after the first batch"

// awaitCheckpoint waits for `approve` or `reject` after the first batch.
func (r *refreshRun) awaitCheckpoint(ctx workflow.Context) error {
	workflow.SetCurrentDetails(ctx, "**Checkpoint**: first batch replaced; waiting for `approve` or `reject`")
	if err := workflow.Await(ctx, func() bool { return r.decided }); err != nil {
		return err
	}
	if !r.ok {
		return temporal.NewNonRetryableApplicationError(errRejectedAtCheckpoint, "Rejected", nil)
	}
	return nil
}

// waitServing waits until n instances the refresh did not know before are
// in service and members of the nginx upstream.
func (r *refreshRun) waitServing(ctx workflow.Context, known map[string]bool, n int) ([]string, error) {
	deadline := workflow.Now(ctx).Add(r.in.ReadyTimeout)
	for {
		var g fleet.Group
		if err := workflow.ExecuteActivity(controlCtx(ctx), fleetActs.DescribeGroup, r.in.Group).Get(ctx, &g); err != nil {
			return nil, err
		}
		var members agent.MembersResult
		if r.plan.Balancer != "" {
			if err := workflow.ExecuteActivity(hostCtx(ctx, r.plan.Balancer, time.Minute, 0), lbActs.Members, r.in.Group).Get(ctx, &members); err != nil {
				return nil, err
			}
		}
		inLB := map[string]bool{}
		for _, m := range members.Members {
			inLB[m.ID] = true
		}
		var ready []string
		for _, i := range g.Instances {
			if !known[i.ID] && i.LifecycleState == fleet.StateInService && (r.plan.Balancer == "" || inLB[i.ID]) {
				ready = append(ready, i.ID)
			}
		}
		sort.Strings(ready)
		if len(ready) >= n {
			return ready[:n], nil
		}
		if !workflow.Now(ctx).Before(deadline) {
			return nil, fmt.Errorf("replacements not serving after %s (%d of %d ready): check the ScaleOutReadiness runs of the new instances", r.in.ReadyTimeout, len(ready), n)
		}
		if err := workflow.Sleep(ctx, r.in.Poll); err != nil {
			return nil, err
		}
	}
}

// undo removes the instances the refresh added, restores the launch
// template and the group's bounds and size.
func (r *refreshRun) undo(ctx workflow.Context) {
	ctx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	ctl := controlCtx(ctx)
	var g fleet.Group
	if err := workflow.ExecuteActivity(ctl, fleetActs.DescribeGroup, r.in.Group).Get(ctx, &g); err == nil {
		// Old instances still alive but out of nginx serve again first
		// (versioned: runs started before this step existed replay without it).
		if r.plan.Balancer != "" && workflow.GetVersion(ctx, "refresh-undo-readd", workflow.DefaultVersion, 1) == 1 {
			var back []agent.Member
			for _, id := range r.outOfLB {
				if i, ok := g.Instance(id); ok && i.LifecycleState == fleet.StateInService && i.PrivateIP != "" {
					back = append(back, agent.Member{ID: id, Addr: fmt.Sprintf("%s:%d", i.PrivateIP, r.plan.Port)})
				}
			}
			if len(back) > 0 {
				_ = workflow.ExecuteActivity(hostCtx(ctx, r.plan.Balancer, 2*time.Minute, 0), lbActs.SetMembers, agent.SetMembersInput{Group: r.in.Group, Add: back}).Get(ctx, nil)
			}
		}
		known := map[string]bool{}
		for _, i := range r.start.Instances {
			known[i.ID] = true
		}
		for _, i := range g.Instances {
			if !known[i.ID] && !r.committed[i.ID] && !i.InWarmPool {
				if r.plan.Balancer != "" {
					_ = workflow.ExecuteActivity(hostCtx(ctx, r.plan.Balancer, time.Minute, 0), lbActs.SetMembers, agent.SetMembersInput{Group: r.in.Group, Remove: []string{i.ID}}).Get(ctx, nil)
				}
				_ = workflow.ExecuteActivity(ctl, fleetActs.Terminate, activities.TerminateInput{Group: r.in.Group, InstanceID: i.ID, Decrement: true}).Get(ctx, nil)
			}
		}
	}
	_ = workflow.ExecuteActivity(ctl, fleetActs.SetTemplate, activities.SetTemplateInput{Group: r.in.Group, Ref: r.oldRef}).Get(ctx, nil)
	_ = workflow.ExecuteActivity(ctl, fleetActs.SetMinMax, activities.SetMinMaxInput{Group: r.in.Group, Min: r.start.Min, Max: r.start.Max}).Get(ctx, nil)
}

// takeImage builds the new image from a running instance (a scheduled
// refresh picks up what was installed on the fleet since the last image)
// and waits until it is available.
func (r *refreshRun) takeImage(ctx workflow.Context) (string, error) {
	var src string
	for _, i := range r.start.Instances {
		if i.LifecycleState == fleet.StateInService && !i.InWarmPool {
			src = i.ID
			break
		}
	}
	if src == "" {
		return "", temporal.NewNonRetryableApplicationError("no in-service instance to take an image from: pass --image", activities.ErrInvalidInput, nil)
	}
	name := fmt.Sprintf("mageflow-%s-%s", r.in.Group, workflow.GetInfo(ctx).WorkflowStartTime.UTC().Format("20060102-150405"))
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("**Taking an image** `%s` of %s", name, src))
	var id string
	if err := workflow.ExecuteActivity(controlCtx(ctx), fleetActs.CreateImage, activities.CreateImageInput{Group: r.in.Group, InstanceID: src, Name: name}).Get(ctx, &id); err != nil {
		return "", err
	}
	deadline := workflow.Now(ctx).Add(time.Hour)
	for {
		var st fleet.ImageState
		if err := workflow.ExecuteActivity(controlCtx(ctx), fleetActs.ImageState, activities.ImageStateInput{Group: r.in.Group, ImageID: id}).Get(ctx, &st); err != nil {
			return "", err
		}
		switch st {
		case fleet.ImageAvailable:
			return id, nil
		case fleet.ImageFailed:
			return "", temporal.NewNonRetryableApplicationError(fmt.Sprintf("image %s of %s failed", id, src), "ImageFailed", nil)
		}
		if !workflow.Now(ctx).Before(deadline) {
			return "", fmt.Errorf("image %s still not available after an hour", id)
		}
		if err := workflow.Sleep(ctx, 30*time.Second); err != nil {
			return "", err
		}
	}
}
