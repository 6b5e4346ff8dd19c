package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/mageflow/mageflow/internal/platform/config"
	"github.com/mageflow/mageflow/internal/testkit/testenv"
)

func TestDefaultS3PortsAreDistinct(t *testing.T) {
	p := DefaultS3Ports(9000)
	all := p.all()
	require.Equal(t, 9000, p.S3)
	seen := map[int]bool{}
	for _, n := range all {
		require.False(t, seen[n], "port %d twice in %v", n, all)
		seen[n] = true
	}
	require.Len(t, seen, 8)
}

func newTestS3Server(t *testing.T) (*S3Server, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := NewS3Server(S3Options{Weed: "/bin/false", Dir: filepath.Join(dir, "s3"), LogDir: filepath.Join(dir, "log"),
		IP: "127.0.0.1", Ports: DefaultS3Ports(9500), Buckets: []string{"b"}})
	require.NoError(t, err)
	return s, dir
}

// TestS3ServerFiles: the keys are made once and kept (the data outlives a
// run), private files hold them, and weed's arguments do not.
func TestS3ServerFiles(t *testing.T) {
	s, dir := newTestS3Server(t)
	require.NotEmpty(t, s.AccessKeyID)
	require.Len(t, s.SecretAccessKey, 40)
	for _, f := range []string{s.CredentialsFile, s.ConfigFile, filepath.Join(dir, "s3", "identities.json")} {
		st, err := os.Stat(f)
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), f)
	}
	var ids struct {
		Identities []struct {
			Credentials []struct{ AccessKey, SecretKey string }
			Actions     []string
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "s3", "identities.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &ids))
	require.Len(t, ids.Identities, 1)
	require.Equal(t, s.AccessKeyID, ids.Identities[0].Credentials[0].AccessKey)
	require.Equal(t, s.SecretAccessKey, ids.Identities[0].Credentials[0].SecretKey)
	require.Contains(t, ids.Identities[0].Actions, "Write")

	again, err := NewS3Server(s.opts)
	require.NoError(t, err)
	require.Equal(t, s.AccessKeyID, again.AccessKeyID, "a second start keeps the keys")
	require.Equal(t, s.SecretAccessKey, again.SecretAccessKey)

	args := strings.Join(s.Args(), " ")
	require.NotContains(t, args, s.SecretAccessKey)
	require.NotContains(t, args, s.AccessKeyID)
	for _, want := range []string{"server", "-ip.bind=127.0.0.1", "-s3.port=9500", "-master.port=9501", "-volume.port=9502",
		"-filer.port=9503", "-s3.port.grpc=9600", "-master.telemetry=false", "-master.electionTimeout=1s", "-s3.port.iceberg=0",
		"-s3.config=" + filepath.Join(dir, "s3", "identities.json"), "-s3.localSocket=" + filepath.Join(dir, "s3", "s3.sock"), "-dir=" + filepath.Join(dir, "s3", "data")} {
		require.Contains(t, s.Args(), want)
	}
	require.Equal(t, "http://127.0.0.1:9500", s.Endpoint)
}

func TestS3ServerBrokenCredentialsFile(t *testing.T) {
	s, _ := newTestS3Server(t)
	require.NoError(t, os.WriteFile(s.CredentialsFile, []byte("[x]\n"), 0o600))
	_, err := NewS3Server(s.opts)
	require.ErrorContains(t, err, "delete it")
}

func TestS3Env(t *testing.T) {
	in := []string{"PATH=/bin", "AWS_ACCESS_KEY_ID=AKIA", "AWS_SECRET_ACCESS_KEY=s", "AWS_PROFILE=prod", "AWS_REGION=eu-west-1", "HOME=/root"}
	out := S3Env(in, "/d/credentials", "/d/aws-config")
	require.Equal(t, []string{"PATH=/bin", "AWS_REGION=eu-west-1", "HOME=/root",
		"AWS_SHARED_CREDENTIALS_FILE=/d/credentials", "AWS_CONFIG_FILE=/d/aws-config", "AWS_PROFILE=" + S3Profile}, out)
	require.Equal(t, []string{"PATH=/bin", "AWS_REGION=eu-west-1", "HOME=/root"}, S3Env(in, "", ""))
}

// TestWriteS3Config: the config the workers and serve get is the
// operator's with the artifacts in the bucket, loads from its new place
// (paths absolute) and is private.
func TestWriteS3Config(t *testing.T) {
	s, dir := newTestS3Server(t)
	c := &Cluster{opts: Options{Dir: dir, S3Bucket: "mageflow-artifacts"}, S3: s}
	orig, err := config.Load(filepath.Join("..", "..", "..", "mageflow.yaml"), false)
	require.NoError(t, err)
	cfg, err := config.Load(orig.File, false)
	require.NoError(t, err)
	p, err := c.WriteS3Config(cfg)
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dir, "config", "mageflow.yaml"), p)
	st, err := os.Stat(p)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	require.NotContains(t, string(b), s.SecretAccessKey)

	got, err := config.Load(p, false)
	require.NoError(t, err)
	require.Equal(t, &config.S3{Bucket: "mageflow-artifacts", Region: S3Region, Endpoint: s.Endpoint, PathStyle: true}, got.Artifacts.S3)
	require.Empty(t, got.Artifacts.Dir)
	require.Equal(t, orig.Temporal, got.Temporal)
	require.Equal(t, orig.Secrets, got.Secrets)
	require.Equal(t, orig.Server.Auth.Token, got.Server.Auth.Token, "secret references stay references")
	require.Equal(t, orig.Apps["demo"].Repo, got.Apps["demo"].Repo)
	require.Equal(t, orig.Hosts["local"].Root, got.Hosts["local"].Root)
	require.True(t, slices.Equal(orig.Apps["demo"].Build.Locales, got.Apps["demo"].Build.Locales))

	_, err = (&Cluster{opts: Options{Dir: dir}}).WriteS3Config(cfg)
	require.Error(t, err, "no S3 server")
}

