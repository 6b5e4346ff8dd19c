package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/stretchr/testify/require"

	"github.com/mageflow/mageflow/internal/build/release"
	"github.com/mageflow/mageflow/internal/front/cli"
	"github.com/mageflow/mageflow/test/fixtures"
)

// TestBuildToS3 stores a release in an S3-compatible server started on
// loopback, and lists it back from the bucket with the CLI.
func TestBuildToS3(t *testing.T) {
	backend := s3mem.New()
	require.NoError(t, backend.CreateBucket("releases"))
	srv := httptest.NewServer(gofakes3.New(backend).Server())
	defer srv.Close()
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")

	repo := fixtures.Magento2App(t)
	h := newHarnessWith(t,
		fmt.Sprintf("artifacts: {s3: {bucket: releases, prefix: mageflow, region: us-east-1, endpoint: %q, path_style: true}}", srv.URL),
		localApp("s3shop", repo))
	m, _, err := h.build("s3shop", "main", 5*time.Minute)
	require.NoError(t, err)
	require.Equal(t, "s3://releases/mageflow/s3shop/"+m.ID+".tar.zst", m.Artifact.URI)

	// The object is there with the recorded checksum.
	rc, err := h.acts.Store.Get(context.Background(), "s3shop/"+m.ID+".tar.zst")
	require.NoError(t, err)
	b, err := io.ReadAll(rc)
	rc.Close()
	require.NoError(t, err)
	require.EqualValues(t, m.Artifact.Size, len(b))

	var out, errb bytes.Buffer
	require.Equal(t, 0, cli.Main([]string{"releases", "--config", h.cfgPath, "--app", "s3shop", "--json"}, &out, &errb), errb.String())
	var list []release.Meta
	require.NoError(t, json.Unmarshal(out.Bytes(), &list))
	require.Len(t, list, 1)
	require.Equal(t, m.Artifact.SHA256, list[0].Artifact.SHA256)
}
