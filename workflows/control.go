package workflows

import (
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// Short control-plane steps (plan, record, check the agents, look up and
// publish a release) run on the control worker that runs the workflow. A
// regular activity costs each of them a round trip through the server: an
// activity task through matching, three history events, then a new
// workflow task. As local activities they run inside the workflow task and
// leave one marker. On a Temporal cluster that server work was what
// limited throughput (docs/benchmarks.md, "Scale"), so runs started from
// these versions on take the local path; older runs replay the regular one.
const (
	deployLocalChange = "deploy-control-local"
	buildLocalChange  = "build-control-local"
)

// controlStep is how a run executes its short control steps.
type controlStep bool

// localSteps reports, once per run and before its first control step,
// whether the run executes them as local activities.
func localSteps(ctx workflow.Context, change string) controlStep {
	return workflow.GetVersion(ctx, change, workflow.DefaultVersion, 1) == 1
}

// run executes act with the timeout and retry policy of ctx's activity
// options, locally when c says so. A local step that is cut off by a
// worker crash runs again on the next worker, so act must be idempotent,
// as every control activity is.
func (c controlStep) run(ctx workflow.Context, act any, args ...any) workflow.Future {
	if !c {
		return workflow.ExecuteActivity(ctx, act, args...)
	}
	o := workflow.GetActivityOptions(ctx)
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout:    o.StartToCloseTimeout,
		ScheduleToCloseTimeout: o.ScheduleToCloseTimeout,
		RetryPolicy:            o.RetryPolicy,
	})
	return workflow.ExecuteLocalActivity(lctx, act, args...)
}

// keyword is a keyword search attribute and the value a run gives it.
type keyword struct {
	key   temporal.SearchAttributeKeyKeyword
	value string
}

// upsertKeywords sets keyword search attributes. From the local-steps
// version on it leaves out those the start already set to the same value
// (every starter sets App and Environment or CommitID): each upsert is one
// more history event and one more row written to the visibility store.
func (c controlStep) upsertKeywords(ctx workflow.Context, kws ...keyword) error {
	have := workflow.GetTypedSearchAttributes(ctx)
	var ups []temporal.SearchAttributeUpdate
	for _, kw := range kws {
		if v, ok := have.GetKeyword(kw.key); bool(c) && ok && v == kw.value {
			continue
		}
		ups = append(ups, kw.key.ValueSet(kw.value))
	}
	if len(ups) == 0 {
		return nil
	}
	return workflow.UpsertTypedSearchAttributes(ctx, ups...)
}
