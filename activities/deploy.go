package activities

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/mageflow/mageflow/activities/agent"
	"github.com/mageflow/mageflow/internal/build/catalog"
	"github.com/mageflow/mageflow/internal/build/release"
	"github.com/mageflow/mageflow/internal/build/store"
	"github.com/mageflow/mageflow/internal/fleet"
	fleetaws "github.com/mageflow/mageflow/internal/fleet/aws"
	dockerfleet "github.com/mageflow/mageflow/internal/fleet/docker"
	"github.com/mageflow/mageflow/internal/platform/config"
)

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
	// Automatic marks a deploy no person asked for: BuildRelease's
	// auto-deploy of a build a webhook, a schedule or a CLI build started.
	// PlanDeploy never lets one move the environment back (see
	// AutoDeploySkip). Deploys and rollbacks a person starts leave it false.
	Automatic bool
}

// AutoDeployRequester prefixes RequestedBy of the deploys BuildRelease
// starts by itself ("auto-deploy (build/shop/<sha>)").
const AutoDeployRequester = "auto-deploy ("

// IsAutomatic reports whether no person asked for this deploy. The
// requester prefix also counts, so a deploy started by a BuildRelease that
// predates the Automatic field is held to the same rule.
func (r DeployRequest) IsAutomatic() bool {
	return r.Automatic || strings.HasPrefix(r.RequestedBy, AutoDeployRequester)
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
	// Skip, when set, is why this automatic deploy must not run (the
	// release is not newer than what the environment runs): the workflow
	// records it with outcome DeployOutcomeSkipped and changes nothing.
	Skip string `json:",omitempty"`
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
	env, err := d.environment(req)
	if err != nil {
		return nil, err
	}
	hosts, err := d.deployHosts(ctx, req, env)
	if err != nil {
		return nil, err
	}
	state, err := catalog.Env(ctx, d.Store, req.App, req.Env)
	if err != nil {
		return nil, err
	}
	plan := newDeployPlan(hosts, env, state)
	list, err := catalog.List(ctx, d.Store, req.App)
	if err != nil {
		return nil, err
	}
	pick, err := pickRelease(req, env, state, list)
	if err != nil {
		return nil, err
	}
	plan.Release = *pick
	if req.Kind == "rollback" && !req.Force && plan.UpgradedAtBuild > 0 && pick.BuildNumber < plan.UpgradedAtBuild {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf(errRollbackBelowUpgrade,
			req.App, req.Env, pick.ID, pick.BuildNumber, plan.UpgradedAtBuild), agent.ErrRollbackRefused, nil)
	}
	if req.Kind != "rollback" && req.IsAutomatic() {
		cur := plan.PreviousMeta
		if cur == nil && plan.Previous != "" {
			cur = lastWithID(list, plan.Previous)
		}
		plan.Skip = AutoDeploySkip(req, pick, cur)
	}
	return plan, nil
}

// Messages of PlanDeploy's refusals (fmt formats).
const (
	errNoEnvironment        = "app %s has no environment %q (configured: %v)"
	errEnvNoHosts           = "environment %s/%s lists no hosts: add hosts: [NAME] (declared under the top-level hosts: section) or group: NAME"
	errReleaseNotStored     = "release %s of %s is not in the artifact store: build it first (mageflow releases --app %s lists what exists)"
	errNoPreviousRelease    = "%s/%s has no previous release to roll back to: pass --to RELEASE"
	errPreviousNotStored    = "previous release %s is no longer in the artifact store"
	errNoBranchRelease      = "no release of branch %s yet: build it first (mageflow build --app %s --ref %s)"
	errRollbackBelowUpgrade = "refusing to roll back %s/%s to %s (build %d): the database was upgraded by build %d and Magento cannot run older code on it; deploy a fix forward, or pass --force if you restored the database"
)

// environment is the configured environment the request names.
func (d *DeployActivities) environment(req DeployRequest) (*config.Environment, error) {
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
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf(errNoEnvironment, req.App, req.Env, names), ErrConfig, nil)
	}
	return env, nil
}

// deployHosts are the environment's hosts, or its group's in-service
// instances when it names a group.
func (d *DeployActivities) deployHosts(ctx context.Context, req DeployRequest, env *config.Environment) ([]string, error) {
	hosts := append([]string(nil), env.Hosts...)
	if env.Group != "" {
		var err error
		if hosts, err = d.groupHosts(ctx, env.Group); err != nil {
			return nil, err
		}
	}
	if len(hosts) == 0 {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf(errEnvNoHosts, req.App, req.Env), ErrConfig, nil)
	}
	return hosts, nil
}

