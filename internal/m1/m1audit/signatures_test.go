package m1audit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestShippedSignaturesLoad(t *testing.T) {
	sigs, err := LoadSignaturesFS(Shipped())
	if err != nil {
		t.Fatalf("shipped signatures do not load: %v", err)
	}
	if sigs.Len() < 20 {
		t.Fatalf("shipped set has %d signatures, want the starter set (>= 20)", sigs.Len())
	}
	// The on-disk directory is what operators copy and what packaging
	// installs; it must load to the same set as the embedded copy.
	disk, err := LoadSignatures("signatures")
	if err != nil {
		t.Fatalf("signatures/ directory does not load: %v", err)
	}
	if disk.Len() != sigs.Len() {
		t.Fatalf("signatures/ has %d signatures, embedded set %d", disk.Len(), sigs.Len())
	}
	for _, s := range sigs.All() {
		if !strings.HasPrefix(s.Source, "layer0/") {
			t.Errorf("%s: source %q does not name the shipped file", s.ID, s.Source)
		}
	}
}

func TestLoadSignaturesLayersOverrideAndDisable(t *testing.T) {
	base, ops := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(base, "a.sig"), "# comment\n\n"+
		"x.one\tliteral\tphp\thigh\tNEEDLE_ONE\tfirst\n"+
		"x.two\tregex\tjs\tlow\tneedle_(two|2)\tsecond\n"+
		"x.three\tliteral\tany\tinfo\tNEEDLE_THREE\tthird\r\n")
	writeFile(t, filepath.Join(base, "ignored.md"), "not a signature file\n")
	writeFile(t, filepath.Join(ops, "local.sig"),
		"x.two\tliteral\thtml\tcritical\tREPLACED\toperator override\n"+
			"x.three\toff\n"+
			"x.four\tregex\tphp\tmedium\t(?i)four\toperator addition\n")

	sigs, err := LoadSignatures(base, ops)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Signature{}
	for _, s := range sigs.All() {
		got[s.ID] = s
	}
	if len(got) != 3 {
		t.Fatalf("want x.one, x.two, x.four; got %v", got)
	}
	if _, ok := got["x.three"]; ok {
		t.Error("x.three was switched off but is still active")
	}
	two := got["x.two"]
	if two.Kind != KindLiteral || two.Scope != ScopeHTML || two.Severity != SeverityCritical || two.Pattern != "REPLACED" {
		t.Errorf("x.two not overridden: %+v", two)
	}
	if !strings.HasSuffix(two.Source, "local.sig:1") {
		t.Errorf("x.two source = %q, want the operator file and line", two.Source)
	}
	if one := got["x.one"]; one.Pattern != "NEEDLE_ONE" || one.Description != "first" {
		t.Errorf("x.one should be untouched by the operator layer: %+v", one)
	}
	// Order of the result is by ID, so findings are stable between runs.
	all := sigs.All()
	for i := 1; i < len(all); i++ {
		if all[i-1].ID >= all[i].ID {
			t.Fatalf("not sorted by id: %s before %s", all[i-1].ID, all[i].ID)
		}
	}
}

func TestLoadSignaturesErrorsNameFileAndLine(t *testing.T) {
	cases := []struct {
		name, line, want string
	}{
		{"too few fields", "a.b\tliteral\tphp\thigh\tpattern", "want 6 TAB-separated fields"},
		{"spaces not tabs", "a.b literal php high x desc", "must match"},
		{"bad kind", "a.b\tglob\tphp\thigh\tx\tdesc", `kind "glob"`},
		{"bad scope", "a.b\tliteral\tcss\thigh\tx\tdesc", `scope "css"`},
		{"bad severity", "a.b\tliteral\tphp\tsevere\tx\tdesc", `severity "severe"`},
		{"bad regex", "a.b\tregex\tphp\thigh\t(unclosed\tdesc", "bad regex for a.b"},
		{"backreference", "a.b\tregex\tphp\thigh\t(a)\\1\tdesc", "no backreferences"},
		{"empty-matching regex", "a.b\tregex\tphp\thigh\tx*\tdesc", "matches the empty string"},
		{"empty pattern", "a.b\tliteral\tphp\thigh\t\tdesc", "empty pattern"},
		{"empty description", "a.b\tliteral\tphp\thigh\tx\t  ", "description is empty"},
		{"off with extra", "a.b\toff\tphp", `an "off" line`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "bad.sig"), "# header\nok.one\tliteral\tphp\thigh\tfine\tfine\n"+c.line+"\n")
			_, err := LoadSignatures(dir)
			if err == nil {
				t.Fatal("bad line accepted")
			}
			if !strings.Contains(err.Error(), "bad.sig:3") || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q should name bad.sig:3 and say %q", err, c.want)
			}
		})
	}
}

func TestLoadSignaturesDuplicateInOneDirectory(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.sig"), "dup\tliteral\tphp\thigh\tx\tone\n")
	writeFile(t, filepath.Join(dir, "b.sig"), "\ndup\tliteral\tphp\thigh\ty\ttwo\n")
	_, err := LoadSignatures(dir)
	if err == nil || !strings.Contains(err.Error(), "b.sig:2") || !strings.Contains(err.Error(), "a.sig:1") {
		t.Fatalf("want an error naming both definitions, got %v", err)
	}
}

func TestLoadSignaturesMissingDirectory(t *testing.T) {
	_, err := LoadSignatures(filepath.Join(t.TempDir(), "nope"))
	if err == nil || !strings.Contains(err.Error(), "signature directory") {
		t.Fatalf("want a clear error for a missing directory, got %v", err)
	}
}
