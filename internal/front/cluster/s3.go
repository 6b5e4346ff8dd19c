package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"gopkg.in/yaml.v3"

	"github.com/mageflow/mageflow/internal/platform/config"
)

// The S3 server is SeaweedFS's `weed server` with a filer and its S3
// gateway: a master, a volume server, a filer (metadata in leveldb under
// the data directory) and the gateway, in one process. It is a demo store
// for `mageflow cluster` and the S3 store's tests; production uses AWS S3
// or another S3 server.

// S3Ports are the weed server's loopback ports: the S3 API and the
// master, volume server and filer it runs, each with its gRPC port.
type S3Ports struct {
	S3, Master, Volume, Filer                 int
	S3GRPC, MasterGRPC, VolumeGRPC, FilerGRPC int
}

// DefaultS3Ports derives every port from the S3 API's: master, volume and
// filer follow it (+1, +2, +3), the gRPC ports are 100 higher.
func DefaultS3Ports(s3Port int) S3Ports {
	return S3Ports{S3: s3Port, Master: s3Port + 1, Volume: s3Port + 2, Filer: s3Port + 3,
		S3GRPC: s3Port + 100, MasterGRPC: s3Port + 101, VolumeGRPC: s3Port + 102, FilerGRPC: s3Port + 103}
}

func (p S3Ports) all() []int {
	return []int{p.S3, p.Master, p.Volume, p.Filer, p.S3GRPC, p.MasterGRPC, p.VolumeGRPC, p.FilerGRPC}
}

// S3Options configure StartS3.
type S3Options struct {
	Weed    string // the weed binary
	Dir     string // data, the identities file and the credentials
	LogDir  string // weed.log
	IP      string
	Ports   S3Ports
	Buckets []string // created (idempotently) once the server answers
}

// S3Server is a running weed S3 server.
type S3Server struct {
	opts S3Options
	// Endpoint is the S3 API's URL (path-style addressing).
	Endpoint string
	// AccessKeyID and SecretAccessKey are the one identity it accepts.
	AccessKeyID, SecretAccessKey string
	// CredentialsFile holds them as an AWS shared credentials file (0600)
	// under the profile S3Profile; ConfigFile is its AWS config file.
	CredentialsFile, ConfigFile string
}

// S3Profile is the AWS profile of the credentials file.
const S3Profile = "mageflow-cluster"

// S3Region is the region clients sign for (weed accepts any).
const S3Region = "us-east-1"

const s3Identity = "mageflow"

// NewS3Server prepares dir: it creates the credentials once (a second run
// reuses them, like the data) and rewrites the identities file weed reads.
func NewS3Server(o S3Options) (*S3Server, error) {
	if err := os.MkdirAll(filepath.Join(o.Dir, "data"), 0o700); err != nil {
		return nil, err
	}
	s := &S3Server{opts: o, Endpoint: "http://" + net.JoinHostPort(o.IP, strconv.Itoa(o.Ports.S3)),
		CredentialsFile: filepath.Join(o.Dir, "credentials"), ConfigFile: filepath.Join(o.Dir, "aws-config")}
	if err := s.loadOrCreateKeys(); err != nil {
		return nil, err
	}
	ids, err := renderS3Identities(s.AccessKeyID, s.SecretAccessKey)
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(o.Dir, "identities.json"), ids, 0o600); err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf("[profile %s]\nregion = %s\n", S3Profile, S3Region)
	return s, writeFileAtomic(s.ConfigFile, []byte(cfg), 0o600)
}

// loadOrCreateKeys reads the credentials file, creating it when absent.
func (s *S3Server) loadOrCreateKeys() error {
	b, err := readFileNoFollow(s.CredentialsFile)
	if err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			k, v, _ := strings.Cut(line, "=")
			switch strings.TrimSpace(k) {
			case "aws_access_key_id":
				s.AccessKeyID = strings.TrimSpace(v)
			case "aws_secret_access_key":
				s.SecretAccessKey = strings.TrimSpace(v)
			}
		}
		if s.AccessKeyID != "" && s.SecretAccessKey != "" {
			return nil
		}
		return fmt.Errorf("%s has no aws_access_key_id or aws_secret_access_key: delete it to have new ones made", s.CredentialsFile)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	s.AccessKeyID, s.SecretAccessKey = "MF"+randomHex(9), randomHex(20)
	creds := fmt.Sprintf("[%s]\naws_access_key_id = %s\naws_secret_access_key = %s\n", S3Profile, s.AccessKeyID, s.SecretAccessKey)
	return writeFileAtomic(s.CredentialsFile, []byte(creds), 0o600)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return strings.ToUpper(hex.EncodeToString(b))
}

// renderS3Identities is weed's -s3.config: one identity allowed everything.
func renderS3Identities(id, secret string) ([]byte, error) {
	type cred struct {
		AccessKey string `json:"accessKey"`
		SecretKey string `json:"secretKey"`
	}
	type identity struct {
		Name        string   `json:"name"`
		Credentials []cred   `json:"credentials"`
		Actions     []string `json:"actions"`
	}
	return json.MarshalIndent(map[string][]identity{"identities": {{
		Name: s3Identity, Credentials: []cred{{id, secret}},
		Actions: []string{"Admin", "Read", "List", "Tagging", "Write"},
	}}}, "", "  ")
}

