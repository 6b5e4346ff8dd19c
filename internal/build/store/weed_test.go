package store

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/mageflow/mageflow/internal/front/cluster"
	"github.com/mageflow/mageflow/internal/testkit/testenv"
)

// The S3 store against a real S3 server: SeaweedFS's weed (the server
// `mageflow cluster` runs), started once for this package's tests when
// MAGEFLOW_TEST_WEED names the binary (make test-cluster); without it
// these tests skip naming make test-cluster.

const weedBucket = "artifacts"

var weedOnce struct {
	sync.Mutex
	srv  *cluster.S3Server
	err  error
	stop func()
}

// TestMain stops weed, if a test started it, after the last test.
func TestMain(m *testing.M) {
	code := m.Run()
	weedOnce.Lock()
	if weedOnce.stop != nil {
		weedOnce.stop()
	}
	weedOnce.Unlock()
	os.Exit(code)
}

// weedServer starts weed on free loopback ports in a temporary directory
// for the first test that asks and returns it; every test uses its own
// key prefix.
func weedServer(t *testing.T) *cluster.S3Server {
	t.Helper()
	bin := testenv.WeedOrSkip(t)
	weedOnce.Lock()
	defer weedOnce.Unlock()
	if weedOnce.srv == nil && weedOnce.err == nil {
		weedOnce.srv, weedOnce.err = startWeed(bin)
	}
	require.NoError(t, weedOnce.err)
	return weedOnce.srv
}

func startWeed(bin string) (*cluster.S3Server, error) {
	dir, err := os.MkdirTemp("", "mageflow-weed-")
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(8)
	if err != nil {
		return nil, err
	}
	srv, err := cluster.NewS3Server(cluster.S3Options{
		Weed: bin, Dir: filepath.Join(dir, "s3"), LogDir: filepath.Join(dir, "log"), IP: "127.0.0.1",
		Ports: cluster.S3Ports{S3: ports[0], Master: ports[1], Volume: ports[2], Filer: ports[3],
			S3GRPC: ports[4], MasterGRPC: ports[5], VolumeGRPC: ports[6], FilerGRPC: ports[7]},
		Buckets: []string{weedBucket},
	})
	if err != nil {
		return nil, err
	}
	// Killed with the test binary too (a timeout, Ctrl-C): weed runs in
	// its own process group, which a signal to go test does not reach.
	cmd := srv.Command()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p, err := cluster.StartProc("weed", filepath.Join(dir, "log"), cmd)
	if err != nil {
		return nil, err
	}
	weedOnce.stop = func() {
		_ = p.Stop(3 * time.Second) // the data goes with dir
		srv.RemoveSockets()
		os.RemoveAll(dir)
	}
	exited := func() error {
		if p.Exited() {
			return &weedExit{dir: dir, err: p.Err()}
		}
		return nil
	}
	if err := srv.WaitReady(context.Background(), 2*time.Minute, exited); err != nil {
		weedOnce.stop()
		weedOnce.stop = nil
		return nil, err
	}
	return srv, nil
}

type weedExit struct {
	dir string
	err error
}

func (e *weedExit) Error() string {
	return "weed exited during start-up (" + e.err.Error() + "): see " + filepath.Join(e.dir, "log", "weed.log")
}

