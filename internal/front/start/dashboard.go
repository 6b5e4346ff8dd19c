package start

import (
	"context"

	"github.com/mageflow/mageflow/activities"
	"github.com/mageflow/mageflow/internal/build/catalog"
	"github.com/mageflow/mageflow/internal/front/server"
)

// Dashboard adapts Deploys to the server's Deploys interface.
type Dashboard struct{ C *Deploys }

var _ server.Deploys = Dashboard{}

// Environments lists every app's environments with what they run and any
// deploy in progress, in config order (apps and environments sorted).
func (d Dashboard) Environments(ctx context.Context) ([]server.EnvView, error) {
	var out []server.EnvView
	for _, appName := range d.C.Config.AppNames() {
		app := d.C.Config.Apps[appName]
		for _, envName := range sortedEnvs(app.Environments) {
			e := app.Environments[envName]
			v := server.EnvView{App: appName, Env: envName, Branch: e.Branch, URL: e.URL, Hosts: e.Hosts, ApprovalRequired: e.Approval == "required"}
			st, err := catalog.Env(ctx, d.C.Store, appName, envName)
			if err != nil {
				return nil, err
			}
			v.State = st
			if len(e.Hosts) > 0 {
				status, id, runID, err := d.C.Status(ctx, appName, envName)
				if err != nil {
					return nil, err
				}
				if status != nil {
					v.Running = &server.RunningDeploy{WorkflowID: id, RunID: runID, ReleaseID: status.ReleaseID, Phase: status.Phase,
						WaitingApproval: status.WaitingApproval, RequestedBy: status.RequestedBy, StartedAt: status.StartedAt}
				}
			}
			out = append(out, v)
		}
	}
	return out, nil
}

// History lists deploys newest first.
func (d Dashboard) History(ctx context.Context, app, env string, limit int) ([]catalog.Deploy, error) {
	return d.C.History(ctx, app, env, limit)
}

// StartDeploy starts a deploy (refused while one runs).
func (d Dashboard) StartDeploy(ctx context.Context, r server.DeployRequest) (string, error) {
	run, err := d.C.Start(ctx, activities.DeployRequest{App: r.App, Env: r.Env, ReleaseID: r.ReleaseID, Kind: "deploy", RequestedBy: r.By, Reason: r.Reason}, false)
	if err != nil {
		return "", err
	}
	return run.GetID(), nil
}

// Approve approves or rejects the waiting deploy.
func (d Dashboard) Approve(ctx context.Context, r server.ApprovalRequest) error {
	return d.C.Decide(ctx, r.App, r.Env, r.Approve, r.By, r.Reason)
}

// Rollback starts a rollback.
func (d Dashboard) Rollback(ctx context.Context, r server.RollbackRequest) (string, error) {
	run, err := d.C.Start(ctx, activities.DeployRequest{App: r.App, Env: r.Env, ReleaseID: r.To, Kind: "rollback", Force: r.Force, RequestedBy: r.By, Reason: r.Reason}, false)
	if err != nil {
		return "", err
	}
	return run.GetID(), nil
}