// Args are weed's arguments: logs to stderr (weed.log) instead of files
// in /tmp, every port and path explicit, loopback only, no telemetry, the
// side servers (Iceberg, Lance) off, no 10 s pause before stopping, a
// short raft election (the master is alone). No
// secret: the identities are in a file.
func (s *S3Server) Args() []string {
	o, p := s.opts, s.opts.Ports
	n := strconv.Itoa
	return []string{"-logtostderr", "server", "-ip=" + o.IP, "-ip.bind=" + o.IP, "-dir=" + filepath.Join(o.Dir, "data"),
		"-master.port=" + n(p.Master), "-master.port.grpc=" + n(p.MasterGRPC), "-master.telemetry=false",
		"-master.electionTimeout=1s", // one master: leader again 1.5 s after a restart, not 17
		"-master.volumeSizeLimitMB=1024", "-volume.max=100",
		"-volume.port=" + n(p.Volume), "-volume.port.grpc=" + n(p.VolumeGRPC), "-volume.preStopSeconds=0",
		"-filer", "-filer.port=" + n(p.Filer), "-filer.port.grpc=" + n(p.FilerGRPC),
		"-filer.localSocket=" + filepath.Join(o.Dir, "filer.sock"),
		"-s3", "-s3.localSocket=" + filepath.Join(o.Dir, "s3.sock"), "-s3.port=" + n(p.S3), "-s3.port.grpc=" + n(p.S3GRPC), "-s3.port.iceberg=0", "-s3.port.lance=0",
		"-s3.config=" + filepath.Join(o.Dir, "identities.json")}
}

// Sockets are the Unix sockets weed serves its gRPC services on besides
// the TCP ports: /tmp/seaweedfs-<service>-grpc-<port>.sock, a path this
// version does not let us choose; RemoveSockets deletes them once weed
// has stopped.
func (s *S3Server) Sockets() []string {
	p := s.opts.Ports
	var out []string
	for _, sv := range []struct {
		name string
		port int
	}{{"master", p.MasterGRPC}, {"volume", p.VolumeGRPC}, {"filer", p.FilerGRPC}, {"s3", p.S3GRPC}} {
		out = append(out, fmt.Sprintf("/tmp/seaweedfs-%s-grpc-%d.sock", sv.name, sv.port))
	}
	return out
}

// RemoveSockets deletes the sockets of Sockets that are sockets.
func (s *S3Server) RemoveSockets() {
	for _, p := range s.Sockets() {
		if st, err := os.Lstat(p); err == nil && st.Mode()&os.ModeSocket != 0 {
			_ = os.Remove(p)
		}
	}
}

// Command is the weed process, run in the data directory.
func (s *S3Server) Command() *exec.Cmd {
	cmd := exec.Command(s.opts.Weed, s.Args()...)
	cmd.Dir = s.opts.Dir
	cmd.Env = S3Env(os.Environ(), "", "")
	return cmd
}

// s3ProcName is the weed process's name (its log: weed.log).
const s3ProcName = "weed"

// Start starts weed logging to LogDir/weed.log.
func (s *S3Server) Start() (*Proc, error) { return StartProc(s3ProcName, s.opts.LogDir, s.Command()) }

// WaitReady waits until the S3 API accepts the credentials, every bucket
// exists (created if missing) and the first bucket takes an object (written
// and deleted: weed's first write waits seconds for its first volumes), or
// exited reports the process gone.
func (s *S3Server) WaitReady(ctx context.Context, timeout time.Duration, exited func() error) error {
	cl := s.Client()
	deadline := time.Now().Add(timeout)
	steps := make([]func() error, 0, len(s.opts.Buckets)+1)
	for _, b := range s.opts.Buckets {
		steps = append(steps, func() error { return createBucket(ctx, cl, b) })
	}
	if len(s.opts.Buckets) > 0 {
		steps = append(steps, func() error { return probeWrite(ctx, cl, s.opts.Buckets[0]) })
	}
	for _, step := range steps {
		for {
			err := step()
			if err == nil {
				break
			}
			if e := exited(); e != nil {
				return e
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("the S3 server on %s is not ready for bucket %v within %s (%v): see weed.log in %s", s.Endpoint, s.opts.Buckets, timeout, err, s.opts.LogDir)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(300 * time.Millisecond):
			}
		}
	}
	return nil
}

// Client is an S3 client for the server with its credentials.
func (s *S3Server) Client() *s3.Client {
	return s3.New(s3.Options{
		Region: S3Region, BaseEndpoint: aws.String(s.Endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(s.AccessKeyID, s.SecretAccessKey, ""),
	})
}

// createBucket creates bucket; one that exists already is fine.
func createBucket(ctx context.Context, cl *s3.Client, bucket string) error {
	_, err := cl.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)})
	var owned *types.BucketAlreadyOwnedByYou
	var exists *types.BucketAlreadyExists
	var api smithy.APIError
	if err == nil || errors.As(err, &owned) || errors.As(err, &exists) ||
		(errors.As(err, &api) && strings.HasPrefix(api.ErrorCode(), "BucketAlready")) {
		return nil
	}
	return err
}

