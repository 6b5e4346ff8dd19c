package dockerfleet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/google/uuid"

	"github.com/mageflow/mageflow/internal/fleet"
)

// EnsureGroup creates the group or updates it to spec. Idempotent: on an
// existing group, bounds, desired capacity, image and warm pool are applied
// only when they differ from the spec last applied, so re-running the same
// spec (every `mageflow dev` start) does not undo what workflows changed
// since (a refresh's pinned minimum, a published version). A changed image
// becomes a new launch template version.
func (p *Provider) EnsureGroup(ctx context.Context, s GroupSpec) error {
	if err := s.Validate(); err != nil {
		return err
	}
	if s.WarmPool != nil && s.WarmPool.State == "" {
		wp := *s.WarmPool
		wp.State = fleet.PoolStopped
		s.WarmPool = &wp
	}
	return p.wrap("EnsureGroup", s.Name, p.update(s.Name, true, func(st *groupState) error {
		old := st.Spec
		fresh := len(st.Versions) == 0
		if fresh || old.Min != s.Min || old.Max != s.Max || old.Desired != s.Desired {
			st.Min, st.Max, st.Desired = s.Min, s.Max, s.Desired
		}
		if fresh || old.Image != s.Image {
			st.publish(s.Image)
		}
		if fresh || !reflect.DeepEqual(old.WarmPool, s.WarmPool) {
			st.WarmPool = nil
			if s.WarmPool != nil {
				st.WarmPool = &warmPool{*s.WarmPool}
			}
		}
		st.Spec = s
		return nil
	}))
}

// publish makes image the current version, appending one unless the
// current version already launches it.
func (st *groupState) publish(image string) int {
	if v, ok := st.version(st.Current); ok && v.Image == image {
		return st.Current
	}
	n := len(st.Versions) + 1
	st.Versions = append(st.Versions, version{Number: n, Image: image})
	st.Current = n
	return n
}

// DeleteGroup removes the group's containers (any left by an earlier run
// too, found by label) and its state. Committed images are kept, as AMIs
// outlive their Auto Scaling group. Deleting a missing group is not an
// error.
func (p *Provider) DeleteGroup(ctx context.Context, name string) error {
	if !groupNameRE.MatchString(name) {
		return nil
	}
	unlockRec, err := p.lock(name, ".reconcile")
	if err != nil {
		return err
	}
	defer unlockRec()
	unlock, err := p.lock(name, ".lock")
	if err != nil {
		return err
	}
	defer unlock()
	list, err := p.docker.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", LabelGroup+"="+name))})
	if err != nil {
		return p.dockerErr("DeleteGroup", name, err)
	}
	for _, c := range list {
		if err := p.docker.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			return p.dockerErr("DeleteGroup", name, err)
		}
	}
	if err := os.Remove(p.statePath(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("dockerfleet: delete state of group %s: %w", name, err)
	}
	return nil
}

// Describe reports the group as recorded by the last Reconcile and API
// calls: Auto Scaling's view, like DescribeAutoScalingGroups.
func (p *Provider) Describe(ctx context.Context, group string) (*fleet.Group, error) {
	st, err := p.view(group)
	if err != nil {
		return nil, p.wrap("DescribeAutoScalingGroups", group, err)
	}
	g := &fleet.Group{
		Name: group, Desired: st.Desired, Min: st.Min, Max: st.Max,
		LaunchTemplate: st.templateRef(st.Current),
	}
	if st.WarmPool != nil {
		g.WarmPool = &fleet.WarmPool{WarmPoolConfig: st.WarmPool.WarmPoolConfig}
	}
	for _, m := range st.Members {
		in := fleet.Instance{
			ID: m.ID, LifecycleState: m.State, HealthStatus: m.Health, ImageID: m.Image,
			LaunchTemplateVersion: strconv.Itoa(m.Version), PrivateIP: m.IP, InWarmPool: m.State.Warm(),
		}
		if in.HealthStatus == "" {
			in.HealthStatus = fleet.HealthHealthy
		}
		if in.InWarmPool && g.WarmPool != nil {
			g.WarmPool.Instances = append(g.WarmPool.Instances, in)
		} else {
			in.InWarmPool = false
			g.Instances = append(g.Instances, in)
		}
	}
	return g, nil
}

