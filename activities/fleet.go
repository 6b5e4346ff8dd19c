package activities

import (
	"context"
	"errors"
	"fmt"
	"sort"

	enums "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/mageflow/mageflow/internal/build/catalog"
	"github.com/mageflow/mageflow/internal/build/release"
	"github.com/mageflow/mageflow/internal/build/store"
	"github.com/mageflow/mageflow/internal/fleet"
	"github.com/mageflow/mageflow/internal/platform/config"
)

// ErrFleet marks provider failures retrying cannot fix (validation,
// permissions, unknown group).
const ErrFleet = "FleetError"

// FleetActivities are the control-side steps of scaling: they talk to the
// group's provider (AWS Auto Scaling, or the local docker model) and read
// the environment's release. Provider errors that AWS marks transient
// (throttling, ScalingActivityInProgress, …) stay retryable; the rest fail
// at once with the provider's hint.
type FleetActivities struct {
	Config *config.Config
	Store  store.Store
	// Client queries a running deploy of the group's environment.
	Client client.Client
	// Fleet opens a group's provider (default OpenFleet).
	Fleet func(ctx context.Context, g *config.Group) (fleet.Provider, error)
}

func (f *FleetActivities) provider(ctx context.Context, group string) (fleet.Provider, *config.Group, error) {
	g := f.Config.Groups[group]
	if g == nil {
		return nil, nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("group %q is not declared under groups:", group), ErrConfig, nil)
	}
	open := f.Fleet
	if open == nil {
		open = OpenFleet
	}
	p, err := open(ctx, g)
	if err != nil {
		return nil, nil, temporal.NewNonRetryableApplicationError(err.Error(), ErrConfig, err)
	}
	return p, g, nil
}

// fleetErr keeps transient provider errors retryable and makes the rest
// final; an expired or already completed lifecycle action is not an error.
func fleetErr(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case fleet.IsRetryable(err):
		return fmt.Errorf("%s: %w", op, err)
	default:
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: %v", op, err), ErrFleet, err)
	}
}

// GroupPlan is what the scaling workflows need to know about a group.
type GroupPlan struct {
	Group    string
	Name     string // at the provider
	App, Env string // the environment deploying to this group ("" if none)
	Balancer string // host running the balancer's agent
	Port     int    // members' port in the upstream
}

// PlanGroup reads the group's settings and the environment that names it.
func (f *FleetActivities) PlanGroup(ctx context.Context, group string) (*GroupPlan, error) {
	g := f.Config.Groups[group]
	if g == nil {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("group %q is not declared under groups:", group), ErrConfig, nil)
	}
	p := &GroupPlan{Group: group, Name: g.Name, Balancer: g.Balancer.Host, Port: g.Balancer.Port}
	if p.Port == 0 {
		p.Port = 80
	}
	for _, app := range f.Config.AppNames() {
		envs := f.Config.Apps[app].Environments
		names := make([]string, 0, len(envs))
		for n := range envs {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			if envs[n].Group == group {
				if p.App != "" {
					return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("group %s is named by %s/%s and %s/%s: one environment per group", group, p.App, p.Env, app, n), ErrConfig, nil)
				}
				p.App, p.Env = app, n
			}
		}
	}
	return p, nil
}

// DescribeGroup reads the group, its instances and warm pool.
func (f *FleetActivities) DescribeGroup(ctx context.Context, group string) (*fleet.Group, error) {
	p, g, err := f.provider(ctx, group)
	if err != nil {
		return nil, err
	}
	out, err := p.Describe(ctx, g.Name)
	return out, fleetErr("describe "+g.Name, err)
}

// SetDesiredInput changes a group's desired capacity.
type SetDesiredInput struct {
	Group   string
	Desired int
}

