package m1core

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// synthRelease returns n file paths and contents shaped like a Magento 1
// release (core modules, lib, js, skin, design, root entry points),
// generated from seed: no Magento code.
func synthRelease(n int, seed uint64) map[string]string {
	r := rand.New(rand.NewPCG(seed, 1))
	areas := []string{"app/code/core/Mage/%s/Model/M%d.php", "app/code/core/Mage/%s/controllers/C%dController.php",
		"lib/Varien/%s/V%d.php", "lib/Zend/%s/Z%d.php", "js/%s/f%d.js", "skin/frontend/base/default/%s/s%d.css",
		"app/design/frontend/base/default/template/%s/t%d.phtml"}
	mods := []string{"Payment", "Checkout", "Customer", "Catalog", "Sales", "Core", "Cms", "Adminhtml"}
	files := map[string]string{
		"index.php":                    "<?php\nrequire 'app/Mage.php';\nMage::run();\n",
		"app/Mage.php":                 "<?php\nfinal class Mage {\n  public static function getVersionInfo()\n  {\n    return array('major' => '1', 'minor' => '9', 'revision' => '4', 'patch' => '5');\n  }\n}\n",
		".htaccess":                    "DirectoryIndex index.php\n",
		"app/etc/config.xml":           "<config/>\n",
		"app/etc/modules/Mage_All.xml": "<config><modules/></config>\n",
	}
	for i := 0; len(files) < n; i++ {
		p := fmt.Sprintf(areas[i%len(areas)], mods[r.IntN(len(mods))], i)
		var b strings.Builder
		b.WriteString("<?php\n")
		for l := range 40 + r.IntN(400) {
			fmt.Fprintf(&b, "    $v%d = $this->call%d($a, %d); // %x\n", l, r.IntN(1000), i, r.Uint32())
		}
		files[p] = b.String()
	}
	return files
}

// writeTree writes files under dir.
func writeTree(t testing.TB, dir string, files map[string]string) {
	t.Helper()
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

// buildIndex builds an index from named releases.
func buildIndex(t testing.TB, rels map[string]map[string]string, order ...string) *Index {
	t.Helper()
	b := NewBuilder(nil)
	for _, name := range order {
		var fs []File
		for p, c := range rels[name] {
			fs = append(fs, NewFile(p, []byte(c)))
		}
		if err := b.AddVersion(name, fs); err != nil {
			t.Fatal(err)
		}
	}
	ix, err := b.Index()
	if err != nil {
		t.Fatal(err)
	}
	return ix
}
