// Package fleet is the narrow contract between mageflow's scaling workflows
// (ScaleOutReadiness, WarmPoolImageRefresh) and a group of instances that
// scale together: an AWS Auto Scaling group, or containers standing in for one
// on a developer machine.
//
// The vocabulary is Auto Scaling's on purpose (lifecycle states, warm pools,
// launch template versions, lifecycle actions with CONTINUE/ABANDON): AWS is
// the behaviour the workflows must be correct against, and a local provider is
// a model of it, so both speak the same terms and the workflow code is shared.
//
// Every method is a single remote step that an activity can retry: callers
// decide what to retry by testing errors with errors.Is against ErrRetryable,
// ErrNoActiveAction and ErrNotFound; anything else is permanent.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// LifecycleState is an instance's position in the Auto Scaling lifecycle,
// spelled as AWS spells it so values read the same in logs, the AWS console
// and mageflow.
type LifecycleState string

// Lifecycle states the workflows act on. AWS has a few more (Standby,
// Detaching, *:Retained…); they pass through unchanged as LifecycleState
// values.
const (
	StatePending            LifecycleState = "Pending"
	StatePendingWait        LifecycleState = "Pending:Wait" // launch hook holds it before InService
	StatePendingProceed     LifecycleState = "Pending:Proceed"
	StateInService          LifecycleState = "InService"
	StateTerminating        LifecycleState = "Terminating"
	StateTerminatingWait    LifecycleState = "Terminating:Wait" // terminate hook holds it: drain now
	StateTerminatingProceed LifecycleState = "Terminating:Proceed"
	StateTerminated         LifecycleState = "Terminated"

	StateWarmedPending     LifecycleState = "Warmed:Pending"
	StateWarmedPendingWait LifecycleState = "Warmed:Pending:Wait" // launch hook holds it on its way into the pool
	StateWarmedStopped     LifecycleState = "Warmed:Stopped"
	StateWarmedRunning     LifecycleState = "Warmed:Running"
	StateWarmedHibernated  LifecycleState = "Warmed:Hibernated"
	StateWarmedTerminating LifecycleState = "Warmed:Terminating"
)

// Warm reports whether the state belongs to the warm pool rather than the
// group's live capacity.
func (s LifecycleState) Warm() bool { return strings.HasPrefix(string(s), "Warmed:") }

// Leaving reports whether the instance is on its way out (terminating,
// terminated or detaching): it must not be counted as capacity nor receive
// traffic, even while its terminate hook still waits.
func (s LifecycleState) Leaving() bool {
	st := strings.TrimPrefix(string(s), "Warmed:")
	return strings.HasPrefix(st, "Terminat") || strings.HasPrefix(st, "Detach")
}

// Health statuses reported by the provider (Auto Scaling's own view: EC2
// status checks, not mageflow's readiness).
const (
	HealthHealthy   = "Healthy"
	HealthUnhealthy = "Unhealthy"
)

// Instance is one member of a group or of its warm pool.
type Instance struct {
	ID             string
	LifecycleState LifecycleState
	HealthStatus   string // HealthHealthy or HealthUnhealthy
	// ImageID is the image the instance actually runs (from EC2, not from the
	// template), so a refresh can tell old members from new ones even when the
	// group points at "$Latest".
	ImageID string
	// LaunchTemplateVersion is the version the provider says the instance was
	// launched from, as reported (it may be an alias such as "$Latest").
	LaunchTemplateVersion string
	PrivateIP             string // empty until the instance has a network interface
	ProtectedFromScaleIn  bool
	InWarmPool            bool // listed in the warm pool rather than the group
}

// LaunchTemplateRef names one version of a launch template. Version is always
// a concrete version number when returned by a Provider, so it can be stored
// and used later for a rollback: aliases like "$Latest" move.
type LaunchTemplateRef struct {
	ID      string
	Name    string
	Version string
	// ImageID is the image this version launches, when known.
	ImageID string
}

// PoolState is what a warm-pool instance does while it waits.
type PoolState string

// Warm pool states as AWS names them.
const (
	PoolStopped    PoolState = "Stopped"    // cheapest; pays a boot on scale-out
	PoolRunning    PoolState = "Running"    // fastest; pays for compute while idle
	PoolHibernated PoolState = "Hibernated" // keeps memory (OPcache) across the wait
)

// WarmPoolConfig is the desired shape of a warm pool.
type WarmPoolConfig struct {
	MinSize int
	// MaxPreparedCapacity caps group plus pool; 0 leaves it to the provider's
	// default (the group's maximum size), so the pool holds max - desired.
	MaxPreparedCapacity int
	State               PoolState
	ReuseOnScaleIn      bool // scale-in returns instances to the pool instead of terminating them
}

// WarmPool is a group's warm pool as described by the provider.
type WarmPool struct {
	WarmPoolConfig
	// Status is empty for an active pool, "PendingDelete" while being removed.
	Status    string
	Instances []Instance
}