// TestS3ServerKeepsDataAcrossRestart runs weed (MAGEFLOW_TEST_WEED, make
// test-cluster): an object written before a SIGKILL is there after a start
// on the same directory, with the same keys, and the bucket creation is
// idempotent.
func TestS3ServerKeepsDataAcrossRestart(t *testing.T) {
	weed := testenv.WeedOrSkip(t)
	ctx := context.Background()
	dir := t.TempDir()
	ports, err := freeTCPPorts(8)
	require.NoError(t, err)
	o := S3Options{Weed: weed, Dir: filepath.Join(dir, "s3"), LogDir: filepath.Join(dir, "log"), IP: "127.0.0.1",
		Ports: S3Ports{ports[0], ports[1], ports[2], ports[3], ports[4], ports[5], ports[6], ports[7]}, Buckets: []string{"mageflow-artifacts"}}
	start := func() (*S3Server, *Proc) {
		s, err := NewS3Server(o)
		require.NoError(t, err)
		cmd := s.Command()
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		p, err := StartProc(s3ProcName, o.LogDir, cmd)
		require.NoError(t, err)
		t.Cleanup(func() { p.Kill(); s.RemoveSockets() })
		exited := func() error {
			if p.Exited() {
				return fmt.Errorf("weed exited: see %s", filepath.Join(o.LogDir, "weed.log"))
			}
			return nil
		}
		require.NoError(t, s.WaitReady(ctx, 2*time.Minute, exited))
		return s, p
	}
	s, p := start()
	_, err = s.Client().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("mageflow-artifacts"), Key: aws.String("demo/1.tar.zst"), Body: strings.NewReader("release 1")})
	require.NoError(t, err)
	p.Kill()
	s.RemoveSockets()

	s2, _ := start()
	require.Equal(t, s.SecretAccessKey, s2.SecretAccessKey)
	out, err := s2.Client().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("mageflow-artifacts"), Key: aws.String("demo/1.tar.zst")})
	require.NoError(t, err)
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	require.NoError(t, err)
	require.Equal(t, "release 1", string(b))
	list, err := s2.Client().ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("mageflow-artifacts")})
	require.NoError(t, err)
	require.Len(t, list.Contents, 1, "the readiness probe object is deleted")
}

func freeTCPPorts(n int) ([]int, error) {
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}
