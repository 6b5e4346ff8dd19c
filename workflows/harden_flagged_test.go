package workflows_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mageflow/mageflow/activities/agent"
	"github.com/mageflow/mageflow/internal/m1/m1audit"
	"github.com/mageflow/mageflow/workflows"
)

// flaggedAuditResults is an audit with file findings (malware, PHP in an
// image, a modified core file), a database finding and a passing check
// whose paths must not reach the apply step.
func flaggedAuditResults() []m1audit.CheckResult {
	fd := func(p string) m1audit.Finding { return m1audit.Finding{Path: p} }
	return []m1audit.CheckResult{
		{ID: "m1.files.signature", Status: m1audit.StatusFail, Compromise: true, Evidence: m1audit.Evidence{Findings: []m1audit.Finding{
			fd("media/catalog/x.php"), fd("app/code/local/Evil/Shell.php"), fd("media/catalog/x.php"), fd("./js/skim.js")}}},
		{ID: "m1.files.php_in_image", Status: m1audit.StatusFail, Evidence: m1audit.Evidence{Findings: []m1audit.Finding{fd("errors/favicon_1a2b.ico")}}},
		{ID: "m1.files.core_integrity", Status: m1audit.StatusNeedsPerson, Evidence: m1audit.Evidence{Findings: []m1audit.Finding{
			fd("app/code/core/Mage/Payment/Model/Method/Cc.php"), fd("…"), fd("../../etc/shadow"), fd("/etc/passwd")},
			Files: []string{"lib/Varien/Object.php"}}},
		{ID: "m1.db.cms_content", Status: m1audit.StatusFail, Evidence: m1audit.Evidence{Findings: []m1audit.Finding{fd("cms_block[2 promo]")}}},
		{ID: "m1.files.vcs", Status: m1audit.StatusPass, Evidence: m1audit.Evidence{Findings: []m1audit.Finding{fd(".git/config")}}},
		{ID: "m1.fpm.limit_extensions", Status: m1audit.StatusFail},
	}
}

// TestHardenApplyGetsFlaggedFiles: the apply step gets the files the
// audit's failing file checks named — relative, sorted, deduplicated,
// nothing outside the web root, no database rows — and only the apply
// step gets them.
func TestHardenApplyGetsFlaggedFiles(t *testing.T) {
	r := newHardenRig(t)
	r.audit = func(n int) []m1audit.CheckResult {
		if n == 1 {
			return flaggedAuditResults()
		}
		return []m1audit.CheckResult{{ID: "m1.fpm.limit_extensions", Status: m1audit.StatusPass}}
	}
	r.env.ExecuteWorkflow(workflows.MagentoM1EOLHardening, workflows.HardenInput{Host: "web1", Apply: true})
	require.NoError(t, r.env.GetWorkflowError())
	require.Equal(t, []string{
		"app/code/core/Mage/Payment/Model/Method/Cc.php",
		"app/code/local/Evil/Shell.php",
		"errors/favicon_1a2b.ico",
		"js/skim.js",
		"lib/Varien/Object.php",
		"media/catalog/x.php",
	}, r.applyIn.Flagged)
	require.Equal(t, "/srv/shop", r.applyIn.Target.WebRoot, "the apply step still gets the discovered target")
}

// TestFlaggedFilesBounded: thousands of findings give at most MaxFlagged
// paths, the same ones whatever order the results come in.
func TestFlaggedFilesBounded(t *testing.T) {
	var a, b m1audit.CheckResult
	a.ID, a.Status = "m1.files.signature", m1audit.StatusFail
	b = a
	for i := range 3000 {
		a.Evidence.Findings = append(a.Evidence.Findings, m1audit.Finding{Path: fmt.Sprintf("media/f%04d.php", i)})
		b.Evidence.Findings = append(b.Evidence.Findings, m1audit.Finding{Path: fmt.Sprintf("media/f%04d.php", 2999-i)})
	}
	got := workflows.FlaggedFiles([]m1audit.CheckResult{a})
	require.Len(t, got, agent.MaxFlagged)
	require.Equal(t, "media/f0000.php", got[0])
	require.Equal(t, got, workflows.FlaggedFiles([]m1audit.CheckResult{b}))
	require.Empty(t, workflows.FlaggedFiles(nil))
}
