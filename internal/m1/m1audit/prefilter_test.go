package m1audit

import (
	"regexp"
	"strings"
	"testing"
)

func TestPrefilterExtraction(t *testing.T) {
	cases := []struct {
		pattern string
		want    string // hints joined by |, "" for no prefilter
	}{
		{`(?i)\beval\s*\(\s*base64_decode\s*\(`, "e64_decode/f"}, // s splits folded literals
		{`createElement\s*\(`, "createElement/c"},
		{`(onepage|checkout)x`, "onepage/c|checkout/c"},
		{`(onepage|checkout)?btoa`, "btoa/c"},
		{`a|[0-9]+`, ""},  // one branch has no literal
		{`(?:abcd)*`, ""}, // may repeat zero times
		{`(?:abcd){2,3}`, "abcd/c"},
		{`ab`, ""}, // too short to be worth it
		{`(?i)KELVIN`, "elvin/f"},
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

// The prefilter must never reject data the regex matches, including the
// Unicode case folds Go's (?i) applies to k and s.
func TestPrefilterNeverRejectsAMatch(t *testing.T) {
	cases := []struct{ pattern, data string }{
		{`(?i)kelvin`, "\u212Aelvin"},
		{`(?i)assert\(`, "a\u017F\u017Fert("},
		{`(?i)\beval\s*\(\s*base64_decode\s*\(`, "EVAL( BASE64_DECODE("},
		{`(onepage|checkout).{0,5}btoa`, "checkout..btoa"},
		{`(?:abcd){2,3}`, "abcdabcd"},
	}
	for _, c := range cases {
		re := regexp.MustCompile(c.pattern)
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
