package m1core

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"
)

// TestShippedIndex checks the embedded manifests without fetching
// anything: they load, cover the releases promised, and their sizes are
// those of real Magento 1 trees.
func TestShippedIndex(t *testing.T) {
	ix, err := Shipped()
	if err != nil {
		t.Fatal(err)
	}
	vs := ix.Versions()
	for _, v := range []string{"1.9.4.5", "1.9.3.10", "1.9.0.0", "19.4.0", "19.5.3", "20.0.0", "20.18.0"} {
		if !slices.Contains(vs, v) {
			t.Errorf("release %s missing from %v", v, vs)
		}
	}
	if len(vs) < 90 {
		t.Errorf("%d releases", len(vs))
	}
	for _, v := range vs {
		if n := len(ix.Files(v)); n < 5000 || n > 20000 {
			t.Errorf("%s: %d core files", v, n)
		}
	}
	ce := ix.Files("1.9.4.5")
	for _, p := range []string{"app/Mage.php", "index.php", ".htaccess", "app/code/core/Mage/Payment/Model/Method/Cc.php",
		"app/code/core/Mage/Checkout/controllers/OnepageController.php", "js/varien/js.js", "errors/report.php",
		"skin/frontend/base/default/js/opcheckout.js", "app/design/frontend/base/default/template/page/html/head.phtml"} {
		if _, ok := ce[p]; !ok {
			t.Errorf("1.9.4.5 manifest lacks %s", p)
		}
	}
	// The one blob absent from the mirrors is recorded as "content unknown".
	if h, ok := ce["lib/Zend/Service/WindowsAzure/CommandLine/Scaffolders/DefaultScaffolder.phar"]; !ok || h != unknownContent {
		t.Errorf("1.9.4.5: DefaultScaffolder.phar not recorded as content unknown (%v %x)", ok, h)
	}
	if s := ix.Stats(); s.LineHashes < 100000 || ShippedSize() > 8<<20 {
		t.Errorf("index %+v, %d bytes", s, ShippedSize())
	}
}

// BenchmarkCheck15k is the core-integrity check of a 15,000-file tree
// (pristine, so every file is hashed and compared, none diffed).
func BenchmarkCheck15k(b *testing.B) {
	rel := synthRelease(15000, 3)
	ix := buildIndex(b, map[string]map[string]string{"1.9.4.5": rel}, "1.9.4.5")
	root := b.TempDir()
	writeTree(b, root, rel)
	var res *Result
	start := time.Now()
	for b.Loop() {
		var err error
		if res, err = Check(context.Background(), root, Options{Index: ix}); err != nil {
			b.Fatal(err)
		}
	}
	per := time.Since(start) / time.Duration(b.N)
	if res.Status != StatusClean || res.Files != len(rel) {
		b.Fatalf("%s", res.Summary())
	}
	b.ReportMetric(float64(res.Files)/per.Seconds(), "files/s")
	b.Logf("core integrity of %d files: %s per check (goal <= 2s)", res.Files, per.Round(time.Millisecond))
}

// BenchmarkDecodeShipped is the one-time cost of loading the embedded
// index (Shipped caches it per process), to add to BenchmarkCheck15k.
func BenchmarkDecodeShipped(b *testing.B) {
	for b.Loop() {
		if _, err := Decode(bytes.NewReader(shipped)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(ShippedSize()), "index-bytes")
}
