package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mageflow/mageflow/internal/build/store"
	"github.com/mageflow/mageflow/internal/front/server"
)

type fakeReports map[string]string // "host.ext" -> body

func (f fakeReports) Hosts() []string { return []string{"web1", "web2"} }

func (f fakeReports) Latest(_ context.Context, host, ext string) ([]byte, error) {
	if b, ok := f[host+"."+ext]; ok {
		return []byte(b), nil
	}
	return nil, fmt.Errorf("report: %w", store.ErrNotFound)
}

func TestHardenReportRoutes(t *testing.T) {
	h := server.New(server.Options{HardenReports: fakeReports{"web1.md": "# Hardening report web1", "web1.json": `{"host":"web1"}`}})
	get := func(path string) (int, string, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		b, _ := io.ReadAll(rec.Body)
		return rec.Code, rec.Header().Get("Content-Type"), string(b)
	}
	code, ctype, body := get("/reports/harden/web1/latest.md")
	require.Equal(t, 200, code)
	require.True(t, strings.HasPrefix(ctype, "text/markdown"))
	require.Equal(t, "# Hardening report web1", body)
	code, ctype, _ = get("/reports/harden/web1/latest.json")
	require.Equal(t, 200, code)
	require.Equal(t, "application/json", ctype)
	code, _, body = get("/reports/harden/web2/latest.md")
	require.Equal(t, 404, code)
	require.Contains(t, body, "never hardened")
	code, _, _ = get("/reports/harden/web9/latest.md")
	require.Equal(t, 404, code, "only configured hosts")
	code, _, _ = get("/reports/harden/web1/20260101T000000.000Z.json")
	require.Equal(t, 404, code, "only the latest reports are served")
	code, _, body = get("/reports/harden/")
	require.Equal(t, 200, code)
	require.Contains(t, body, `href="/reports/harden/web1/latest.md"`)
	require.Contains(t, body, "web2: never hardened")
}

// Hardening reports list a store's weak spots: once the server has
// credentials they are required, even when ordinary views are public.
func TestHardenReportsNeedCredentialsWhenConfigured(t *testing.T) {
	h := server.New(server.Options{
		HardenReports: fakeReports{"web1.md": "# Hardening report web1"},
		Auth:          server.Auth{Token: func() ([]byte, error) { return []byte("s3cret"), nil }},
	})
	get := func(path, bearer string) int {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	require.NotEqual(t, 200, get("/reports/harden/web1/latest.md", ""), "anonymous")
	require.NotEqual(t, 200, get("/reports/harden/", ""), "anonymous index")
	require.Equal(t, 401, get("/reports/harden/web1/latest.md", "wrong"))
	require.Equal(t, 200, get("/reports/harden/web1/latest.md", "s3cret"))
}
