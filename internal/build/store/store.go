// Package store keeps release artifacts and their sidecar files (meta JSON,
// .sha256, build log) under keys such as "shop/1234-3f9a2c1.tar.zst", on a
// local directory or in an S3-compatible bucket.
//
// Artifacts are immutable: once a key holds an object, putting different
// content under it fails with ErrConflict instead of silently replacing a
// release that may already be deployed. Putting the same content again is a
// successful no-op, which is what makes a retried Temporal activity (or a
// rebuild of the same commit, whose artifact is byte-identical) safe.
// Only keys the caller explicitly marks with PutOptions.Overwrite, such as
// "latest" pointers, can change.
package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"
)

// Store is where artifacts and their sidecars live. Keys are
// slash-separated relative paths; see ValidKey.
type Store interface {
	// Put stores the file at localPath under key and records sha256 (hex)
	// next to it, in "<key>.sha256" and, on S3, as object metadata.
	// sha256 must be the digest of the file; Put checks it while reading
	// and fails on a mismatch. If key already holds an object with the
	// same sha256, Put does nothing and returns existed=true. If it holds
	// a different one, Put fails with ErrConflict unless opt.Overwrite.
	Put(ctx context.Context, key, localPath, sha256 string, opt PutOptions) (uri string, existed bool, err error)
	// PutBytes stores data under key with the same immutability rules
	// as Put (same content: no-op; different content: ErrConflict unless
	// opt.Overwrite). It writes no .sha256 sidecar: it is meant for the
	// small sidecars themselves (meta JSON, build log).
	PutBytes(ctx context.Context, key string, data []byte, opt PutOptions) (uri string, err error)
	// Get opens the object at key. The error wraps ErrNotFound if there
	// is none.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// GetRange reads exactly n bytes at offset off of the object at key
	// (a delta prepare fetches only the frames it needs; on S3 a Range
	// GET). Reading past the end is an error; so is a missing object
	// (wrapping ErrNotFound).
	GetRange(ctx context.Context, key string, off, n int64) ([]byte, error)
	// Stat describes the object at key; the error wraps ErrNotFound if
	// there is none.
	Stat(ctx context.Context, key string) (Info, error)
	// List returns the objects whose key starts with prefix (a plain
	// string prefix, not necessarily a directory), sidecars included,
	// sorted by key. Info.SHA256 is left empty: listing does not read
	// metadata; use Stat for one key.
	List(ctx context.Context, prefix string) ([]Info, error)
	// URI returns the location of key as recorded in release meta:
	// file:///abs/path or s3://bucket/prefix/key.
	URI(key string) string
}

// PutOptions modify Put and PutBytes.
type PutOptions struct {
	// Overwrite allows replacing an object with different content. Use it
	// only for mutable pointers, never for artifacts.
	Overwrite bool
	// ContentType is recorded on S3 objects; empty means
	// application/octet-stream. The local store ignores it.
	ContentType string
}

// Info describes a stored object.
type Info struct {
	Key     string
	Size    int64
	SHA256  string // lowercase hex; empty when not known (see Store.List)
	ModTime time.Time
}

var (
	// ErrNotFound is wrapped by Get and Stat when the key holds nothing.
	ErrNotFound = errors.New("not found in the artifact store")
	// ErrConflict is wrapped by Put and PutBytes when the key already
	// holds different content and overwriting was not requested.
	ErrConflict = errors.New("key already holds different content (artifacts are immutable)")
)

// SHA256Suffix is appended to a key to name its checksum sidecar. The
// sidecar has the `sha256sum` format ("<hex>  <file name>\n"), so an
// operator can check a downloaded artifact with `sha256sum -c`.
const SHA256Suffix = ".sha256"

// ValidKey reports whether key can be used in a store: a relative,
// slash-separated path of at most 1024 bytes of UTF-8, without empty, "."
// or ".." segments, without backslashes or control characters, and
// without segments starting with "." — those names are reserved for the
// local store's temporary files, and the rule keeps both stores
// addressing the same set of keys.
func ValidKey(key string) error {
	if key == "" || len(key) > 1024 || !utf8.ValidString(key) {
		return fmt.Errorf("store: invalid key %q: must be 1 to 1024 bytes of UTF-8", key)
	}
	for _, r := range key {
		if r < 0x20 || r == 0x7f || r == '\\' {
			return fmt.Errorf("store: invalid key %q: control characters and backslashes are not allowed", key)
		}
	}
	for seg := range strings.SplitSeq(key, "/") {
		if seg == "" || strings.HasPrefix(seg, ".") {
			return fmt.Errorf("store: invalid key %q: segments must be non-empty and must not start with '.'", key)
		}
	}
	return nil
}

func validSHA256(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if b, err := hex.DecodeString(s); err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("store: %q is not a hex sha256 digest (64 hex characters)", s)
	}
	return s, nil
}

// sidecarContent renders the .sha256 sidecar of key.
func sidecarContent(key, sum string) []byte {
	return []byte(sum + "  " + path.Base(key) + "\n")
}

// parseSidecar extracts the digest from a .sha256 sidecar.
func parseSidecar(b []byte) string {
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return ""
	}
	if s, err := validSHA256(f[0]); err == nil {
		return s
	}
	return ""
}

// hashFile returns the sha256 of the file at p.
func hashFile(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

func shaBytes(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func conflict(uri, have, want string) error {
	return fmt.Errorf("store: %s: %w: it has sha256 %s, the new content %s; a release id must never be reused for a different artifact — build under a new release id, or delete the stored object if it is known to be bad", uri, ErrConflict, have, want)
}

// Open opens the store rooted at uri: "file:///abs/dir", a plain absolute
// path, or "s3://bucket/optional/prefix". For S3, the bucket and prefix
// come from uri and everything else (region, endpoint, credentials, part
// size) from base.
func Open(ctx context.Context, uri string, base S3Config) (Store, error) {
	if filepath.IsAbs(uri) {
		return NewLocal(uri)
	}
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("store: parse store URI %q: %w", uri, err)
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("store: file URI %q names host %q; use file:///absolute/path", uri, u.Host)
		}
		return NewLocal(u.Path)
	case "s3":
		if u.Host == "" {
			return nil, fmt.Errorf("store: S3 URI %q has no bucket; use s3://bucket/prefix", uri)
		}
		base.Bucket = u.Host
		base.Prefix = strings.Trim(u.Path, "/")
		return NewS3(ctx, base)
	default:
		return nil, fmt.Errorf("store: unsupported store URI %q; use file:///abs/dir or s3://bucket/prefix", uri)
	}
}

// maxRange bounds one GetRange: frames are 4 MiB, an index a few MiB.
const maxRange = 256 << 20

func checkRange(uri string, off, n int64) error {
	if off < 0 || n < 0 || n > maxRange {
		return fmt.Errorf("store: %s: range of %d bytes at %d is not valid (at most %d bytes)", uri, n, off, maxRange)
	}
	return nil
}
