package archtest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestThreatModelNamesRealTests keeps docs/operations.md's threat model
// true: every test it names as the proof of a row exists.
func TestThreatModelNamesRealTests(t *testing.T) {
	b, err := os.ReadFile("../../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	start := strings.Index(doc, "## Threat model")
	if start < 0 {
		t.Fatal("docs/operations.md has no Threat model section")
	}
	section := doc[start:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	names := regexp.MustCompile("`((?:Test|Fuzz)[A-Za-z0-9_]+)`").FindAllStringSubmatch(section, -1)
	if len(names) < 10 {
		t.Fatalf("the threat model names only %d tests; the regexp or the section moved", len(names))
	}
	defined := map[string]bool{}
	funcRE := regexp.MustCompile(`(?m)^func ((?:Test|Fuzz)[A-Za-z0-9_]+)\(`)
	for _, root := range []string{"activities", "internal", "test", "workflows"} {
		err := filepath.WalkDir(filepath.Join("../../..", root), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, "_test.go") {
				return err
			}
			src, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for _, m := range funcRE.FindAllStringSubmatch(string(src), -1) {
				defined[m[1]] = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range names {
		if !defined[n[1]] {
			t.Errorf("docs/operations.md's threat model names %s, which no test defines", n[1])
		}
	}
}