// Group is a snapshot of a scaling group.
type Group struct {
	Name              string
	Desired, Min, Max int
	// LaunchTemplate is the version new instances launch from, resolved to a
	// number. It is zero when the group does not use a single launch template.
	LaunchTemplate LaunchTemplateRef
	Instances      []Instance // live capacity, any non-warm state
	WarmPool       *WarmPool  // nil when the group has none
}

// Instance returns the member (live or warm) with the given ID.
func (g *Group) Instance(id string) (Instance, bool) {
	for _, in := range g.Instances {
		if in.ID == id {
			return in, true
		}
	}
	if g.WarmPool != nil {
		for _, in := range g.WarmPool.Instances {
			if in.ID == id {
				return in, true
			}
		}
	}
	return Instance{}, false
}

// Lifecycle transitions as they appear in hook notifications.
const (
	TransitionLaunching   = "autoscaling:EC2_INSTANCE_LAUNCHING"
	TransitionTerminating = "autoscaling:EC2_INSTANCE_TERMINATING"
)

// Places an instance moves between in a lifecycle action (Origin/Destination).
const (
	PlaceEC2      = "EC2"
	PlaceGroup    = "AutoScalingGroup"
	PlaceWarmPool = "WarmPool"
)

// LifecycleAction identifies one pending lifecycle action: an instance held in
// a :Wait state by a hook until someone completes it or its timeout applies
// the hook's default result. It is plain data so it can be a workflow input.
type LifecycleAction struct {
	Group      string
	Hook       string
	Token      string
	InstanceID string
	Transition string // TransitionLaunching or TransitionTerminating
	// Origin and Destination tell the two launch waits of a warm-pool group
	// apart: EC2→WarmPool is Warmed:Pending:Wait (prepare, do not serve),
	// WarmPool→AutoScalingGroup and EC2→AutoScalingGroup are Pending:Wait
	// (must be ready and in the load balancer before CONTINUE).
	Origin      string
	Destination string
	Metadata    string // the hook's NotificationMetadata, if any
}

// Key identifies the action uniquely and stably, for use as a workflow ID:
// a redelivered event yields the same key, a later action on the same
// instance (it left the pool, or it is now terminating) a different one.
func (a LifecycleAction) Key() string {
	return a.Group + "/" + a.InstanceID + "/" + a.Token
}

// Launching reports whether the action holds a launch (into the group or the
// pool).
func (a LifecycleAction) Launching() bool { return a.Transition == TransitionLaunching }

// EntersService reports whether completing the action with CONTINUE puts the
// instance into live capacity, so it must first be ready and in the load
// balancer.
func (a LifecycleAction) EntersService() bool {
	return a.Launching() && a.Destination == PlaceGroup
}

// EntersWarmPool reports whether the instance is being prepared for the warm
// pool: prime it, but never add it to the load balancer.
func (a LifecycleAction) EntersWarmPool() bool {
	return a.Launching() && a.Destination == PlaceWarmPool
}

// LeavesService reports whether the instance is leaving live capacity (to be
// terminated or returned to the pool): remove it from the load balancer and
// drain before CONTINUE.
func (a LifecycleAction) LeavesService() bool {
	return a.Transition == TransitionTerminating && a.Origin == PlaceGroup
}

// WaitState is the lifecycle state the instance is held in by this action.
func (a LifecycleAction) WaitState() LifecycleState {
	switch {
	case a.EntersWarmPool():
		return StateWarmedPendingWait
	case a.Launching():
		return StatePendingWait
	case a.Origin == PlaceWarmPool:
		return "Warmed:Terminating:Wait"
	default:
		return StateTerminatingWait
	}
}

// Validate checks the fields a provider needs to complete the action.
func (a LifecycleAction) Validate() error {
	var missing []string
	if a.Group == "" {
		missing = append(missing, "group")
	}
	if a.Hook == "" {
		missing = append(missing, "hook")
	}
	if a.Token == "" && a.InstanceID == "" {
		missing = append(missing, "token or instance ID")
	}
	if len(missing) > 0 {
		return fmt.Errorf("fleet: lifecycle action is missing %s", strings.Join(missing, ", "))
	}
	return nil
}

// Result completes a lifecycle action.
type Result string

// Results of a lifecycle action. ABANDON on a launch hook terminates the
// instance; on a terminate hook it still terminates but skips later hooks.
const (
	Continue Result = "CONTINUE"
	Abandon  Result = "ABANDON"
)

// ImageState is the state of an image created with CreateImage.
type ImageState string

// Image states; only ImageAvailable can be launched from.
const (
	ImagePending   ImageState = "pending"
	ImageAvailable ImageState = "available"
	ImageFailed    ImageState = "failed"
)

// ImageOptions tunes CreateImage.
type ImageOptions struct {
	Description string
	// NoReboot snapshots a running instance without rebooting it. Faster and
	// keeps it serving, but file systems are captured mid-write; leave false
	// unless the instance has been taken out of the load balancer anyway.
	NoReboot bool
}