// SetDesired sets the desired capacity (cooldowns ignored: the workflow
// decides).
func (f *FleetActivities) SetDesired(ctx context.Context, in SetDesiredInput) error {
	p, g, err := f.provider(ctx, in.Group)
	if err != nil {
		return err
	}
	return fleetErr("set desired capacity of "+g.Name, p.SetDesired(ctx, g.Name, in.Desired, false))
}

// TerminateInput terminates one instance.
type TerminateInput struct {
	Group      string
	InstanceID string
	Decrement  bool
}

// Terminate terminates an instance; one already gone counts as done.
func (f *FleetActivities) Terminate(ctx context.Context, in TerminateInput) error {
	p, _, err := f.provider(ctx, in.Group)
	if err != nil {
		return err
	}
	err = p.Terminate(ctx, in.InstanceID, in.Decrement)
	if errors.Is(err, fleet.ErrNotFound) {
		return nil
	}
	return fleetErr("terminate "+in.InstanceID, err)
}

// CompleteInput completes a lifecycle action.
type CompleteInput struct {
	Action fleet.LifecycleAction
	Result fleet.Result
}

// CompleteLifecycle completes the action. "No active Lifecycle Action"
// means it expired (the default result applied) or was completed already:
// reported, never retried forever.
func (f *FleetActivities) CompleteLifecycle(ctx context.Context, in CompleteInput) (string, error) {
	p, _, err := f.groupOfAction(ctx, in.Action)
	if err != nil {
		return "", err
	}
	err = p.CompleteLifecycleAction(ctx, in.Action, in.Result)
	if errors.Is(err, fleet.ErrNoActiveAction) {
		activity.GetLogger(ctx).Warn("lifecycle action already gone (expired or completed)", "instance", in.Action.InstanceID)
		return "expired-or-done", nil
	}
	if err != nil {
		return "", fleetErr("complete lifecycle action of "+in.Action.InstanceID, err)
	}
	return "completed", nil
}

// LifecycleHeartbeat extends the action's timeout while checks run.
func (f *FleetActivities) LifecycleHeartbeat(ctx context.Context, a fleet.LifecycleAction) error {
	p, _, err := f.groupOfAction(ctx, a)
	if err != nil {
		return err
	}
	err = p.RecordLifecycleHeartbeat(ctx, a)
	if errors.Is(err, fleet.ErrNoActiveAction) {
		return nil
	}
	return fleetErr("lifecycle heartbeat of "+a.InstanceID, err)
}

// groupOfAction finds the configured group whose provider name the action
// carries.
func (f *FleetActivities) groupOfAction(ctx context.Context, a fleet.LifecycleAction) (fleet.Provider, *config.Group, error) {
	for name, g := range f.Config.Groups {
		if g != nil && g.Name == a.Group {
			return f.provider(ctx, name)
		}
	}
	return nil, nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("lifecycle action for group %q, which no groups: entry names", a.Group), ErrConfig, nil)
}

// ReleaseForInstanceInput asks which release a new instance must serve.
type ReleaseForInstanceInput struct{ App, Env string }

// ReleaseForInstance returns the release the environment runs — or, while a
// deploy of it is running, the one being deployed (Deploying set), so an
// instance launching mid-deploy never joins on the old code.
func (f *FleetActivities) ReleaseForInstance(ctx context.Context, in ReleaseForInstanceInput) (*release.Meta, error) {
	if f.Client != nil && f.deployRunning(ctx, "deploy/"+in.App+"/"+in.Env) {
		// The deploy workflow's id and status query (workflows.DeployWorkflowID,
		// workflows.QueryStatus; not imported: workflows imports activities).
		v, err := f.Client.QueryWorkflow(ctx, "deploy/"+in.App+"/"+in.Env, "", "status")
		if err == nil {
			var st struct {
				Phase     string
				ReleaseID string
			}
			if v.Get(&st) == nil && st.ReleaseID != "" && st.Phase != "plan" && st.Phase != "approval" && st.Phase != "rollback" {
				m, err := catalog.Get(ctx, f.Store, in.App, st.ReleaseID)
				if err == nil {
					activity.GetLogger(ctx).Info("a deploy is running: the new instance gets its release", "release", st.ReleaseID)
					return m, nil
				}
			}
		}
	}
	st, err := catalog.Env(ctx, f.Store, in.App, in.Env)
	if err != nil {
		return nil, err
	}
	if st == nil || st.Release == nil {
		return nil, nil
	}
	return st.Release, nil
}