// newDeployPlan fills the plan from the environment's settings (with
// their defaults) and its current state; the release is picked later.
func newDeployPlan(hosts []string, env *config.Environment, state *catalog.EnvState) *DeployPlan {
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
	return plan
}

// pickRelease chooses the release to deploy from the stored list (newest
// first): the one asked for, the previous one for a rollback, else the
// newest of the environment's branch.
func pickRelease(req DeployRequest, env *config.Environment, state *catalog.EnvState, list []release.Meta) (*release.Meta, error) {
	switch {
	case req.ReleaseID != "":
		pick := lastWithID(list, req.ReleaseID)
		if pick == nil {
			return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf(errReleaseNotStored, req.ReleaseID, req.App, req.App), ErrInvalidInput, nil)
		}
		return pick, nil
	case req.Kind == "rollback":
		if state == nil || state.Previous == "" {
			return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf(errNoPreviousRelease, req.App, req.Env), agent.ErrRollbackRefused, nil)
		}
		pick := lastWithID(list, state.Previous)
		if pick == nil {
			return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf(errPreviousNotStored, state.Previous), agent.ErrRollbackRefused, nil)
		}
		return pick, nil
	default:
		for i := range list {
			if list[i].Branch == env.Branch {
				return &list[i], nil // newest first
			}
		}
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf(errNoBranchRelease, env.Branch, req.App, env.Branch), ErrInvalidInput, nil)
	}
}

// lastWithID is the last release in list with the id, or nil.
func lastWithID(list []release.Meta, id string) *release.Meta {
	var pick *release.Meta
	for i := range list {
		if list[i].ID == id {
			pick = &list[i]
		}
	}
	return pick
}

// AutoDeploySkip says why an automatic deploy of rel must not replace cur,
// what the environment runs now, or "" when it may. Auto-deploys only go
// forward on a branch: a replayed webhook for an older push, or two builds
// finishing out of order, must not put older code back. "Older" is the
// build number, which counts a commit's ancestors (internal/build/gitmeta), so a
// descendant always has a higher one. The same release or commit is not
// newer; neither is another commit with the same number (a rewritten
// branch), which a person must deploy by hand. Releases of another branch
// than the current one's are not compared.
func AutoDeploySkip(req DeployRequest, rel, cur *release.Meta) string {
	if rel == nil || cur == nil || rel.Branch == "" || rel.Branch != cur.Branch {
		return ""
	}
	byHand := fmt.Sprintf("deploy it by hand with `mageflow deploy --app %s --env %s --release %s`", req.App, req.Env, rel.ID)
	switch {
	case rel.ID == cur.ID || (rel.Commit != "" && rel.Commit == cur.Commit):
		return fmt.Sprintf("release %s (build %d, commit %s) is already the environment's current release on branch %s; auto-deploys never redeploy or go backwards — %s if you mean to redeploy it",
			rel.ID, rel.BuildNumber, shortSHA(rel), rel.Branch, byHand)
	case rel.BuildNumber < cur.BuildNumber:
		return fmt.Sprintf("release %s (build %d, commit %s) is older than the environment's current release %s (build %d) on branch %s; auto-deploys never go backwards — %s if you mean to roll back",
			rel.ID, rel.BuildNumber, shortSHA(rel), cur.ID, cur.BuildNumber, rel.Branch, byHand)
	case rel.BuildNumber == cur.BuildNumber:
		return fmt.Sprintf("release %s (build %d, commit %s) is not newer than the environment's current release %s (build %d, commit %s) on branch %s: same build number, another commit (was the branch rewritten?); auto-deploys only go forward — %s if you mean to replace it",
			rel.ID, rel.BuildNumber, shortSHA(rel), cur.ID, cur.BuildNumber, shortSHA(cur), rel.Branch, byHand)
	}
	return ""
}

func shortSHA(m *release.Meta) string {
	if m.ShortCommit != "" {
		return m.ShortCommit
	}
	if len(m.Commit) > 7 {
		return m.Commit[:7]
	}
	return m.Commit
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
			TaskQueue:     &taskqueue.TaskQueue{Name: agent.HostTaskQueue(h), Kind: enumspb.TASK_QUEUE_KIND_NORMAL},
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
		return temporal.NewApplicationError(fmt.Sprintf("no agent is polling for host(s) %v: start `mageflow-agent --host NAME` on each", missing), agent.ErrAgentMissing)
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