// Provider is a fleet of scaling groups. Methods are single steps (no
// waiting for instances to change state): waiting belongs to workflows, which
// poll Describe on durable timers.
type Provider interface {
	// Describe returns the group, its instances (with private IPs and images)
	// and its warm pool. ErrNotFound if the group does not exist.
	Describe(ctx context.Context, group string) (*Group, error)

	// SetDesired sets the desired capacity. With honorCooldown the provider
	// may refuse while a cooldown runs (ErrRetryable).
	SetDesired(ctx context.Context, group string, desired int, honorCooldown bool) error

	// Terminate terminates one instance. With decrement the group shrinks by
	// one; without, the provider launches a replacement. Terminating a
	// warm-pool instance without decrement is how a pool is refreshed onto the
	// current launch template: the pool refills from it. ErrNotFound means
	// the instance is in no group any more (already terminated): done.
	Terminate(ctx context.Context, instanceID string, decrement bool) error

	// CreateImage starts an image of the instance and returns its ID at once;
	// poll ImageState until ImageAvailable. Repeating a call with the same
	// name returns the same image rather than a second one.
	CreateImage(ctx context.Context, instanceID, name string, opts ImageOptions) (imageID string, err error)

	// ImageState reports whether a created image can be launched yet.
	ImageState(ctx context.Context, imageID string) (ImageState, error)

	// PublishLaunchTemplateVersion creates a new launch template version from
	// the group's current one with only the image changed, and points the
	// group at it. Old versions are kept for rollback (record the group's
	// LaunchTemplate from Describe first). Idempotent: if the group already
	// launches imageID, its current version is returned unchanged.
	PublishLaunchTemplateVersion(ctx context.Context, group, imageID string) (LaunchTemplateRef, error)

	// SetLaunchTemplateVersion points the group at an existing version
	// (rollback). Instances already running are not replaced.
	SetLaunchTemplateVersion(ctx context.Context, group string, ref LaunchTemplateRef) error

	// SetMinMax sets the group's bounds, e.g. to pin it during a refresh so
	// autoscaling cannot shrink it. A min above the desired capacity raises it.
	SetMinMax(ctx context.Context, group string, min, max int) error

	// PutWarmPool creates or updates the group's warm pool.
	PutWarmPool(ctx context.Context, group string, cfg WarmPoolConfig) error

	// CompleteLifecycleAction releases an instance held by a hook.
	// ErrNoActiveAction means the action expired or was already completed:
	// the outcome is decided, so callers stop (never retry it).
	CompleteLifecycleAction(ctx context.Context, a LifecycleAction, r Result) error

	// RecordLifecycleHeartbeat restarts the hook's heartbeat timeout, to keep
	// an instance held while slow work (deploy, OPcache warm-up, drain) goes
	// on. ErrNoActiveAction as for CompleteLifecycleAction.
	RecordLifecycleHeartbeat(ctx context.Context, a LifecycleAction) error
}

// Error classes. Test with errors.Is; an error matching none is permanent:
// retrying it unchanged will fail the same way.
var (
	// ErrRetryable marks a transient condition (throttling, a scaling
	// activity or instance refresh in progress, resource contention, a
	// transport failure) that the provider's own quick retries did not
	// outlast: retry later with backoff.
	ErrRetryable = errors.New("transient fleet condition, retry with backoff")

	// ErrNoActiveAction means the lifecycle action no longer exists: it
	// expired (the hook's default result applied) or was already completed.
	ErrNoActiveAction = errors.New("no active lifecycle action: it expired or was already completed")

	// ErrNotFound means the named group, instance, image or launch template
	// does not exist.
	ErrNotFound = errors.New("not found")
)

// Error is a failed provider call with its class and the provider's own code,
// so logs show both what happened and what mageflow decided to do about it.
type Error struct {
	Op      string // provider operation, e.g. "SetDesiredCapacity"
	Subject string // group, instance, image or template the call was about
	Code    string // provider error code, e.g. "ScalingActivityInProgress"
	Class   error  // ErrRetryable, ErrNoActiveAction, ErrNotFound, or nil (permanent)
	Hint    string // what the operator can do, for permanent errors
	Err     error  // underlying error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("fleet: ")
	b.WriteString(e.Op)
	if e.Subject != "" {
		b.WriteString(" ")
		b.WriteString(e.Subject)
	}
	b.WriteString(": ")
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	} else {
		b.WriteString(e.Code)
	}
	switch {
	case e.Class != nil:
		b.WriteString(" (")
		b.WriteString(e.Class.Error())
		b.WriteString(")")
	default:
		b.WriteString(" (permanent")
		if e.Hint != "" {
			b.WriteString(": ")
			b.WriteString(e.Hint)
		}
		b.WriteString(")")
	}
	return b.String()
}

// Unwrap exposes both the class and the underlying error, so errors.Is works
// for fleet classes and errors.As still reaches provider error types.
func (e *Error) Unwrap() []error {
	errs := make([]error, 0, 2)
	if e.Class != nil {
		errs = append(errs, e.Class)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// IsRetryable reports whether err is worth retrying later.
func IsRetryable(err error) bool { return errors.Is(err, ErrRetryable) }
