package m1audit

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
)

// A plain list in the community's format, written for this test: comment
// names, literal lines and /regex/ lines.
const plainBackend = `# This file has the plain one-indicator-per-line format.
#   - literals, no escaping
#   - regexes between slashes

# lookalike_dumper
Mage::getModel('sales/quote_payment')->getCollection(); // look-alike dumper

# lookalike_eval
/\beval\(\$_POST\[/
`

const plainFrontend = `# lookalike_gate
/gate\.php\?token=\w{0,10}&host=/
\x6F\x6E\x65\x70\x61\x67\x65\x7C
`

const plainDomains = `lookalike-cdn.invalid
`

func TestLoadPlainRuleLists(t *testing.T) {
	dir, over := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(dir, "backend.txt"), plainBackend)
	writeFile(t, filepath.Join(dir, "frontend.txt"), plainFrontend)
	writeFile(t, filepath.Join(dir, "burner-domains.txt"), plainDomains)
	writeFile(t, filepath.Join(over, "local.sig"), "frontend.L2\toff\n")
	sigs, err := LoadSignatures(dir, over)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range sigs.All() {
		got = append(got, strings.Join([]string{s.ID, string(s.Kind), string(s.Scope), string(s.Severity), s.Description}, " "))
	}
	want := []string{
		"backend.L6 literal php high community rule backend.txt:6 (lookalike_dumper)",
		"backend.L9 regex php high community rule backend.txt:9 (lookalike_eval)",
		"burner-domains.L1 literal any high community rule burner-domains.txt:1",
		"frontend.L3 literal js high community rule frontend.txt:3 (lookalike_gate)",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "app/code/local/A/d.php"), phpHead+"if (false) { eval($_POST['x']); }\n")
	writeFile(t, filepath.Join(root, "js/a.js"), jsHead+"var p=\"\\x6F\\x6E\\x65\\x70\\x61\\x67\\x65\\x7C\";\n")
	writeFile(t, filepath.Join(root, "errors/x.html"), "<script src=\"https://lookalike-cdn.invalid/a.js\"></script>\n")
	fs, err := ScanFiles(context.Background(), root, sigs, ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var hits []string
	for _, f := range fs {
		if f.CheckID == CheckSignature && !strings.HasPrefix(f.SignatureID, "heur.") {
			hits = append(hits, f.Path+"#"+f.SignatureID)
		}
	}
	wantHits := "app/code/local/A/d.php#backend.L9,errors/x.html#burner-domains.L1,js/a.js#frontend.L3"
	if strings.Join(hits, ",") != wantHits {
		t.Fatalf("hits %v, want %s", hits, wantHits)
	}
}

func TestPlainListRejectsPCREOnlySyntax(t *testing.T) {
	cases := []struct{ line, want string }{
		{`/\/gate\.php\?token=.{,10}&host=/`, "{0,n}"},
		{`/(?<=cc_)number/`, "lookahead/lookbehind"},
		{`/foo(?!bar)/`, "lookahead/lookbehind"},
		{`/(["'])x\1/`, "backreferences"},
		{`/a++b/`, "possessive"},
		{`/(?>atomic)x/`, "atomic"},
		{`/abc\Kdef/`, "PCRE-only escape"},
		{`/(?x) a b c /`, "(?x)"},
		{`/(unclosed/`, "missing closing )"},
		{`ab`, "shorter than 4 bytes"},
	}
	for _, c := range cases {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "frontend.txt"), "# fine\nfine literal\n"+c.line+"\n")
		_, err := LoadSignatures(dir)
		if err == nil || !strings.Contains(err.Error(), "frontend.txt:3") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want frontend.txt:3 and %q", c.line, err, c.want)
		}
	}
	// The same checks guard the native format.
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "x.sig"), "a.b\tregex\tjs\thigh\tgate\\.php.{,10}\tdesc\n")
	if _, err := LoadSignatures(dir); err == nil || !strings.Contains(err.Error(), "x.sig:1") || !strings.Contains(err.Error(), "{0,n}") {
		t.Errorf("native format: %v", err)
	}
}

