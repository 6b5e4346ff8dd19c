package workflows

import (
	"path"
	"sort"
	"strings"

	"github.com/mageflow/mageflow/activities/agent"
	"github.com/mageflow/mageflow/internal/m1/m1audit"
)

// flaggedCheckPrefix marks the audit's file checks: their findings name
// files relative to the web root (the database checks name rows, the
// nginx and PHP checks name settings).
const flaggedCheckPrefix = "m1.files."

// FlaggedFiles are the files the audit's failing file checks name, for
// the apply step's forensic snapshot: slash paths relative to the web
// root, cleaned, deduplicated and sorted, at most agent.MaxFlagged (the
// first in sort order; deterministic, as workflow code must be). Paths
// that leave the web root, absolute ones and placeholders ("…" for
// findings left out) are dropped: the agent would ignore them anyway.
func FlaggedFiles(audit []m1audit.CheckResult) []string {
	seen := map[string]bool{}
	var out []string
	add := func(p string) {
		p = strings.TrimSpace(p)
		if p == "" || strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\x00\\") {
			return
		}
		p = path.Clean(p)
		if p == "." || p == ".." || strings.HasPrefix(p, "../") || strings.Contains(p, "…") || seen[p] {
			return
		}
		seen[p] = true
		out = append(out, p)
	}
	for _, c := range audit {
		if !strings.HasPrefix(c.ID, flaggedCheckPrefix) || (c.Status != m1audit.StatusFail && c.Status != m1audit.StatusNeedsPerson) {
			continue
		}
		for _, f := range c.Evidence.Findings {
			add(f.Path)
		}
		for _, f := range c.Evidence.Files {
			add(f)
		}
	}
	sort.Strings(out)
	if len(out) > agent.MaxFlagged {
		out = out[:agent.MaxFlagged]
	}
	return out
}
