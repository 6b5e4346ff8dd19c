package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// S3Config configures NewS3.
type S3Config struct {
	Bucket string
	// Prefix is prepended (with a slash) to every key.
	Prefix string
	// Region defaults to the AWS configuration (AWS_REGION, profile); with
	// a custom Endpoint and no region at all, us-east-1.
	Region string
	// Endpoint is the URL of an S3-compatible server (MinIO, Ceph, R2…);
	// empty means AWS.
	Endpoint string
	// PathStyle addresses buckets as endpoint/bucket instead of
	// bucket.endpoint, which most self-hosted servers need.
	PathStyle bool
	// AccessKeyID and SecretAccessKey, when both set, are used instead of
	// the default AWS credential chain (env, profile, instance role).
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	// PartSize is the multipart part size; zero means DefaultPartSize.
	PartSize int64
	// Concurrency is the number of parts uploaded at once; zero means
	// DefaultUploadConcurrency.
	Concurrency int
	// HTTPClient overrides the SDK's HTTP client (custom CA, proxy).
	HTTPClient *http.Client
}

const (
	// DefaultPartSize: 16 MiB parts make a 700 MB artifact ~45 parts —
	// few enough requests that per-request latency does not dominate,
	// small enough that a failed part is cheap to retry — and cap a
	// single upload at 160 GB under S3's 10,000-part limit.
	DefaultPartSize = 16 << 20
	// DefaultUploadConcurrency: 4 parts in flight saturate a typical
	// worker uplink while holding at most 4 × PartSize of buffers.
	DefaultUploadConcurrency = 4
)

// shaMetaKey is the user metadata key holding the sha256 (sent as the
// x-amz-meta-sha256 header).
const shaMetaKey = "sha256"

// S3 is a Store in an S3 bucket.
//
// Put checks the key with HeadObject before uploading so a re-put of the
// same artifact costs one request, and uploads with If-None-Match: * so
// that two concurrent puts cannot both create the key on servers that
// support conditional writes (AWS S3, MinIO); on the others the HeadObject
// check still catches every non-concurrent conflict.
type S3 struct {
	client   *s3.Client
	bucket   string
	prefix   string
	uploader *manager.Uploader //lint:ignore SA1019 see NewS3
}

var _ Store = (*S3)(nil)

// NewS3 returns a store in cfg.Bucket. It does not contact the server;
// call Check to fail early on a wrong bucket, endpoint or credentials.
//
// Uploads use feature/s3/manager. The SDK marks it deprecated in favour of
// feature/s3/transfermanager, which is still v0 (its API may change in any
// release); manager is maintained, battle-tested, and does what we need:
// parallel multipart upload from a seekable file with bounded buffers.
func NewS3(ctx context.Context, cfg S3Config) (*S3, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("store: S3 bucket is empty; set the bucket of the artifact store")
	}
	opts := []func(*config.LoadOptions) error{
		// Flexible checksums (CRC32 trailers) are on by default in recent
		// SDKs and rejected by several S3-compatible servers. Integrity is
		// covered end to end by our own sha256, checked at deploy.
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
	}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.AccessKeyID != "" || cfg.SecretAccessKey != "" {
		if cfg.AccessKeyID == "" || cfg.SecretAccessKey == "" {
			return nil, errors.New("store: set both the S3 access key id and secret key, or neither to use the default AWS credential chain")
		}
		opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, cfg.SessionToken)))
	}
	if cfg.HTTPClient != nil {
		opts = append(opts, config.WithHTTPClient(cfg.HTTPClient))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("store: load AWS configuration: %w", err)
	}
	if awsCfg.Region == "" {
		if cfg.Endpoint == "" {
			return nil, errors.New("store: no AWS region configured; set the store region or AWS_REGION")
		}
		awsCfg.Region = "us-east-1"
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.PathStyle
	})
	partSize := cfg.PartSize
	if partSize == 0 {
		partSize = DefaultPartSize
	}
	if partSize < manager.MinUploadPartSize {
		return nil, fmt.Errorf("store: S3 part size %d is below the S3 minimum of %d bytes", partSize, manager.MinUploadPartSize)
	}
	conc := cfg.Concurrency
	if conc <= 0 {
		conc = DefaultUploadConcurrency
	}
	//lint:ignore SA1019 see the doc comment of NewS3
	up := manager.NewUploader(client, func(u *manager.Uploader) {
		u.PartSize = partSize
		u.Concurrency = conc
		u.LeavePartsOnError = false // abort failed multipart uploads: orphan parts are billed
	})
	return &S3{client: client, bucket: cfg.Bucket, prefix: strings.Trim(cfg.Prefix, "/"), uploader: up}, nil
}

