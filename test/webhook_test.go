package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"

	"github.com/mageflow/mageflow/internal/build/catalog"
	"github.com/mageflow/mageflow/internal/build/release"
	"github.com/mageflow/mageflow/internal/front/cli"
	"github.com/mageflow/mageflow/internal/front/tclient"
	"github.com/mageflow/mageflow/internal/platform/webhook"
	"github.com/mageflow/mageflow/test/fixtures"
)

// TestSignedWebhookBuildsOnce sends real signed GitHub deliveries to the real
// server wired to Temporal: a push builds, its redelivery (and the same push
// form-encoded) joins the same build, a bad signature starts nothing, and
// neither a stale captured delivery nor an older push replayed after a
// newer one starts a workflow.
func TestSignedWebhookBuildsOnce(t *testing.T) {
	repo := fixtures.Magento2App(t)
	h := newHarness(t, fmt.Sprintf(`  hookshop:
    repo: %s
    type: magento2
    build: {builder: local}
    webhook: {provider: github, secret: file:hookshop-webhook}
    environments:
      production: {branch: main}
`, repo))
	secret := []byte("s3cret-for-tests")
	require.NoError(t, os.MkdirAll(h.cfg.Secrets.Dir, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(h.cfg.Secrets.Dir, "hookshop-webhook"), secret, 0o600))

	_, cdc, err := tclient.DataConverter(h.cfg)
	require.NoError(t, err)
	handler, err := cli.NewHandler(h.cfg, h.client, cdc, h.acts.Store, nil)
	require.NoError(t, err)
	srv := httptest.NewServer(handler)
	defer srv.Close()

	head := gitRev(t, repo, "main")
	pushBody := func(commit string, pushedAt time.Time) []byte {
		b, err := json.Marshal(map[string]any{
			"ref": "refs/heads/main", "after": commit, "deleted": false,
			"repository":  map[string]any{"full_name": "acme/shop", "clone_url": "file://" + repo, "pushed_at": pushedAt.Unix()},
			"head_commit": map[string]any{"id": commit, "message": "Bump greeting marker to v2"},
		})
		require.NoError(t, err)
		return b
	}
	body := pushBody(head, time.Now().Add(-2*time.Minute))
	sendBody := func(body []byte, contentType, sig, delivery string) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/hooks/github", bytes.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-GitHub-Delivery", delivery)
		if sig != "" {
			req.Header.Set("X-Hub-Signature-256", sig)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	send := func(sig, delivery string) (int, map[string]any) {
		return sendBody(body, "application/json", sig, delivery)
	}

	code, _ := send(webhook.Sign([]byte("wrong"), body), "d-0")
	require.Equal(t, http.StatusUnauthorized, code)
	code, _ = send("", "d-0")
	require.Equal(t, http.StatusUnauthorized, code)

	code, first := send(webhook.Sign(secret, body), "d-1")
	require.Equal(t, http.StatusAccepted, code, first)
	require.Equal(t, "build/hookshop/"+head, first["workflow_id"])
	// The provider redelivers, and a second delivery of the same push arrives.
	code, again := send(webhook.Sign(secret, body), "d-1")
	require.Equal(t, http.StatusAccepted, code)
	require.Equal(t, first["workflow_id"], again["workflow_id"])
	code, other := send(webhook.Sign(secret, body), "d-2")
	require.Equal(t, http.StatusAccepted, code)
	require.Equal(t, first["workflow_id"], other["workflow_id"])
	// GitHub's default content type: the same push as a signed form.
	form := []byte(url.Values{"payload": {string(body)}}.Encode())
	code, viaForm := sendBody(form, "application/x-www-form-urlencoded", webhook.Sign(secret, form), "d-form")
	require.Equal(t, http.StatusAccepted, code, viaForm)
	require.Equal(t, first["workflow_id"], viaForm["workflow_id"])

	// Replays start no workflow at all: a captured delivery hours old, and
	// an older push replayed after the newer one was built.
	notStarted := func(commit string) {
		_, err := h.client.DescribeWorkflow(context.Background(), "build/hookshop/"+commit, "")
		var nf *serviceerror.NotFound
		require.ErrorAs(t, err, &nf, "a workflow was started for replayed commit %s", commit)
	}
	stale := pushBody(strings.Repeat("5", 40), time.Now().Add(-3*time.Hour))
	code, out := sendBody(stale, "application/json", webhook.Sign(secret, stale), "d-stale")
	require.Equal(t, http.StatusUnprocessableEntity, code, out)
	notStarted(strings.Repeat("5", 40))
	older := pushBody(strings.Repeat("6", 40), time.Now().Add(-10*time.Minute))
	code, out = sendBody(older, "application/json", webhook.Sign(secret, older), "d-older")
	require.Equal(t, http.StatusConflict, code, out)
	notStarted(strings.Repeat("6", 40))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var m release.Meta
	require.NoError(t, h.client.GetWorkflow(ctx, first["workflow_id"].(string), "").Get(ctx, &m))
	require.Equal(t, "main", m.Branch)
	require.Equal(t, gitCount(t, repo, "main"), m.BuildNumber)
	list, err := catalog.List(ctx, h.acts.Store, "hookshop")
	require.NoError(t, err)
	require.Len(t, list, 1)

	// The dashboard lists it with its Web UI link.
	resp, err := http.Get(srv.URL + "/")
	require.NoError(t, err)
	defer resp.Body.Close()
	var page bytes.Buffer
	_, _ = page.ReadFrom(resp.Body)
	require.Contains(t, page.String(), m.ID)
	require.Contains(t, page.String(), "/workflows/build%2Fhookshop%2F"+head)
}
