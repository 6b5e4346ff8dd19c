package tclient

import (
	"net/url"
	"strings"
)

// WorkflowURL links a workflow in the Temporal Web UI at base (for example
// http://127.0.0.1:8233); with a run id, that run's history. Every segment
// is path-escaped: workflow ids may contain slashes, spaces or '#'.
func WorkflowURL(base, namespace, workflowID, runID string) string {
	u := strings.TrimRight(base, "/") + "/namespaces/" + url.PathEscape(namespace) + "/workflows/" + url.PathEscape(workflowID)
	if runID != "" {
		u += "/" + url.PathEscape(runID) + "/history"
	}
	return u
}

// WorkflowsURL links the Web UI's list of the workflows a visibility query
// selects, e.g. "WorkflowType='ScaleOutReadiness'".
func WorkflowsURL(base, namespace, query string) string {
	return strings.TrimRight(base, "/") + "/namespaces/" + url.PathEscape(namespace) + "/workflows?query=" + url.QueryEscape(query)
}
