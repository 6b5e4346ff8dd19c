// Package workflows holds mageflow's Temporal workflows. They are pure
// orchestration: no I/O, no wall clock, no map iteration — every side effect
// is an activity in package activities — so they replay deterministically
// (workflowcheck runs in `make test`).
package workflows

import "strings"

// DefaultTaskQueue is the control task queue the mageflow worker polls.
const DefaultTaskQueue = "mageflow"

// BuildWorkflowID is the one id a commit's build can have, so a duplicate
// webhook, a retry or a person asking again joins the same build instead of
// starting a second one.
func BuildWorkflowID(app, commit string) string {
	return "build/" + app + "/" + strings.ToLower(commit)
}

// ResolveWorkflowID names a short-lived ref resolution started by the CLI.
func ResolveWorkflowID(app, requestID string) string {
	return "resolve/" + app + "/" + requestID
}
