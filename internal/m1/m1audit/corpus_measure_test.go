package m1audit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// corpusEnv names the directory of a public malware corpus laid out as
// corpus/{backend,frontend,whitelisted}; the material may not be shipped,
// so the measurement runs only when an engineer points it there.
const corpusEnv = "M1AUDIT_CORPUS"

// BenchmarkCorpusDetection is a measurement, not a test (the material may
// not be shipped, so `make test` cannot run it): it prints detection on a
// real corpus (critical/high and any finding per part), lists misses, and
// fails on any critical/high finding on whitelisted files or stock trees.
// Run:
// M1AUDIT_CORPUS=/tmp/mwcorpus/corpus M1AUDIT_STOCK_TREES=/tmp/ce:/tmp/om go test ./internal/m1/m1audit -run '^$' -bench CorpusDetection -benchtime 1x
func BenchmarkCorpusDetection(b *testing.B) {
	dir := os.Getenv(corpusEnv)
	if dir == "" {
		b.Skip("set " + corpusEnv + " to a corpus directory to measure detection on real material")
	}
	var t testing.TB = b
	for _, part := range []struct{ name, dest string }{
		{"backend", "app/code/local/Sample/Mod/"},
		{"frontend", "skin/frontend/sample/default/js/"},
	} {
		measurePart(t, filepath.Join(dir, part.name), part.name, part.dest)
	}
	measureWhitelist(t, filepath.Join(dir, "whitelisted"))
	for _, tree := range filepath.SplitList(os.Getenv(stockEnv)) {
		measureStock(t, tree)
	}
}

// stockEnv lists (as a PATH-style list) untouched release trees that must
// give no critical/high finding.
const stockEnv = "M1AUDIT_STOCK_TREES"

func measureStock(t testing.TB, root string) {
	findings, err := ScanFiles(context.Background(), root, shipped(t), ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bad, other := 0, 0
	for _, f := range findings {
		if (f.Severity == SeverityCritical || f.Severity == SeverityHigh) && !f.NeedsPerson {
			bad++
			t.Errorf("false alarm on stock %s: %s %s %s %q", root, f.Path, f.SignatureID, f.Severity, f.Evidence)
		} else {
			other++
		}
	}
	t.Logf("stock %s: %d critical/high, %d other findings", root, bad, other)
}

func measurePart(t testing.TB, src, name, dest string) {
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	names := map[string]string{}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		ext := ".php"
		if name == "frontend" {
			ext = ".js"
			if strings.Contains(strings.ToLower(string(b)), "<script") {
				ext = ".html"
			}
		}
		rel := dest + e.Name() + ext
		writeFile(t, filepath.Join(root, rel), string(b))
		names[rel] = e.Name()
	}
	findings, err := ScanFiles(context.Background(), root, shipped(t), ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hi, anyF := map[string]bool{}, map[string]bool{}
	for _, f := range findings {
		anyF[f.Path] = true
		if (f.Severity == SeverityCritical || f.Severity == SeverityHigh) && !f.NeedsPerson {
			hi[f.Path] = true
		}
	}
	var miss []string
	for rel, n := range names {
		if !hi[rel] {
			miss = append(miss, fmt.Sprintf("%s any=%v", n, anyF[rel]))
		}
	}
	sort.Strings(miss)
	t.Logf("%s: %d files, %d critical/high, %d any finding", name, len(names), len(hi), len(anyF))
	for _, m := range miss {
		t.Logf("miss %s %s", name, m)
	}
}

func measureWhitelist(t testing.TB, src string) {
	root := t.TempDir()
	n := 0
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		writeFile(t, filepath.Join(root, "app/code/community", rel), string(b))
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	findings, err := ScanFiles(context.Background(), root, shipped(t), ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bad := 0
	for _, f := range findings {
		if (f.Severity == SeverityCritical || f.Severity == SeverityHigh) && !f.NeedsPerson {
			bad++
			t.Errorf("false alarm on whitelisted %s: %s %s %q", f.Path, f.SignatureID, f.Severity, f.Evidence)
		}
	}
	t.Logf("whitelisted: %d files, %d critical/high", n, bad)
}