// probeKey is the object WaitReady writes and deletes.
const probeKey = "mageflow-cluster-ready-probe"

func probeWrite(ctx context.Context, cl *s3.Client, bucket string) error {
	if _, err := cl.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(probeKey), Body: strings.NewReader("ok")}); err != nil {
		return err
	}
	_, err := cl.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(probeKey)})
	return err
}

// awsCredentialVars are the environment variables that would win over
// (or redirect) the credentials file in the AWS default chain.
var awsCredentialVars = []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
	"AWS_ACCESS_KEY", "AWS_SECRET_KEY", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
	"AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"}

// S3Env returns environ without AWS credential variables and, when
// credsFile is set, pointing the AWS default chain at credsFile and
// configFile under S3Profile: file paths only, never a key.
func S3Env(environ []string, credsFile, configFile string) []string {
	out := make([]string, 0, len(environ)+3)
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		drop := false
		for _, v := range awsCredentialVars {
			drop = drop || k == v
		}
		if !drop {
			out = append(out, kv)
		}
	}
	if credsFile != "" {
		out = append(out, "AWS_SHARED_CREDENTIALS_FILE="+credsFile, "AWS_CONFIG_FILE="+configFile, "AWS_PROFILE="+S3Profile)
	}
	return out
}

// Env is S3Env for this server's files.
func (s *S3Server) Env(environ []string) []string {
	return S3Env(environ, s.CredentialsFile, s.ConfigFile)
}

// SetProcessEnv makes this process's environment Env's: the AWS default
// chain here and in every child started afterwards finds the server's
// credentials file.
func (s *S3Server) SetProcessEnv() error {
	for _, k := range awsCredentialVars {
		if err := os.Unsetenv(k); err != nil {
			return err
		}
	}
	for _, kv := range s.Env(nil) {
		k, v, _ := strings.Cut(kv, "=")
		if err := os.Setenv(k, v); err != nil {
			return err
		}
	}
	return nil
}

// startS3 prepares <dir>/s3 and starts weed when Options.S3Port is set;
// waitS3 waits for it once the rest is up.
func (c *Cluster) startS3() error {
	o := c.opts
	if o.S3Port == 0 {
		return nil
	}
	srv, err := NewS3Server(S3Options{Weed: filepath.Join(o.Bin, "weed"), Dir: filepath.Join(o.Dir, "s3"),
		LogDir: c.logDir(), IP: o.IP, Ports: DefaultS3Ports(o.S3Port), Buckets: []string{o.S3Bucket}})
	if err != nil {
		return err
	}
	c.S3 = srv
	_, err = c.startS3Proc(nil)
	return err
}

// startS3Proc starts weed (in old's place when it replaces one).
func (c *Cluster) startS3Proc(old *Proc) (*Proc, error) {
	p, err := c.S3.Start()
	if err != nil {
		return nil, err
	}
	if err := c.adopt(p, old); err != nil {
		return nil, errors.Join(err, p.Stop(stopGrace))
	}
	return p, c.writePid(p)
}

func (c *Cluster) waitS3(ctx context.Context) error {
	if c.S3 == nil {
		return nil
	}
	start := time.Now()
	exited := func() error {
		if c.Proc(s3ProcName) == nil {
			return fmt.Errorf("weed exited during start-up: see %s", filepath.Join(c.logDir(), "weed.log"))
		}
		return nil
	}
	if err := c.S3.WaitReady(ctx, 2*time.Minute, exited); err != nil {
		return err
	}
	c.say("cluster: S3 server (SeaweedFS) on %s, bucket %q (data %s, credentials %s) (%s)", c.S3.Endpoint, c.opts.S3Bucket,
		filepath.Join(c.opts.Dir, "s3", "data"), c.S3.CredentialsFile, time.Since(start).Round(time.Millisecond))
	return nil
}

// WriteS3Config points cfg's artifacts at the S3 server's bucket and
// writes cfg to <dir>/config/mageflow.yaml for the processes the cluster
// starts (every path in it is absolute already), returning that path. The
// file holds no secret (secret references stay references; the S3 keys are
// in the credentials file Env names) but is private all the same.
func (c *Cluster) WriteS3Config(cfg *config.Config) (string, error) {
	if c.S3 == nil {
		return "", errors.New("cluster: no S3 server (Options.S3Port is 0)")
	}
	cfg.Artifacts = config.Artifacts{S3: &config.S3{Bucket: c.opts.S3Bucket, Region: S3Region, Endpoint: c.S3.Endpoint, PathStyle: true}}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return "", err
	}
	b = append([]byte("# Written by mageflow cluster from "+cfg.File+", artifacts on its S3 server; rewritten on every start.\n"), b...)
	p := filepath.Join(c.opts.Dir, "config", "mageflow.yaml")
	if _, err := config.Parse(p, b); err != nil {
		return "", fmt.Errorf("cluster: the config written for the S3 store does not load: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", err
	}
	return p, writeFileAtomic(p, b, 0o600)
}