// SetDesired sets the desired capacity; Reconcile launches or terminates.
// A value outside min..max is refused as AWS refuses it. No cooldowns are
// modelled: honorCooldown never refuses.
func (p *Provider) SetDesired(ctx context.Context, group string, desired int, honorCooldown bool) error {
	return p.wrap("SetDesiredCapacity", group, p.update(group, false, func(st *groupState) error {
		if desired < st.Min || desired > st.Max {
			return invalid("SetDesiredCapacity", group, fmt.Errorf("desired capacity %d is outside the group's bounds %d..%d", desired, st.Min, st.Max),
				"raise the maximum (SetMinMax) first, or ask for less")
		}
		st.Desired = desired
		return nil
	}))
}

// Terminate moves the instance to Terminating; Reconcile runs the terminate
// hook and removes the container. With decrement the desired capacity
// drops by one (refused below the minimum, as on AWS); without, Reconcile
// launches a replacement. A warm-pool instance is terminated and the pool
// refills (decrement does not apply to it). An instance already on its way
// out is a no-op; an unknown one is ErrNotFound.
func (p *Provider) Terminate(ctx context.Context, instanceID string, decrement bool) error {
	const op = "TerminateInstanceInAutoScalingGroup"
	group, err := p.findInstance(instanceID)
	if err != nil {
		return p.wrap(op, instanceID, err)
	}
	return p.wrap(op, instanceID, p.update(group, false, func(st *groupState) error {
		m := st.member(instanceID)
		if m == nil {
			return errNoGroup
		}
		if m.State.Leaving() {
			return nil
		}
		if m.State.Warm() {
			m.State, m.Action = "Warmed:Terminating", nil
			return nil
		}
		if decrement {
			if st.Desired-1 < st.Min {
				return invalid(op, instanceID, fmt.Errorf("group %s: desired capacity %d equals its minimum %d; terminating with decrement would violate it", group, st.Desired, st.Min),
					"lower the minimum first, or terminate without decrement to replace the instance")
			}
			st.Desired--
		}
		m.State, m.Action, m.ToPool = fleet.StateTerminating, nil, false
		return nil
	}))
}

// CreateImage commits the instance's container to ImageRepo(group):name.
// A name that already exists returns that image (AMI names are unique too).
// Without NoReboot the container is paused while committing, so the file
// system is captured consistently (AWS reboots the instance for that).
func (p *Provider) CreateImage(ctx context.Context, instanceID, name string, opts fleet.ImageOptions) (string, error) {
	const op = "CreateImage"
	if !imageNameRE.MatchString(name) {
		return "", invalid(op, instanceID, fmt.Errorf("image name %q is not usable as a Docker tag", name), "letters, digits, '_', '.', '-', at most 128")
	}
	group, err := p.findInstance(instanceID)
	if err != nil {
		return "", p.wrap(op, instanceID, err)
	}
	ref := ImageRepo(group) + ":" + name
	if _, err := p.docker.ImageInspect(ctx, ref); err == nil {
		return ref, nil
	} else if !cerrdefs.IsNotFound(err) {
		return "", p.dockerErr(op, instanceID, err)
	}
	_, err = p.docker.ContainerCommit(ctx, ContainerName(group, instanceID), container.CommitOptions{
		Reference: ref, Pause: !opts.NoReboot, Comment: opts.Description,
		Changes: []string{"LABEL " + LabelGroup + "=" + group, "LABEL org.mageflow.fleet.source-instance=" + instanceID},
	})
	if err != nil {
		return "", p.dockerErr(op, instanceID, err)
	}
	return ref, nil
}

// ImageState is ImageAvailable once the image exists (a commit is
// synchronous), ErrNotFound otherwise.
func (p *Provider) ImageState(ctx context.Context, imageID string) (fleet.ImageState, error) {
	if _, err := p.docker.ImageInspect(ctx, imageID); err != nil {
		return "", p.dockerErr("DescribeImages", imageID, err)
	}
	return fleet.ImageAvailable, nil
}

// PublishLaunchTemplateVersion appends a version launching imageID and
// points the group at it; if the group already launches imageID its current
// version is returned unchanged. The image must exist.
func (p *Provider) PublishLaunchTemplateVersion(ctx context.Context, group, imageID string) (fleet.LaunchTemplateRef, error) {
	const op = "CreateLaunchTemplateVersion"
	if _, err := p.docker.ImageInspect(ctx, imageID); err != nil {
		return fleet.LaunchTemplateRef{}, p.dockerErr(op, imageID, err)
	}
	var ref fleet.LaunchTemplateRef
	err := p.update(group, false, func(st *groupState) error {
		ref = st.templateRef(st.publish(imageID))
		return nil
	})
	return ref, p.wrap(op, group, err)
}

