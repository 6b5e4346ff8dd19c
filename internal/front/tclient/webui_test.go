package tclient_test

import (
	"net/url"
	"testing"

	"github.com/mageflow/mageflow/internal/front/tclient"
)

func TestWorkflowURLEscapesEverySegment(t *testing.T) {
	for _, tc := range []struct {
		base, ns, id, run, want string
	}{
		{"http://ui:8233/", "default", "build-shop-1", "", "http://ui:8233/namespaces/default/workflows/build-shop-1"},
		{"http://ui:8233", "default", "deploy/shop/prod", "r1", "http://ui:8233/namespaces/default/workflows/deploy%2Fshop%2Fprod/r1/history"},
		{"http://ui:8233", "team a", "a b#c/d", "", "http://ui:8233/namespaces/team%20a/workflows/a%20b%23c%2Fd"},
		{"http://ui:8233", "ns", "id", "run/#1", "http://ui:8233/namespaces/ns/workflows/id/run%2F%231/history"},
	} {
		got := tclient.WorkflowURL(tc.base, tc.ns, tc.id, tc.run)
		if got != tc.want {
			t.Errorf("WorkflowURL(%q, %q, %q, %q) = %q, want %q", tc.base, tc.ns, tc.id, tc.run, got, tc.want)
		}
		u, err := url.Parse(got)
		if err != nil {
			t.Fatalf("%q does not parse: %v", got, err)
		}
		if u.Fragment != "" || u.RawQuery != "" {
			t.Errorf("%q: id leaked into fragment %q or query %q", got, u.Fragment, u.RawQuery)
		}
	}
}

func TestWorkflowsURLEscapesNamespaceAndQuery(t *testing.T) {
	got := tclient.WorkflowsURL("http://ui:8233/", "team a/b", "WorkflowType='ScaleOutReadiness'")
	want := "http://ui:8233/namespaces/team%20a%2Fb/workflows?query=WorkflowType%3D%27ScaleOutReadiness%27"
	if got != want {
		t.Errorf("WorkflowsURL = %q, want %q", got, want)
	}
}
