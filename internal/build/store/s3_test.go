package store

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/stretchr/testify/require"
)

// fakeS3 serves an in-memory S3 on loopback and counts the multipart part
// uploads it receives.
type fakeS3 struct {
	url   string
	parts atomic.Int32
	puts  atomic.Int32 // object creations (PutObject or multipart complete)
}

func newFakeS3(t *testing.T, buckets ...string) *fakeS3 {
	t.Helper()
	backend := s3mem.New()
	for _, b := range buckets {
		require.NoError(t, backend.CreateBucket(b))
	}
	faker := gofakes3.New(backend)
	f := &fakeS3{}
	h := faker.Server()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		switch {
		case r.Method == http.MethodPut && q.Has("partNumber"):
			f.parts.Add(1)
		case r.Method == http.MethodPut && !q.Has("uploadId"):
			f.puts.Add(1)
		case r.Method == http.MethodPost && q.Has("uploadId"):
			f.puts.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

func newTestS3(t *testing.T, f *fakeS3, bucket, prefix string, partSize int64) *S3 {
	t.Helper()
	s, err := NewS3(context.Background(), S3Config{
		Bucket:          bucket,
		Prefix:          prefix,
		Region:          "us-east-1",
		Endpoint:        f.url,
		PathStyle:       true,
		AccessKeyID:     "test",
		SecretAccessKey: "test",
		PartSize:        partSize,
		Concurrency:     3,
	})
	require.NoError(t, err)
	return s
}

func TestS3Contract(t *testing.T) {
	f := newFakeS3(t, "artifacts")
	s := newTestS3(t, f, "artifacts", "", 0)
	require.NoError(t, s.Check(context.Background()))
	testStoreContract(t, s)
	require.Equal(t, "s3://artifacts/a/b.tar.zst", s.URI("a/b.tar.zst"))
}

func TestS3ContractWithPrefix(t *testing.T) {
	f := newFakeS3(t, "artifacts")
	s := newTestS3(t, f, "artifacts", "/mageflow/releases/", 0)
	testStoreContract(t, s)
	require.Equal(t, "s3://artifacts/mageflow/releases/a/b.tar.zst", s.URI("a/b.tar.zst"))

	// Objects really live under the prefix, and the store sees only them.
	_, err := s.client.PutObject(context.Background(), &s3.PutObjectInput{
		Bucket: aws.String("artifacts"), Key: aws.String("unrelated/x"), Body: strings.NewReader("x"),
	})
	require.NoError(t, err)
	out, err := s.client.HeadObject(context.Background(), &s3.HeadObjectInput{
		Bucket: aws.String("artifacts"), Key: aws.String("mageflow/releases/shop/12-abcdef0.tar.zst"),
	})
	require.NoError(t, err)
	require.Len(t, out.Metadata["sha256"], 64)
	list, err := s.List(context.Background(), "")
	require.NoError(t, err)
	for _, in := range list {
		require.False(t, strings.HasPrefix(in.Key, "unrelated"), in.Key)
		require.False(t, strings.HasPrefix(in.Key, "mageflow/"), in.Key)
	}
}

func TestS3MultipartUpload(t *testing.T) {
	ctx := context.Background()
	f := newFakeS3(t, "artifacts")
	const partSize = 5 << 20 // the S3 minimum
	s := newTestS3(t, f, "artifacts", "p", partSize)

	file, sum := artifactFile(t, 2*partSize+12345, 7) // 3 parts
	_, existed, err := s.Put(ctx, "shop/1-abcdef0.tar.zst", file, sum, PutOptions{})
	require.NoError(t, err)
	require.False(t, existed)
	require.Equal(t, int32(3), f.parts.Load(), "a file larger than the part size must go up in parts")

	info, err := s.Stat(ctx, "shop/1-abcdef0.tar.zst")
	require.NoError(t, err)
	require.Equal(t, sum, info.SHA256, "sha256 metadata must survive multipart upload")
	require.Equal(t, int64(2*partSize+12345), info.Size)
	got := readAll(t, s, "shop/1-abcdef0.tar.zst")
	require.Len(t, got, 2*partSize+12345)

	// The no-op re-put uploads nothing.
	parts, puts := f.parts.Load(), f.puts.Load()
	_, existed, err = s.Put(ctx, "shop/1-abcdef0.tar.zst", file, sum, PutOptions{})
	require.NoError(t, err)
	require.True(t, existed)
	require.Equal(t, parts, f.parts.Load())
	require.Equal(t, puts, f.puts.Load())
}

// TestS3ConditionalPut covers the race the HeadObject check cannot: the
// key is created by someone else between our check and our upload. The
// If-None-Match: * upload must fail and Put must report the conflict.
func TestS3ConditionalPut(t *testing.T) {
	ctx := context.Background()
	f := newFakeS3(t, "artifacts")
	s := newTestS3(t, f, "artifacts", "", 0)
	_, err := s.PutBytes(ctx, "k.json", []byte("first"), PutOptions{})
	require.NoError(t, err)
	err = s.putSmall(ctx, "k.json", []byte("second"), "application/json", false)
	require.ErrorIs(t, err, errPrecondition)
	require.Equal(t, []byte("first"), readAll(t, s, "k.json"))
}

func TestS3ForeignObjectWithoutChecksum(t *testing.T) {
	ctx := context.Background()
	f := newFakeS3(t, "artifacts")
	s := newTestS3(t, f, "artifacts", "", 0)
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String("artifacts"), Key: aws.String("app/1-abcdef0.tar.zst"), Body: strings.NewReader("x"),
	})
	require.NoError(t, err)
	file, sum := artifactFile(t, 1000, 8)
	_, _, err = s.Put(ctx, "app/1-abcdef0.tar.zst", file, sum, PutOptions{})
	require.ErrorContains(t, err, "no sha256 metadata")
}

func TestS3MissingBucket(t *testing.T) {
	f := newFakeS3(t)
	s := newTestS3(t, f, "nope", "", 0)
	err := s.Check(context.Background())
	require.ErrorContains(t, err, `cannot access bucket "nope"`)
	_, err = s.PutBytes(context.Background(), "a/b", []byte("x"), PutOptions{})
	require.Error(t, err)
	require.NotErrorIs(t, err, ErrNotFound)
}

func TestNewS3Validation(t *testing.T) {
	_, err := NewS3(context.Background(), S3Config{})
	require.ErrorContains(t, err, "bucket is empty")
	_, err = NewS3(context.Background(), S3Config{Bucket: "b", Region: "x", AccessKeyID: "only-id"})
	require.ErrorContains(t, err, "both")
	_, err = NewS3(context.Background(), S3Config{Bucket: "b", Region: "x", PartSize: 1 << 20})
	require.ErrorContains(t, err, "part size")
}
