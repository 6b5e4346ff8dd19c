package m1audit

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// benchTree writes a Magento-1-shaped tree of n small files (60% PHP, 20%
// JS, 10% phtml, 10% JPEG under media/) once per process under the
// benchmark's temp dir.
func benchTree(b *testing.B, n int) string {
	b.Helper()
	root := b.TempDir()
	php := phpHead + strings.Repeat("class Mage_Foo_Model_Bar extends Mage_Core_Model_Abstract { public function get($k) { return $this->_data[$k]; } }\n", 30)
	js := jsHead + strings.Repeat("var Foo = Class.create(); Foo.prototype = { initialize: function(a){ this.a = a; } };\n", 30)
	phtml := strings.Repeat("<div class=\"x\"><?php echo $this->escapeHtml($this->getName()) ?></div>\n", 30)
	jpeg := "\xFF\xD8\xFF\xE0" + strings.Repeat("\x10\x20\x30\x40\x50\x60\x70\x80", 1024)
	for i := 0; i < n; i++ {
		var p, c string
		switch i % 10 {
		case 0, 1, 2, 3, 4, 5:
			p, c = fmt.Sprintf("app/code/core/Mage/M%d/Model/F%d.php", i%97, i), php
		case 6, 7:
			p, c = fmt.Sprintf("js/lib/d%d/f%d.js", i%31, i), js
		case 8:
			p, c = fmt.Sprintf("app/design/frontend/base/default/template/t%d/f%d.phtml", i%23, i), phtml
		default:
			p, c = fmt.Sprintf("media/catalog/product/%d/f%d.jpg", i%41, i), jpeg
		}
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	return root
}

// readAll is the baseline: walking and reading every file without matching,
// the least any file scanner has to do.
func readAll(root string) (int, error) {
	files := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		_, err = os.ReadFile(p)
		files++
		return err
	})
	return files, err
}

// BenchmarkScanFiles20k scans a 20,000-file tree with the shipped signatures
// and reports the time per tree, files per second, and the ratio to the
// read-only baseline measured in the same run.
func BenchmarkScanFiles20k(b *testing.B) {
	root := benchTree(b, 20000)
	sigs := shipped(b)
	start := time.Now()
	files, err := readAll(root)
	if err != nil {
		b.Fatal(err)
	}
	baseline := time.Since(start)
	b.ResetTimer()
	for b.Loop() {
		f, err := ScanFiles(context.Background(), root, sigs, ScanOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if len(f) != 0 {
			b.Fatalf("clean benchmark tree produced %d findings, first %+v", len(f), f[0])
		}
	}
	perScan := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(float64(files)/perScan.Seconds(), "files/s")
	b.ReportMetric(float64(perScan)/float64(baseline), "x_read_baseline")
	b.ReportMetric(float64(baseline.Milliseconds()), "baseline_ms")
}

// BenchmarkAudit20k runs the whole read-only Audit (file scan, writability,
// world-writable and VCS walk, configuration checks) over a clean
// 20,000-file store and reports files/s and false_positives: results of
// the file and configuration checks that are not pass or not_applicable on
// a tree with nothing wrong (goal 0). sshd and the database are pointed at
// nothing so only local work is timed.
//
//	go test ./internal/m1/m1audit -run '^$' -bench Audit -benchtime 3x
func BenchmarkAudit20k(b *testing.B) {
	root := benchTree(b, 20000)
	for p, c := range map[string]string{
		"app/Mage.php":      mageOM,
		"app/etc/local.xml": localXMLFixture("shop_backend", "localhost", ""),
		"index.php":         phpHead + "require 'app/Mage.php';\n",
	} {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	if err := filepath.Walk(filepath.Join(root, "media"), func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, phpUID, phpUID)
	}); err != nil {
		b.Fatal(err)
	}
	tg := targetFor(root)
	tg.Version, tg.OpenMage = "20.10.2", true
	o := AuditOptions{Signatures: shipped(b), PHPIdentity: &Identity{UID: phpUID, GIDs: []int{phpUID}}, Now: func() time.Time { return fixedNow },
		SSHDBinary: "/nonexistent/sshd", PasswdFile: "/nonexistent/passwd",
		DB: &DBConfig{Socket: filepath.Join(root, "none.sock"), Name: "none"}}
	fp := 0
	b.ResetTimer()
	for b.Loop() {
		rs, err := Audit(context.Background(), tg, o)
		if err != nil {
			b.Fatal(err)
		}
		fp = 0
		for _, r := range rs {
			if strings.HasPrefix(r.ID, "m1.db.") || strings.HasPrefix(r.ID, "m1.ssh.") {
				continue
			}
			if r.Status != StatusPass && r.Status != StatusNotApplicable {
				fp++
				b.Logf("false positive %s: %s %s %s", r.ID, r.Status, r.Evidence.Detail, findingPaths(r))
			}
		}
	}
	per := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(20003/per.Seconds(), "files/s")
	b.ReportMetric(float64(per.Milliseconds()), "ms/audit")
	b.ReportMetric(float64(fp), "false_positives")
}
