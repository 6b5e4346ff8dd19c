package m1audit

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"
	"time"
)

// benchTree writes a Magento-1-shaped tree of n small files (60% PHP, 20%
// JS, 10% phtml, 10% JPEG under media/) under the benchmark's temp dir.
// About 3% of the files hold benign code with the words rules key on
// (eval(, $_GET, include, checkout, createElement, preg_replace, atob), so
// the regexes behind the literal prefilters really run; on stock CE
// 1.9.4.5 the busiest prefilter (preg_replace) passes 1.4% of code files.
func benchTree(b *testing.B, n int) string {
	b.Helper()
	root := b.TempDir()
	php := phpHead + strings.Repeat("class Mage_Foo_Model_Bar extends Mage_Core_Model_Abstract { public function get($k) { return $this->_data[$k]; } }\n", 30)
	phpBusy := phpHead + strings.Repeat("if (isset($_GET['p'])) { $p = (int) $_GET['p']; }\n$s = preg_replace('/\\s+/', ' ', $s);\ninclude 'Mage/Core/functions.php';\n$json = Zend_Json::decode($raw); // no eval( here\nusort($rows, array($this, '_sort'));\n", 12)
	js := jsHead + strings.Repeat("var Foo = Class.create(); Foo.prototype = { initialize: function(a){ this.a = a; } };\n", 30)
	jsBusy := jsHead + strings.Repeat("var s = document.createElement('script'); s.src = '/js/checkout/review.js';\nif (location.href.indexOf('checkout') > 0) { new Ajax.Request('/checkout/onepage/saveBilling'); }\nvar t = window.atob ? 1 : 0;\n", 12)
	phtml := strings.Repeat("<div class=\"x\"><?php echo $this->escapeHtml($this->getName()) ?></div>\n", 30)
	jpeg := "\xFF\xD8\xFF\xE0" + strings.Repeat("\x10\x20\x30\x40\x50\x60\x70\x80", 1024)
	for i := 0; i < n; i++ {
		var p, c string
		switch i % 10 {
		case 0, 1, 2, 3, 4, 5:
			p, c = fmt.Sprintf("app/code/core/Mage/M%d/Model/F%d.php", i%97, i), php
			if i%40 == 0 {
				c = phpBusy
			}
		case 6, 7:
			p, c = fmt.Sprintf("js/lib/d%d/f%d.js", i%31, i), js
			if i%30 == 6 {
				c = jsBusy
			}
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

// rules350 is the shipped set plus community-style plain lists (generated
// here: literal indicators and anchored regexes in the shape of the public
// lists) to 350 rules in all.
func rules350(b *testing.B) *Signatures {
	b.Helper()
	base := shipped(b).Len()
	var back, front strings.Builder
	for i := 0; base+i < 350; i++ {
		w := &back
		if i%3 == 0 {
			w = &front
		}
		switch i % 5 {
		case 0, 1, 2:
			fmt.Fprintf(w, "# lit_%d\nq%07xZ%dkQ9pLm%03d\n", i, i*7919, i, i)
		case 3:
			fmt.Fprintf(w, "# dom_%d\nwww.cdn-look%d-alike.invalid\n", i, i)
		default:
			fmt.Fprintf(w, "# re_%d\n/badfn%d\\s*\\(\\s*\\$_(GET|POST|COOKIE)\\[[^\\]]{1,20}\\]/\n", i, i)
		}
	}
	sigs, err := LoadSignaturesFS(Shipped(), fstest.MapFS{
		"backend.txt":  &fstest.MapFile{Data: []byte(back.String())},
		"frontend.txt": &fstest.MapFile{Data: []byte(front.String())},
	})
	if err != nil {
		b.Fatal(err)
	}
	if sigs.Len() != 350 {
		b.Fatalf("%d rules, want 350", sigs.Len())
	}
	return sigs
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

// BenchmarkScanFiles15k scans a 15,000-file tree with the shipped rules
// and with a 350-rule set in the same run and reports files/s of each, the
// cost ratio of the 350 rules to the shipped ones, and the ratio to a
// read-only walk measured in the same run. Goals on 2 cores: >= 10,000
// files/s shipped, ratio <= 1.5.
//
//	go test ./internal/m1/m1audit -run '^$' -bench ScanFiles -benchtime 3x
func BenchmarkScanFiles15k(b *testing.B) {
	root := benchTree(b, 15000)
	sets := []*Signatures{shipped(b), rules350(b)}
	start := time.Now()
	files, err := readAll(root)
	if err != nil {
		b.Fatal(err)
	}
	baseline := time.Since(start)
	var spent, cpu [2]time.Duration
	b.ResetTimer()
	for b.Loop() {
		for i, sigs := range sets {
			t0, c0 := time.Now(), cpuTime()
			f, err := ScanFiles(context.Background(), root, sigs, ScanOptions{})
			spent[i] += time.Since(t0)
			cpu[i] += cpuTime() - c0
			if err != nil {
				b.Fatal(err)
			}
			if len(f) != 0 {
				b.Fatalf("clean benchmark tree produced %d findings, first %+v", len(f), f[0])
			}
		}
	}
	per := [2]time.Duration{spent[0] / time.Duration(b.N), spent[1] / time.Duration(b.N)}
	b.ReportMetric(float64(files)/per[0].Seconds(), "shipped_files/s")
	b.ReportMetric(float64(files)/per[1].Seconds(), "rules350_files/s")
	b.ReportMetric(float64(per[1])/float64(per[0]), "rules350_x_shipped")
	b.ReportMetric(float64(per[0])/float64(baseline), "shipped_x_read_baseline")
	b.ReportMetric(float64(sets[0].Len()), "shipped_rules")
	// CPU seconds are what the scan costs whatever else runs on the host
	// (the wall-clock figures above drop on a shared machine); files per
	// CPU second times the cores is the rate on an idle host.
	b.ReportMetric(float64(files)*float64(b.N)/cpu[0].Seconds(), "shipped_files/cpu_s")
	b.ReportMetric(float64(files)*float64(b.N)/cpu[1].Seconds(), "rules350_files/cpu_s")
	b.ReportMetric(float64(cpu[1])/float64(cpu[0]), "rules350_x_shipped_cpu")
}

// cpuTime is the user plus system CPU time of this process.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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