// deployRunning reports whether the environment's deploy workflow is
// running now. A closed deploy still answers the status query (with the
// release it failed or finished with), so the query alone would hand a new
// instance the release of a deploy that failed.
func (f *FleetActivities) deployRunning(ctx context.Context, id string) bool {
	d, err := f.Client.DescribeWorkflow(ctx, id, "")
	if err != nil || d == nil {
		return false
	}
	return d.Status == enums.WORKFLOW_EXECUTION_STATUS_RUNNING
}

// PublishImageInput publishes an image as the group's new launch template
// version.
type PublishImageInput struct {
	Group   string
	ImageID string
}

// PublishImage creates the new launch-template version (the old one is
// kept for rollback) and points the group at it. Safe to repeat.
func (f *FleetActivities) PublishImage(ctx context.Context, in PublishImageInput) (*fleet.LaunchTemplateRef, error) {
	p, g, err := f.provider(ctx, in.Group)
	if err != nil {
		return nil, err
	}
	ref, err := p.PublishLaunchTemplateVersion(ctx, g.Name, in.ImageID)
	if err != nil {
		return nil, fleetErr("publish image "+in.ImageID, err)
	}
	return &ref, nil
}

// SetTemplateInput points a group at a launch template version.
type SetTemplateInput struct {
	Group string
	Ref   fleet.LaunchTemplateRef
}

// SetTemplate restores a launch template version (rollback of a refresh).
func (f *FleetActivities) SetTemplate(ctx context.Context, in SetTemplateInput) error {
	p, g, err := f.provider(ctx, in.Group)
	if err != nil {
		return err
	}
	return fleetErr("set launch template of "+g.Name, p.SetLaunchTemplateVersion(ctx, g.Name, in.Ref))
}

// SetMinMaxInput pins or unpins a group's bounds.
type SetMinMaxInput struct {
	Group    string
	Min, Max int
}

// SetMinMax sets the group's bounds (a refresh pins min to the desired
// capacity so autoscaling cannot shrink the group mid-refresh).
func (f *FleetActivities) SetMinMax(ctx context.Context, in SetMinMaxInput) error {
	p, g, err := f.provider(ctx, in.Group)
	if err != nil {
		return err
	}
	return fleetErr("set bounds of "+g.Name, p.SetMinMax(ctx, g.Name, in.Min, in.Max))
}

// CreateImageInput takes an image of an instance.
type CreateImageInput struct {
	Group      string
	InstanceID string
	Name       string
}

// CreateImage starts an image of a running instance (without reboot: the
// instance keeps serving); repeating it with the same name returns the same
// image.
func (f *FleetActivities) CreateImage(ctx context.Context, in CreateImageInput) (string, error) {
	p, _, err := f.provider(ctx, in.Group)
	if err != nil {
		return "", err
	}
	id, err := p.CreateImage(ctx, in.InstanceID, in.Name, fleet.ImageOptions{NoReboot: true, Description: "mageflow image refresh of " + in.Group})
	return id, fleetErr("create image of "+in.InstanceID, err)
}

// ImageStateInput asks whether an image is usable yet.
type ImageStateInput struct{ Group, ImageID string }

// ImageState reports pending, available or failed.
func (f *FleetActivities) ImageState(ctx context.Context, in ImageStateInput) (fleet.ImageState, error) {
	p, _, err := f.provider(ctx, in.Group)
	if err != nil {
		return "", err
	}
	st, err := p.ImageState(ctx, in.ImageID)
	return st, fleetErr("image state of "+in.ImageID, err)
}