// SetLaunchTemplateVersion points the group at an existing version.
func (p *Provider) SetLaunchTemplateVersion(ctx context.Context, group string, ref fleet.LaunchTemplateRef) error {
	const op = "UpdateAutoScalingGroup"
	return p.wrap(op, group, p.update(group, false, func(st *groupState) error {
		if (ref.ID != "" && ref.ID != templateID(group)) || (ref.Name != "" && ref.Name != templateName(group)) {
			return notFound(op, group, fmt.Errorf("launch template %s%s is not group %s's (%s)", ref.ID, ref.Name, group, templateID(group)))
		}
		n, err := strconv.Atoi(ref.Version)
		if _, ok := st.version(n); err != nil || !ok {
			return notFound(op, group, fmt.Errorf("launch template %s has no version %q (1..%d)", templateID(group), ref.Version, len(st.Versions)))
		}
		st.Current = n
		return nil
	}))
}

// SetMinMax sets the bounds; the desired capacity is moved inside them.
func (p *Provider) SetMinMax(ctx context.Context, group string, minSize, maxSize int) error {
	const op = "UpdateAutoScalingGroup"
	if minSize < 0 || maxSize < minSize {
		return invalid(op, group, fmt.Errorf("invalid bounds min %d, max %d", minSize, maxSize), "")
	}
	return p.wrap(op, group, p.update(group, false, func(st *groupState) error {
		st.Min, st.Max = minSize, maxSize
		st.Desired = min(max(st.Desired, minSize), maxSize)
		return nil
	}))
}

// PutWarmPool creates or updates the warm pool; Reconcile resizes it.
func (p *Provider) PutWarmPool(ctx context.Context, group string, cfg fleet.WarmPoolConfig) error {
	const op = "PutWarmPool"
	if cfg.MinSize < 0 || cfg.MaxPreparedCapacity < 0 || !validPoolState(cfg.State) {
		return invalid(op, group, fmt.Errorf("invalid warm pool %+v", cfg), "sizes >= 0, state Stopped, Running or Hibernated")
	}
	if cfg.State == "" {
		cfg.State = fleet.PoolStopped
	}
	return p.wrap(op, group, p.update(group, false, func(st *groupState) error {
		st.WarmPool = &warmPool{cfg}
		return nil
	}))
}

// CompleteLifecycleAction completes the member's pending action. The
// action is matched by token when given, else by instance and hook name;
// one that expired (even if Reconcile has not yet applied the default), was
// completed or names an instance that is gone is ErrNoActiveAction.
func (p *Provider) CompleteLifecycleAction(ctx context.Context, a fleet.LifecycleAction, r fleet.Result) error {
	const op = "CompleteLifecycleAction"
	if err := a.Validate(); err != nil {
		return invalid(op, a.Group, err, "")
	}
	if r != fleet.Continue && r != fleet.Abandon {
		return invalid(op, a.Group, fmt.Errorf("result %q is neither CONTINUE nor ABANDON", r), "")
	}
	now := p.opts.Now()
	return p.wrap(op, a.Group, p.update(a.Group, false, func(st *groupState) error {
		m, err := st.activeAction(a, now)
		if err != nil {
			return err
		}
		st.finish(m, r, false, now)
		return nil
	}))
}

// RecordLifecycleHeartbeat restarts the action's timeout, up to the global
// timeout (min(48 h, 100 × timeout) after the action started).
func (p *Provider) RecordLifecycleHeartbeat(ctx context.Context, a fleet.LifecycleAction) error {
	const op = "RecordLifecycleActionHeartbeat"
	if err := a.Validate(); err != nil {
		return invalid(op, a.Group, err, "")
	}
	now := p.opts.Now()
	return p.wrap(op, a.Group, p.update(a.Group, false, func(st *groupState) error {
		m, err := st.activeAction(a, now)
		if err != nil {
			return err
		}
		m.Action.Deadline = now.Add(m.Action.Timeout)
		if m.Action.Deadline.After(m.Action.GlobalDeadline) {
			m.Action.Deadline = m.Action.GlobalDeadline
		}
		return nil
	}))
}

