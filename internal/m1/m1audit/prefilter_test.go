package m1audit

import (
	"strings"
	"testing"
)

func TestPrefilterExtraction(t *testing.T) {
	cases := []struct {
		pattern string
		want    string // hints joined by |, "" for no prefilter
	}{
		{`(?i)\beval\s*\(\s*base64_decode\s*\(`, "base64_decode/f|eval/f"}, // every required literal, rarest first
		{`createElement\s*\(`, "createElement/c"},
		{`(onepage|checkout)x`, "onepagex/c|checkoutx/c"}, // few spellings: whole strings
		{`(onepage|checkout)?btoa`, "onepagebtoa/c|checkoutbtoa/c|btoa/c"},
		{`\$_(GET|POST)\[`, "$_GET[/c|$_POST[/c"},
		{`(?is)(a1b2c|xyz9).{0,9}btoa|btoa.{0,9}(a1b2c|xyz9)`, "a1b2c/f|xyz9/f|btoa/f"}, // one group per rank across branches
		{`a|[0-9]+`, ""},  // one branch has no literal
		{`(?:abcd)*`, ""}, // may repeat zero times
		{`(?:abcd){2,3}`, "abcd/c"},
		{`ab`, ""},                 // too short to be worth it
		{`(?i)KELVIN`, "kelvin/f"}, // ASCII-only folding, see compileSig
		{`(?i)include.{0,9}\.(?:jpg|png)`, "include/f|.jpg/f|.png/f"},
		{`café-latte`, "-latte/c"},
	}
	for _, c := range cases {
		var got []string
		for _, h := range newPrefilter(c.pattern).alts {
			kind := "c"
			if h.fold {
				kind = "f"
			}
			got = append(got, string(h.lit)+"/"+kind)
		}
		if strings.Join(got, "|") != c.want {
			t.Errorf("%s: hints %v, want %q", c.pattern, got, c.want)
		}
	}
}

// The prefilter must never reject data the signature regex matches. The
// regex folds case in ASCII only (compileSig), so the Kelvin sign and the
// long s do not match k and s, and the prefilter may rely on that.
func TestPrefilterNeverRejectsAMatch(t *testing.T) {
	for _, d := range []string{"\u212Aelvin", "a\u017F\u017Fert("} {
		for _, p := range []string{`(?i)kelvin`, `(?i)assert\(`} {
			if re, err := compileSig(p); err != nil || re.MatchString(d) {
				t.Errorf("compileSig(%s) matches %q (err %v): folding must be ASCII-only", p, d, err)
			}
		}
	}
	cases := []struct{ pattern, data string }{
		{`(?i)kelvin`, "KeLVIN"},
		{`(?i)assert\(`, "ASSert("},
		{`(?i)include.{0,9}\.(?:jpg|png)`, "INCLUDE 'x.PNG'"},
		{`(?i)\beval\s*\(\s*base64_decode\s*\(`, "EVAL( BASE64_DECODE("},
		{`(onepage|checkout).{0,5}btoa`, "checkout..btoa"},
		{`(?:abcd){2,3}`, "abcdabcd"},
	}
	for _, c := range cases {
		re, err := compileSig(c.pattern)
		if err != nil {
			t.Fatal(err)
		}
		data := []byte(c.data)
		if !re.Match(data) {
			t.Fatalf("test case broken: %s does not match %q", c.pattern, c.data)
		}
		if !newPrefilter(c.pattern).pass(data, asciiLower(data)) {
			t.Errorf("prefilter of %s rejects %q, which the regex matches", c.pattern, c.data)
		}
	}
	p := newPrefilter(`(?i)createElement`)
	if d := []byte("nothing here"); p.pass(d, asciiLower(d)) {
		t.Error("prefilter passes data without its literal")
	}
}