// FuzzLoadRules feeds arbitrary bytes to both rule formats. Invariants: no
// panic; a set that loads has only usable signatures; and the literal
// prefilter never hides a regex match (checked on the input itself and on
// every line of it).
func FuzzLoadRules(f *testing.F) {
	f.Add([]byte(plainBackend))
	f.Add([]byte(plainFrontend))
	f.Add([]byte("a.b\tregex\tphp\thigh\t(?i)\\b(eval|assert)\\s*\\(\\s*\\$_(GET|POST)\tdesc\n"))
	f.Add([]byte("/(?is)(onepage|checkout).{0,20}btoa|btoa.{0,9}(onepage|checkout)/\n"))
	f.Add([]byte("/\\$_(GET|POST)\\[['\"]?[a-z]{1,5}/\n/(?i)INCLUDE\\s*['\"][^'\"]{0,9}\\.(?:jpe?g|ico)['\"]/\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, name := range []string{"rules.txt", "rules.sig"} {
			sigs, err := LoadSignaturesFS(fstest.MapFS{name: &fstest.MapFile{Data: data}})
			if err != nil {
				if !strings.Contains(err.Error(), name) {
					t.Fatalf("error %q does not name the file", err)
				}
				continue
			}
			inputs := append([][]byte{data}, splitLines(data)...)
			for _, sig := range sigs.list {
				if sig.Kind == KindRegex && (sig.re == nil || pcreOnly(sig.Pattern) != "") {
					t.Fatalf("%s loaded without a usable RE2 regex", sig.ID)
				}
				if sig.Kind == KindLiteral && len(sig.literal) == 0 {
					t.Fatalf("%s: empty literal loaded", sig.ID)
				}
				for _, in := range inputs {
					hit := sigs.hits(in)
					_, _, ok := sig.match(in, hit, func() []byte { return asciiLower(in) })
					if sig.Kind == KindRegex && ok {
						loc := sig.re.FindIndex(in)
						if a, b, _ := sig.match(in, hit, func() []byte { return asciiLower(in) }); a != loc[0] || b != loc[1] {
							t.Fatalf("%s: windowed match [%d,%d] differs from whole-input match %v", sig.ID, a, b, loc)
						}
					}
					if sig.Kind == KindRegex && sig.re.Match(in) != ok {
						t.Fatalf("%s: prefilter hides a match of %q in %q", sig.ID, sig.Pattern, in)
					}
					if sig.Kind == KindLiteral && strings.Contains(string(in), sig.Pattern) != ok {
						t.Fatalf("%s: automaton misses literal %q in %q", sig.ID, sig.Pattern, in)
					}
				}
			}
			sigs.matchAll(data, []Scope{ScopePHP, ScopeJS, ScopeHTML}, 0, 60)
		}
	})
}

func splitLines(b []byte) [][]byte {
	var out [][]byte
	for _, l := range strings.Split(string(b), "\n") {
		out = append(out, []byte(l))
	}
	return out
}

// TestWindowedMatchEqualsWholeInput: on large inputs bounded regexes run
// only around their literals; the first match must be the one a run over
// the whole input finds, for every shipped regex and every sample.
func TestWindowedMatchEqualsWholeInput(t *testing.T) {
	sigs := shipped(t)
	pad := strings.Repeat("class Mage_Foo { function x($a) { return $a; } } // eval onepage checkout $_GET\n", 120)
	windowed := 0
	for _, s := range badSamples {
		for _, in := range []string{pad + s.content + pad, s.content + pad, pad + s.content, pad + strings.ReplaceAll(s.content, "\n", " ") + pad} {
			data := []byte(in)
			hit := sigs.hits(data)
			for _, sig := range sigs.list {
				if sig.Kind != KindRegex {
					continue
				}
				if sig.maxLen >= 0 && len(sig.pre.groups) > 0 {
					windowed++
				}
				a, b, ok := sig.match(data, hit, func() []byte { return asciiLower(data) })
				loc := sig.re.FindIndex(data)
				if (loc != nil) != ok || (ok && (a != loc[0] || b != loc[1])) {
					t.Fatalf("%s on sample %s: windowed (%d,%d,%v), whole input %v", sig.ID, s.sig, a, b, ok, loc)
				}
			}
		}
	}
	if windowed == 0 {
		t.Fatal("no shipped regex is windowed: the test checks nothing")
	}
}
