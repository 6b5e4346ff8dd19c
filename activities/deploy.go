package activities

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/mageflow/mageflow/internal/catalog"
	"github.com/mageflow/mageflow/internal/config"
	"github.com/mageflow/mageflow/internal/fleet"
	fleetaws "github.com/mageflow/mageflow/internal/fleet/aws"
	dockerfleet "github.com/mageflow/mageflow/internal/fleet/docker"
	"github.com/mageflow/mageflow/internal/release"
	"github.com/mageflow/mageflow/internal/store"
)

// HostTaskQueue is the task queue a host's agent polls.
func HostTaskQueue(host string) string { return "mageflow-host-" + host }

// DeployRequest is what a person or a build asked for.
type DeployRequest struct {
	App, Env string
	// ReleaseID "" means the newest release of the environment's branch
	// (deploy) or the release before current (rollback).
	ReleaseID   string
	Kind        string // "deploy" | "rollback"
	Force       bool   // rollback onto code older than the last database upgrade
	RequestedBy string
	Reason      string
}

// DeployPlan is the environment's config and state as read at the start of
// a deploy, recorded in history so the workflow never reads config itself.
type DeployPlan struct {
	Release          release.Meta
	Previous         string // release id the environment runs now ("" on the first deploy)
	PreviousMeta     *release.Meta
	Hosts            []string
	EnvURL           string
	ApprovalRequired bool
	ApprovalTimeout  time.Duration
	KeepReleases     int
	HealthPaths      []string
	WarmPaths        []string
	UpgradedAtBuild  int
	// SharedStorage: hosts share <root>; file steps run on Hosts[0] only.
	SharedStorage bool
}

// DeployActivities are the control-side steps of a deploy: read config and
// the release catalog, check agents, write the durable record.
type DeployActivities struct {
	Config *config.Config
	Store  store.Store
	Client client.Client
	// Fleet opens a group's provider (default OpenFleet); tests replace it.
	Fleet func(ctx context.Context, g *config.Group) (fleet.Provider, error)
}

// OpenFleet opens the provider a group names.
func OpenFleet(ctx context.Context, g *config.Group) (fleet.Provider, error) {
	switch g.Provider {
	case "aws":
		return fleetaws.New(ctx, fleetaws.Config{Region: g.Region, Endpoint: g.Endpoint})
	case "docker":
		// The model of a group on this machine; the control worker runs its
		// controller (Run) and this process only reads and changes state.
		if g.Docker == nil {
			return nil, fmt.Errorf("docker group %s has no docker settings (load the config with config.Load)", g.Name)
		}
		return dockerfleet.Open(g.Docker.StateDir, g.Docker.Network)
	default:
		return nil, fmt.Errorf("group provider %q is not available in this build (aws and docker are)", g.Provider)
	}
}

// groupHosts resolves an environment's group to its in-service instances,
// as they are when the deploy starts: those are the hosts it deploys to.
func (d *DeployActivities) groupHosts(ctx context.Context, name string) ([]string, error) {
	g := d.Config.Groups[name]
	if g == nil {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("group %q is not declared under groups:", name), ErrConfig, nil)
	}
	open := d.Fleet
	if open == nil {
		open = OpenFleet
	}
	p, err := open(ctx, g)
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError(err.Error(), ErrConfig, err)
	}
	grp, err := p.Describe(ctx, g.Name)
	if err != nil {
		if fleet.IsRetryable(err) {
			return nil, err
		}
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("describe group %s: %v", g.Name, err), ErrConfig, err)
	}
	var hosts []string
	for _, in := range grp.Instances {
		if in.LifecycleState == fleet.StateInService && !in.InWarmPool {
			hosts = append(hosts, in.ID)
		}
	}
	sort.Strings(hosts)
	if len(hosts) == 0 {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("group %s has no in-service instances to deploy to", g.Name), ErrConfig, nil)
	}
	return hosts, nil
}