// Check verifies that the bucket is reachable with the configured
// credentials.
func (s *S3) Check(ctx context.Context) error {
	if _, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.bucket}); err != nil {
		return fmt.Errorf("store: cannot access bucket %q: %w; check the bucket name, region/endpoint and that the credentials allow s3:ListBucket", s.bucket, err)
	}
	return nil
}

func (s *S3) objKey(key string) string {
	if s.prefix == "" {
		return key
	}
	return s.prefix + "/" + key
}

// URI implements Store.
func (s *S3) URI(key string) string { return "s3://" + s.bucket + "/" + s.objKey(key) }

// Put implements Store.
func (s *S3) Put(ctx context.Context, key, localPath, sum string, opt PutOptions) (string, bool, error) {
	if err := ValidKey(key); err != nil {
		return "", false, err
	}
	sum, err := validSHA256(sum)
	if err != nil {
		return "", false, err
	}
	uri := s.URI(key)
	if !opt.Overwrite {
		existed, err := s.checkExisting(ctx, key, uri, sum)
		if err != nil || existed {
			return uri, existed, err
		}
	}
	// Hash before uploading: the declared sha256 is what deploys will
	// verify, so a file that no longer matches it must not be stored.
	// The file was just written, so this reads from the page cache.
	got, _, err := hashFile(localPath)
	if err != nil {
		return "", false, fmt.Errorf("store: read artifact to upload: %w", err)
	}
	if got != sum {
		return "", false, fmt.Errorf("store: %s has sha256 %s but the caller declared %s; the file changed after it was written, rebuild it", localPath, got, sum)
	}
	f, err := os.Open(localPath)
	if err != nil {
		return "", false, fmt.Errorf("store: open artifact to upload: %w", err)
	}
	defer f.Close()
	in := &s3.PutObjectInput{
		Bucket:      &s.bucket,
		Key:         aws.String(s.objKey(key)),
		Body:        f,
		Metadata:    map[string]string{shaMetaKey: sum},
		ContentType: aws.String(contentType(opt)),
	}
	if !opt.Overwrite {
		in.IfNoneMatch = aws.String("*")
	}
	//lint:ignore SA1019 see the doc comment of NewS3
	_, err = s.uploader.Upload(ctx, in)
	if err != nil {
		if isPreconditionFailed(err) {
			// Someone else created the key between our check and upload.
			existed, cerr := s.checkExisting(ctx, key, uri, sum)
			if cerr != nil || existed {
				return uri, existed, cerr
			}
		}
		return "", false, s.opError("upload", uri, err)
	}
	if err := s.putSmall(ctx, key+SHA256Suffix, sidecarContent(key, sum), "text/plain; charset=utf-8", true); err != nil {
		return "", false, err
	}
	return uri, false, nil
}

// checkExisting reports whether key already holds sum (existed=true), and
// fails with ErrConflict if it holds something else.
func (s *S3) checkExisting(ctx context.Context, key, uri, sum string) (bool, error) {
	info, err := s.Stat(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if info.SHA256 == "" {
		return false, fmt.Errorf("store: %s exists but has no sha256 metadata, so it was not stored by mageflow; delete it or use another key", uri)
	}
	if info.SHA256 != sum {
		return false, conflict(uri, info.SHA256, sum)
	}
	return true, nil
}

// PutBytes implements Store.
func (s *S3) PutBytes(ctx context.Context, key string, data []byte, opt PutOptions) (string, error) {
	if err := ValidKey(key); err != nil {
		return "", err
	}
	uri := s.URI(key)
	sum := shaBytes(data)
	if !opt.Overwrite {
		if existed, err := s.checkExisting(ctx, key, uri, sum); err != nil || existed {
			return uri, err
		}
	}
	err := s.putSmall(ctx, key, data, contentType(opt), opt.Overwrite)
	if err != nil && errors.Is(err, errPrecondition) {
		// Created concurrently: fine if with the same content.
		if existed, cerr := s.checkExisting(ctx, key, uri, sum); cerr != nil || existed {
			return uri, cerr
		}
	}
	if err != nil {
		return "", err
	}
	return uri, nil
}

var errPrecondition = errors.New("precondition failed")

func (s *S3) putSmall(ctx context.Context, key string, data []byte, ctype string, overwrite bool) error {
	in := &s3.PutObjectInput{
		Bucket:        &s.bucket,
		Key:           aws.String(s.objKey(key)),
		Body:          bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))),
		Metadata:      map[string]string{shaMetaKey: shaBytes(data)},
		ContentType:   aws.String(ctype),
	}
	if !overwrite {
		in.IfNoneMatch = aws.String("*")
	}
	if _, err := s.client.PutObject(ctx, in); err != nil {
		if isPreconditionFailed(err) {
			return fmt.Errorf("store: %s: %w", s.URI(key), errPrecondition)
		}
		return s.opError("put", s.URI(key), err)
	}
	return nil
}

