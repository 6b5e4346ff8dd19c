// Command m1manifest builds the pristine-release manifests that
// internal/m1/m1core ships (data/manifests.gz): for each release, the
// SHA-256 of every core file and, for code files, the hashes of its lines.
// Only hashes are written, never third-party content.
//
// Releases come from source trees on disk or straight from a git
// repository (tags of a Magento mirror or OpenMage LTS), one or more per
// run; an existing index is extended, so releases can be added over time:
//
//	go run ./test/m1manifest -dir 1.9.4.5=/tmp/magento-1.9.4.5
//	go run ./test/m1manifest -git /path/to/magento-lts -tag v20.10.2 -tag v19.4.23
//
// A tag is recorded under its name without a leading "v" unless given as
// TAG=NAME. The index is written to a temporary file and renamed.
//
// -check ROOT runs the core-integrity check of a store tree against the
// index instead, printing the summary and the result as JSON:
//
//	go run ./test/m1manifest -check /var/www/store
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mageflow/mageflow/internal/m1/m1core"
)

// multiFlag collects a repeated flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

const defaultIndex = "internal/m1/m1core/data/manifests.gz"

func main() {
	var dirs, tags multiFlag
	index := flag.String("index", defaultIndex, "index to extend and rewrite")
	fresh := flag.Bool("fresh", false, "start from an empty index instead of extending -index")
	repo := flag.String("git", "", "git repository to read -tag releases from")
	flag.Var(&dirs, "dir", "NAME=PATH of a release source tree (repeatable)")
	flag.Var(&tags, "tag", "TAG or TAG=NAME in -git (repeatable)")
	check := flag.String("check", "", "check the store tree at this root against -index and exit")
	flag.Parse()
	if *check != "" {
		if err := runCheck(*index, *check); err != nil {
			fmt.Fprintln(os.Stderr, "m1manifest:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*index, *fresh, *repo, dirs, tags); err != nil {
		fmt.Fprintln(os.Stderr, "m1manifest:", err)
		os.Exit(1)
	}
}

func run(index string, fresh bool, repo string, dirs, tags []string) error {
	if len(tags) > 0 && repo == "" {
		return errors.New("-tag needs -git")
	}
	b, err := openBuilder(index, fresh)
	if err != nil {
		return err
	}
	for _, d := range dirs {
		name, dir, ok := strings.Cut(d, "=")
		if !ok || name == "" || dir == "" {
			return fmt.Errorf("-dir %q: want NAME=PATH", d)
		}
		if err := addRelease(b, name, func() ([]m1core.File, error) { return readDir(dir) }); err != nil {
			return err
		}
	}
	for _, t := range tags {
		tag, name, ok := strings.Cut(t, "=")
		if !ok {
			name = strings.TrimPrefix(tag, "v")
		}
		if err := addRelease(b, name, func() ([]m1core.File, error) { return readGit(repo, tag) }); err != nil {
			return err
		}
	}
	return writeIndex(b, index)
}

func addRelease(b *m1core.Builder, name string, read func() ([]m1core.File, error)) error {
	start := time.Now()
	files, err := read()
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := b.AddVersion(name, files); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "%s: %d core files in %s\n", name, len(files), time.Since(start).Round(time.Millisecond))
	return nil
}

func openBuilder(index string, fresh bool) (*m1core.Builder, error) {
	if fresh {
		return m1core.NewBuilder(nil), nil
	}
	f, err := os.Open(index)
	if errors.Is(err, fs.ErrNotExist) {
		return m1core.NewBuilder(nil), nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ix, err := m1core.Decode(f)
	if err != nil {
		return nil, err
	}
	return m1core.NewBuilder(ix), nil
}

func writeIndex(b *m1core.Builder, index string) error {
	tmp, err := os.CreateTemp(filepath.Dir(index), ".manifests-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := b.Encode(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	ix, err := b.Index()
	if err != nil {
		return err
	}
	st, _ := os.Stat(tmp.Name())
	s := ix.Stats()
	fmt.Fprintf(os.Stderr, "%s: %d releases, %d paths, %d distinct contents, %d line hashes, %d bytes\n",
		index, s.Versions, s.Paths, s.Hashes, s.LineHashes, st.Size())
	return os.Rename(tmp.Name(), index)
}

func runCheck(index, root string) error {
	f, err := os.Open(index)
	if err != nil {
		return err
	}
	defer f.Close()
	start := time.Now()
	ix, err := m1core.Decode(f)
	if err != nil {
		return err
	}
	load := time.Since(start)
	res, err := m1core.Check(context.Background(), root, m1core.Options{Index: ix})
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "index loaded in %s\n%s\n", load.Round(time.Millisecond), res.Summary())
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}
