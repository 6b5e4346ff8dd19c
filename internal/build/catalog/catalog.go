// Package catalog is the durable list of releases: each release's meta is a
// JSON object stored beside its artifact ("<app>/<id>.json"). Listing reads
// the store, not Temporal, so releases outlive workflow retention and any
// tool that can read the bucket can read them.
package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/mageflow/mageflow/internal/build/release"
	"github.com/mageflow/mageflow/internal/build/store"
)

// ArtifactKey is where a release's artifact is stored.
func ArtifactKey(app, id string) string { return app + "/" + id + ".tar.zst" }

// MetaKey is where a release's meta is stored.
func MetaKey(app, id string) string { return app + "/" + id + ".json" }

// LogKey is where a release's build log is stored.
func LogKey(app, id string) string { return app + "/" + id + ".log" }

// Put stores a release's meta (rewriting the same meta is harmless).
func Put(ctx context.Context, s store.Store, m *release.Meta) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	_, err = s.PutBytes(ctx, MetaKey(m.App, m.ID), append(b, '\n'), store.PutOptions{Overwrite: true})
	return err
}

// Get reads one release's meta; errors.Is(err, store.ErrNotFound) when the
// release does not exist.
func Get(ctx context.Context, s store.Store, app, id string) (*release.Meta, error) {
	rc, err := s.Get(ctx, MetaKey(app, id))
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 1<<20))
	if err != nil {
		return nil, err
	}
	var m release.Meta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("release meta %s is not valid JSON: %w", MetaKey(app, id), err)
	}
	return &m, nil
}

// List returns an app's releases, newest (highest build number) first.
func List(ctx context.Context, s store.Store, app string) ([]release.Meta, error) {
	infos, err := s.List(ctx, app+"/")
	if err != nil {
		return nil, err
	}
	out := []release.Meta{}
	for _, in := range infos {
		name := strings.TrimPrefix(in.Key, app+"/")
		id, ok := strings.CutSuffix(name, ".json")
		if !ok || !release.ValidID(id) {
			continue
		}
		m, err := Get(ctx, s, app, id)
		if err != nil {
			return nil, err
		}
		out = append(out, *m)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].BuildNumber != out[j].BuildNumber {
			return out[i].BuildNumber > out[j].BuildNumber
		}
		return out[i].BuiltAt.After(out[j].BuiltAt)
	})
	return out, nil
}