func contentType(opt PutOptions) string {
	if opt.ContentType != "" {
		return opt.ContentType
	}
	return "application/octet-stream"
}

// Get implements Store.
func (s *S3) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := ValidKey(key); err != nil {
		return nil, err
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: aws.String(s.objKey(key))})
	if err != nil {
		if isNotFound(err) {
			return nil, fmt.Errorf("store: %s: %w", s.URI(key), ErrNotFound)
		}
		return nil, s.opError("get", s.URI(key), err)
	}
	return out.Body, nil
}

// GetRange implements Store with a Range GET.
func (s *S3) GetRange(ctx context.Context, key string, off, n int64) ([]byte, error) {
	if err := ValidKey(key); err != nil {
		return nil, err
	}
	if err := checkRange(s.URI(key), off, n); err != nil {
		return nil, err
	}
	if n == 0 {
		return []byte{}, nil
	}
	rng := fmt.Sprintf("bytes=%d-%d", off, off+n-1)
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: aws.String(s.objKey(key)), Range: &rng})
	if err != nil {
		if isNotFound(err) {
			return nil, fmt.Errorf("store: %s: %w", s.URI(key), ErrNotFound)
		}
		return nil, s.opError("get range", s.URI(key), err)
	}
	defer out.Body.Close()
	b := make([]byte, n)
	if _, err := io.ReadFull(out.Body, b); err != nil {
		return nil, fmt.Errorf("store: read %d bytes at %d of %s: %w", n, off, s.URI(key), err)
	}
	return b, nil
}

// Stat implements Store.
func (s *S3) Stat(ctx context.Context, key string) (Info, error) {
	if err := ValidKey(key); err != nil {
		return Info{}, err
	}
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: aws.String(s.objKey(key))})
	if err != nil {
		if isNotFound(err) {
			return Info{}, fmt.Errorf("store: %s: %w", s.URI(key), ErrNotFound)
		}
		return Info{}, s.opError("stat", s.URI(key), err)
	}
	info := Info{Key: key, Size: aws.ToInt64(out.ContentLength), ModTime: aws.ToTime(out.LastModified)}
	// The SDK lower-cases metadata keys; S3-compatible servers differ in
	// what they return, so match case-insensitively.
	for k, v := range out.Metadata {
		if strings.EqualFold(k, shaMetaKey) {
			if sum, err := validSHA256(v); err == nil {
				info.SHA256 = sum
			}
		}
	}
	return info, nil
}

// List implements Store.
func (s *S3) List(ctx context.Context, prefix string) ([]Info, error) {
	full := s.objKey(prefix)
	if prefix == "" && s.prefix != "" {
		full = s.prefix + "/"
	}
	var out []Info
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: aws.String(full)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, s.opError("list", "s3://"+s.bucket+"/"+full, err)
		}
		for _, o := range page.Contents {
			k := aws.ToString(o.Key)
			if s.prefix != "" {
				k = strings.TrimPrefix(k, s.prefix+"/")
			}
			out = append(out, Info{Key: k, Size: aws.ToInt64(o.Size), ModTime: aws.ToTime(o.LastModified)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

func (s *S3) opError(op, uri string, err error) error {
	hint := "check the endpoint, region and network"
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		switch re.HTTPStatusCode() {
		case http.StatusForbidden, http.StatusUnauthorized:
			hint = "check the worker's S3 credentials and that its policy allows s3:GetObject, s3:PutObject and s3:ListBucket on the bucket"
		case http.StatusNotFound:
			hint = "check that bucket " + s.bucket + " exists"
		}
	}
	return fmt.Errorf("store: s3 %s %s: %w; %s", op, uri, err, hint)
}

func isNotFound(err error) bool {
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	if errors.As(err, &nsk) || errors.As(err, &nf) {
		return true
	}
	var api smithy.APIError
	if errors.As(err, &api) && (api.ErrorCode() == "NoSuchKey" || api.ErrorCode() == "NotFound") {
		return true
	}
	return false
}

func isPreconditionFailed(err error) bool {
	var api smithy.APIError
	if errors.As(err, &api) && (api.ErrorCode() == "PreconditionFailed" || api.ErrorCode() == "ConditionalRequestConflict") {
		return true
	}
	var re *awshttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusPreconditionFailed
}
