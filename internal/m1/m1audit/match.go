package m1audit

import (
	"slices"
	"strings"
)

// CheckInformational marks findings that are information only: a risky construct
// in widely used code (the /e regexes of stock PEAR mail classes). Audit
// does not turn them into a result; they exist for a person reading the
// full scan output.
const CheckInformational = "m1.files.info"

// maxDepth bounds recursion through decoded payloads.
const maxDepth = 3

// matchAll runs the signatures of the given scopes and the heuristics over
// data. Findings have no Path. A finding's severity decides whether it
// needs a person (medium, low) or is information only (info, CheckInformational).
func (s *Signatures) matchAll(data []byte, scopes []Scope, depth, maxEv int) []Finding {
	return s.match(data, scopes, depth, maxEv, "")
}

// matchFile is matchAll for a file at rel, adding the checks that depend on
// the file's kind (.htaccess and .user.ini handler tricks, layout XML).
func (s *Signatures) matchFile(data []byte, scopes []Scope, rel string, maxEv int) []Finding {
	return s.match(data, scopes, 0, maxEv, rel)
}

func (s *Signatures) match(data []byte, scopes []Scope, depth, maxEv int, rel string) []Finding {
	if depth > maxDepth {
		return nil
	}
	hit := s.hits(data)
	var low []byte
	lower := func() []byte {
		if low == nil {
			low = asciiLower(data)
		}
		return low
	}
	var out []Finding
	for _, sig := range s.list {
		if len(scopes) > 0 && !sig.appliesTo(scopes) {
			continue
		}
		if len(scopes) == 0 && sig.Scope != ScopeAny {
			continue // .htaccess, .ini, .sh: only language-neutral signatures
		}
		start, end, ok := sig.match(data, hit, lower)
		if !ok {
			continue
		}
		f := Finding{CheckID: CheckSignature, Severity: sig.Severity, Line: lineAt(data, start),
			SignatureID: sig.ID, Evidence: excerpt(data, start, end, maxEv), NeedsPerson: needsPerson(sig.Severity)}
		if sig.Severity == SeverityInfo {
			f.CheckID, f.NeedsPerson = CheckInformational, false
		}
		out = append(out, f)
	}
	c := &heurCtx{sigs: s, data: data, hit: hit, max: maxEv, depth: depth, lowerB: low}
	web := slices.Contains(scopes, ScopeJS) || slices.Contains(scopes, ScopeHTML)
	switch {
	case slices.Contains(scopes, ScopePHP):
		c.phpHeuristics()
		c.longEncoded(600)
	case web:
		c.longEncoded(4000)
	}
	if web {
		c.jsHeuristics()
	}
	switch base := rel[strings.LastIndex(rel, "/")+1:]; {
	case base == ".htaccess" || base == ".user.ini" || strings.HasSuffix(base, ".htaccess"):
		c.handlerTricks(rel)
	case strings.HasSuffix(strings.ToLower(base), ".xml"):
		c.layoutScript()
	}
	return append(out, c.out...)
}