// PlanDeploy resolves the release to deploy and the environment's settings.
func (d *DeployActivities) PlanDeploy(ctx context.Context, req DeployRequest) (*DeployPlan, error) {
	app, err := d.Config.App(req.App)
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError(err.Error(), ErrConfig, err)
	}
	env := app.Environments[req.Env]
	if env == nil {
		names := make([]string, 0, len(app.Environments))
		for n := range app.Environments {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("app %s has no environment %q (configured: %v)", req.App, req.Env, names), ErrConfig, nil)
	}
	hosts := append([]string(nil), env.Hosts...)
	if env.Group != "" {
		if hosts, err = d.groupHosts(ctx, env.Group); err != nil {
			return nil, err
		}
	}
	if len(hosts) == 0 {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("environment %s/%s lists no hosts: add hosts: [NAME] (declared under the top-level hosts: section) or group: NAME", req.App, req.Env), ErrConfig, nil)
	}
	state, err := catalog.Env(ctx, d.Store, req.App, req.Env)
	if err != nil {
		return nil, err
	}
	plan := &DeployPlan{
		Hosts: hosts, EnvURL: env.URL, ApprovalRequired: env.Approval == "required",
		ApprovalTimeout: env.ApprovalTimeout.Duration, KeepReleases: env.KeepReleases,
		HealthPaths: env.HealthPaths, WarmPaths: env.WarmPaths, SharedStorage: env.SharedStorage,
	}
	if plan.ApprovalTimeout == 0 {
		plan.ApprovalTimeout = 24 * time.Hour
	}
	if plan.KeepReleases == 0 {
		plan.KeepReleases = 5
	}
	if len(plan.HealthPaths) == 0 {
		plan.HealthPaths = []string{"/"}
	}
	if state != nil {
		plan.Previous = state.Current
		plan.PreviousMeta = state.Release
		plan.UpgradedAtBuild = state.UpgradedAtBuild
	}
	list, err := catalog.List(ctx, d.Store, req.App)
	if err != nil {
		return nil, err
	}
	var pick *release.Meta
	switch {
	case req.ReleaseID != "":
		for i := range list {
			if list[i].ID == req.ReleaseID {
				pick = &list[i]
			}
		}
		if pick == nil {
			return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("release %s of %s is not in the artifact store: build it first (mageflow releases --app %s lists what exists)", req.ReleaseID, req.App, req.App), ErrInvalidInput, nil)
		}
	case req.Kind == "rollback":
		if state == nil || state.Previous == "" {
			return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s/%s has no previous release to roll back to: pass --to RELEASE", req.App, req.Env), ErrRollbackRefused, nil)
		}
		for i := range list {
			if list[i].ID == state.Previous {
				pick = &list[i]
			}
		}
		if pick == nil {
			return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("previous release %s is no longer in the artifact store", state.Previous), ErrRollbackRefused, nil)
		}
	default:
		for i := range list {
			if list[i].Branch == env.Branch {
				pick = &list[i]
				break // newest first
			}
		}
		if pick == nil {
			return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("no release of branch %s yet: build it first (mageflow build --app %s --ref %s)", env.Branch, req.App, env.Branch), ErrInvalidInput, nil)
		}
	}
	plan.Release = *pick
	if req.Kind == "rollback" && !req.Force && plan.UpgradedAtBuild > 0 && pick.BuildNumber < plan.UpgradedAtBuild {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf(
			"refusing to roll back %s/%s to %s (build %d): the database was upgraded by build %d and Magento cannot run older code on it; deploy a fix forward, or pass --force if you restored the database",
			req.App, req.Env, pick.ID, pick.BuildNumber, plan.UpgradedAtBuild), ErrRollbackRefused, nil)
	}
	return plan, nil
}

// CheckAgentsInput lists the hosts whose agents must be polling.
type CheckAgentsInput struct{ Hosts []string }

// CheckAgents fails, naming them, when hosts have no agent polling their
// task queue. Retried by the workflow for a short while (an agent that is
// restarting), then reported.
func (d *DeployActivities) CheckAgents(ctx context.Context, in CheckAgentsInput) error {
	var missing []string
	for _, h := range in.Hosts {
		resp, err := d.Client.WorkflowService().DescribeTaskQueue(ctx, &workflowservice.DescribeTaskQueueRequest{
			Namespace:     d.Config.Temporal.Namespace,
			TaskQueue:     &taskqueue.TaskQueue{Name: HostTaskQueue(h), Kind: enumspb.TASK_QUEUE_KIND_NORMAL},
			TaskQueueType: enumspb.TASK_QUEUE_TYPE_ACTIVITY,
		})
		if err != nil {
			return fmt.Errorf("describe task queue of host %s: %w", h, err)
		}
		recent := false
		for _, p := range resp.GetPollers() {
			if p.GetLastAccessTime() != nil && time.Since(p.GetLastAccessTime().AsTime()) < 2*time.Minute {
				recent = true
			}
		}
		if !recent {
			missing = append(missing, h)
		}
	}
	if len(missing) > 0 {
		return temporal.NewApplicationError(fmt.Sprintf("no agent is polling for host(s) %v: start `mageflow-worker --agent --host NAME` on each", missing), ErrAgentMissing)
	}
	return nil
}

// RecordDeploy writes the deploy's durable record.
func (d *DeployActivities) RecordDeploy(ctx context.Context, rec catalog.Deploy) error {
	if rec.App == "" || rec.Env == "" || rec.RunID == "" {
		return temporal.NewNonRetryableApplicationError("deploy record needs app, env and run id", ErrInvalidInput, errors.New("incomplete record"))
	}
	return catalog.PutDeploy(ctx, d.Store, &rec)
}

// RecordEnv writes what the environment now runs.
func (d *DeployActivities) RecordEnv(ctx context.Context, st catalog.EnvState) error {
	return catalog.PutEnv(ctx, d.Store, &st)
}