// activeAction finds the member holding a's action. An expired action is
// settled with its default result on the spot, so the answer never depends
// on whether Reconcile ran since.
func (st *groupState) activeAction(a fleet.LifecycleAction, now time.Time) (*member, error) {
	for _, m := range st.Members {
		x := m.Action
		if x == nil || (a.Token != "" && x.Token != a.Token) || (a.InstanceID != "" && m.ID != a.InstanceID) || x.Hook != a.Hook {
			continue
		}
		if !now.Before(x.Deadline) {
			st.finish(m, x.Default, true, now)
			break
		}
		return m, nil
	}
	return nil, &fleet.Error{Op: "CompleteLifecycleAction", Subject: a.Group, Code: "ValidationError", Class: fleet.ErrNoActiveAction,
		Err: fmt.Errorf("no active lifecycle action found with token %q, instance %q, hook %q", a.Token, a.InstanceID, a.Hook)}
}

// newAction starts a lifecycle action on m with hook h.
func newAction(h *Hook, transition, origin, dest string, now time.Time) *action {
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = DefaultHookTimeout
	}
	def := h.Default
	if def == "" {
		def = fleet.Abandon
	}
	global := min(48*time.Hour, 100*timeout)
	return &action{
		Hook: h.Name, Token: uuid.NewString(), Transition: transition, Origin: origin, Destination: dest,
		Timeout: timeout, Default: def, Started: now, Deadline: now.Add(timeout), GlobalDeadline: now.Add(global),
	}
}

// finish applies result r to m's action: the state change AWS makes when an
// action completes or expires. Docker work follows in Reconcile.
func (st *groupState) finish(m *member, r fleet.Result, expired bool, now time.Time) {
	a := m.Action
	st.record(m, a, r, expired, now)
	m.Action = nil
	switch {
	case a.Transition == fleet.TransitionLaunching && a.Destination == fleet.PlaceWarmPool:
		if r == fleet.Continue {
			m.State = stateWarmedProceed
		} else {
			m.State = stateWarmedTerminatingProceed
		}
	case a.Transition == fleet.TransitionLaunching:
		if r == fleet.Continue {
			m.State = fleet.StateInService
		} else {
			m.State = fleet.StateTerminatingProceed
		}
	default: // terminating: either result proceeds
		m.State = fleet.StateTerminatingProceed
		if a.Origin == fleet.PlaceWarmPool {
			m.State = stateWarmedTerminatingProceed
		}
	}
}

// Model-internal states on the way to the ones fleet names.
const (
	stateWarmedProceed            fleet.LifecycleState = "Warmed:Pending:Proceed"
	stateWarmedTerminating        fleet.LifecycleState = "Warmed:Terminating"
	stateWarmedTerminatingProceed fleet.LifecycleState = "Warmed:Terminating:Proceed"
)

// wrap turns the store's sentinel into ErrNotFound and leaves fleet errors
// alone.
func (p *Provider) wrap(op, subject string, err error) error {
	if err == nil {
		return nil
	}
	var fe *fleet.Error
	if errors.As(err, &fe) {
		return err
	}
	if errors.Is(err, errNoGroup) {
		return notFound(op, subject, fmt.Errorf("%s is in no group under %s; check the name (groups: %s)", subject, p.opts.StateDir, p.groupList()))
	}
	return &fleet.Error{Op: op, Subject: subject, Code: "InternalFailure", Class: fleet.ErrRetryable, Err: err}
}

func (p *Provider) groupList() string {
	gs, _ := p.Groups()
	if len(gs) == 0 {
		return "none"
	}
	return fmt.Sprint(gs)
}

// dockerErr classifies an engine error: missing objects are ErrNotFound,
// an unreachable engine or a cancelled call retryable, the rest permanent.
func (p *Provider) dockerErr(op, subject string, err error) error {
	switch {
	case cerrdefs.IsNotFound(err):
		return notFound(op, subject, err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled), client.IsErrConnectionFailed(err), cerrdefs.IsUnavailable(err), cerrdefs.IsConflict(err):
		return &fleet.Error{Op: op, Subject: subject, Code: "DockerUnavailable", Class: fleet.ErrRetryable, Err: err}
	}
	return &fleet.Error{Op: op, Subject: subject, Code: "DockerError", Err: err, Hint: "see the Docker engine's message"}
}

func notFound(op, subject string, err error) error {
	return &fleet.Error{Op: op, Subject: subject, Code: "NotFound", Class: fleet.ErrNotFound, Err: err}
}

func invalid(op, subject string, err error, hint string) error {
	return &fleet.Error{Op: op, Subject: subject, Code: "ValidationError", Err: err, Hint: hint}
}