// freePorts returns n distinct loopback ports free right now.
func freePorts(n int) ([]int, error) {
	var out []int
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

func newWeedS3(t *testing.T, prefix string, partSize int64) *S3 {
	t.Helper()
	srv := weedServer(t)
	s, err := NewS3(context.Background(), S3Config{
		Bucket: weedBucket, Prefix: prefix, Region: cluster.S3Region, Endpoint: srv.Endpoint, PathStyle: true,
		AccessKeyID: srv.AccessKeyID, SecretAccessKey: srv.SecretAccessKey, PartSize: partSize, Concurrency: 3,
	})
	require.NoError(t, err)
	return s
}

func TestS3WeedContract(t *testing.T) {
	s := newWeedS3(t, "contract-"+strings.ToLower(t.Name()), 0)
	require.NoError(t, s.Check(context.Background()))
	testStoreContract(t, s)
}

func TestS3WeedContractWithNestedPrefix(t *testing.T) {
	s := newWeedS3(t, "/nested/"+strings.ToLower(t.Name())+"/releases/", 0)
	testStoreContract(t, s)
	require.Equal(t, "s3://artifacts/nested/"+strings.ToLower(t.Name())+"/releases/a/b", s.URI("a/b"))
}

// TestS3WeedMultipartUpload: a file of three parts goes up as a multipart
// upload (the object's ETag says so: "<md5 of md5s>-3"), keeps its sha256
// metadata and reads back whole and by range.
func TestS3WeedMultipartUpload(t *testing.T) {
	ctx := context.Background()
	const partSize = 5 << 20 // the S3 minimum
	s := newWeedS3(t, "multipart", partSize)
	const size = 2*partSize + 12345
	file, sum := artifactFile(t, size, 7)
	_, existed, err := s.Put(ctx, "shop/1-abcdef0.tar.zst", file, sum, PutOptions{})
	require.NoError(t, err)
	require.False(t, existed)

	head, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(weedBucket), Key: aws.String("multipart/shop/1-abcdef0.tar.zst")})
	require.NoError(t, err)
	require.True(t, strings.HasSuffix(strings.Trim(aws.ToString(head.ETag), `"`), "-3"), "ETag %s: not a 3-part upload", aws.ToString(head.ETag))

	info, err := s.Stat(ctx, "shop/1-abcdef0.tar.zst")
	require.NoError(t, err)
	require.Equal(t, sum, info.SHA256, "sha256 metadata must survive multipart upload")
	require.Equal(t, int64(size), info.Size)
	got := readAll(t, s, "shop/1-abcdef0.tar.zst")
	require.Len(t, got, size)
	// A range across the first part boundary.
	b, err := s.GetRange(ctx, "shop/1-abcdef0.tar.zst", partSize-100, 200)
	require.NoError(t, err)
	require.Equal(t, got[partSize-100:partSize+100], b)

	_, existed, err = s.Put(ctx, "shop/1-abcdef0.tar.zst", file, sum, PutOptions{})
	require.NoError(t, err)
	require.True(t, existed)
}

// TestS3WeedConditionalPut: weed honours If-None-Match: * on a single
// PutObject and on CompleteMultipartUpload, so the race the HeadObject
// check cannot see is closed on this server too.
func TestS3WeedConditionalPut(t *testing.T) {
	ctx := context.Background()
	s := newWeedS3(t, "conditional", 5<<20)
	_, err := s.PutBytes(ctx, "k.json", []byte("first"), PutOptions{})
	require.NoError(t, err)
	err = s.putSmall(ctx, "k.json", []byte("second"), "application/json", false)
	require.ErrorIs(t, err, errPrecondition)
	require.Equal(t, []byte("first"), readAll(t, s, "k.json"))

	// The multipart path, bypassing Put's HeadObject check as a
	// concurrent writer would.
	file, sum := artifactFile(t, 11<<20, 9)
	_, _, err = s.Put(ctx, "big.tar.zst", file, sum, PutOptions{})
	require.NoError(t, err)
	other, _ := artifactFile(t, 11<<20, 10)
	f, err := os.Open(other)
	require.NoError(t, err)
	defer f.Close()
	//lint:ignore SA1019 the uploader Put uses
	_, err = s.uploader.Upload(ctx, &s3.PutObjectInput{Bucket: aws.String(weedBucket), Key: aws.String("conditional/big.tar.zst"),
		Body: f, IfNoneMatch: aws.String("*"), Metadata: map[string]string{shaMetaKey: "0"}})
	require.Error(t, err)
	require.True(t, isPreconditionFailed(err), "want 412 Precondition Failed, got %v", err)
	info, err := s.Stat(ctx, "big.tar.zst")
	require.NoError(t, err)
	require.Equal(t, sum, info.SHA256, "the conditional multipart upload must not replace the object")
}
