package m1core

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

func TestRiceRoundTrip(t *testing.T) {
	for _, set := range [][]uint32{nil, {0}, {5}, {1, 2, 3}, {0, 1 << 31, 1<<32 - 1}} {
		k, enc := riceEncode(set)
		got, err := riceDecode(k, len(set), enc)
		if err != nil || !slices.Equal(got, set) && len(set) > 0 {
			t.Fatalf("%v: got %v, %v", set, got, err)
		}
	}
	if _, err := riceDecode(3, 10, []byte{0xff}); err == nil {
		t.Fatal("truncated input decoded")
	}
}

// FuzzRice: any sorted distinct set survives encoding; any input either
// decodes to n strictly increasing values or fails, never panics.
func FuzzRice(f *testing.F) {
	f.Add([]byte("abcdefgh"), uint8(3))
	f.Fuzz(func(t *testing.T, raw []byte, k uint8) {
		var set []uint32
		for i := 0; i+4 <= len(raw); i += 4 {
			set = append(set, uint32(raw[i])<<24|uint32(raw[i+1])<<16|uint32(raw[i+2])<<8|uint32(raw[i+3]))
		}
		slices.Sort(set)
		set = slices.Compact(set)
		kk, enc := riceEncode(set)
		got, err := riceDecode(kk, len(set), enc)
		if err != nil || len(got) != len(set) || (len(set) > 0 && !slices.Equal(got, set)) {
			t.Fatalf("round trip %v -> %v, %v", set, got, err)
		}
		if out, err := riceDecode(k%32, len(raw)%50, raw); err == nil && (!slices.IsSorted(out) || len(slices.Compact(slices.Clone(out))) != len(out)) {
			t.Fatalf("decoded a set that is not strictly increasing: %v", out)
		}
	})
}

func TestIndexEncodeDecode(t *testing.T) {
	rels := map[string]map[string]string{
		"1.0": {"index.php": "a", "lib/Varien/A.php": "<?php\n$a = 1;\n", "js/x.js": "x"},
		"1.1": {"index.php": "a", "lib/Varien/A.php": "<?php\n$a = 2;\n", "errors/report.php": "r"},
	}
	b := NewBuilder(nil)
	for _, v := range []string{"1.0", "1.1"} {
		var fs []File
		for p, c := range rels[v] {
			fs = append(fs, NewFile(p, []byte(c)))
		}
		fs = append(fs, NewFile("app/code/local/X.php", []byte("not core")))
		if err := b.AddVersion(v, fs); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := b.Encode(&buf); err != nil {
		t.Fatal(err)
	}
	ix, err := Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ix.Versions(), []string{"1.0", "1.1"}) {
		t.Fatalf("versions %v", ix.Versions())
	}
	for v, files := range rels {
		got := ix.Files(v)
		if len(got) != len(files) {
			t.Fatalf("%s: %d files, want %d (out-of-scope kept?)", v, len(got), len(files))
		}
		for p, c := range files {
			if got[p] != NewFile(p, []byte(c)).Hash {
				t.Fatalf("%s %s: wrong hash", v, p)
			}
		}
	}
	// Extending a decoded index keeps what it had.
	b2 := NewBuilder(ix)
	if err := b2.AddVersion("1.2", []File{NewFile("index.php", []byte("b"))}); err != nil {
		t.Fatal(err)
	}
	ix2, err := b2.Index()
	if err != nil || len(ix2.Files("1.1")) != 3 || len(ix2.Files("1.2")) != 1 || ix2.Stats().LineHashes != ix.Stats().LineHashes+1 {
		t.Fatalf("extended index: %v %+v", err, ix2.Stats())
	}
	if _, err := Decode(bytes.NewReader([]byte("not gzip"))); err == nil {
		t.Fatal("garbage decoded")
	}
}

func TestInScope(t *testing.T) {
	in := []string{"app/code/core/Mage/Payment/Model/Method/Cc.php", "lib/Varien/Object.php", "js/varien/js.js",
		"skin/frontend/base/default/js/opcheckout.js", "skin/adminhtml/default/default/boxes.css",
		"app/design/frontend/base/default/template/page/html/head.phtml", "app/design/frontend/rwd/default/layout/page.xml",
		"errors/report.php", "index.php", "cron.php", "get.php", ".htaccess", "app/Mage.php", "app/etc/config.xml",
		"app/etc/modules/Mage_All.xml", "shell/indexer.php", "pub/index.php", "mage", ".user.ini"}
	out := []string{"app/code/local/X/Y.php", "app/code/community/A/B.php", "media/x.php", "var/cache/a",
		"app/etc/local.xml", "skin/frontend/mytheme/default/a.css", "app/design/frontend/mytheme/default/t.phtml",
		"pub/media/x.php", "downloader/index.php", "LICENSE.txt", ".php-cs-fixer.dist.php", "includes/config.php"}
	for _, p := range in {
		if !InScope(p) {
			t.Errorf("%s not in scope", p)
		}
	}
	for _, p := range out {
		if InScope(p) {
			t.Errorf("%s in scope", p)
		}
	}
	for _, d := range []string{"app", "app/code", "app/design/frontend", "skin/frontend/base", "pub"} {
		if !mayHold(d) {
			t.Errorf("walk skips %s", d)
		}
	}
	for _, d := range []string{"media", "var", "app/code/local", "skin/frontend/mytheme", "pub/media", "downloader"} {
		if mayHold(d) {
			t.Errorf("walk enters %s", d)
		}
	}
}

func TestMageVersion(t *testing.T) {
	ce := "<?php\nfinal class Mage {\n public static function getVersionInfo()\n {\n  return array(\n   'major' => '1',\n   'minor' => '9',\n   'revision' => '4',\n   'patch' => '5',\n   'stability' => '',\n  );\n }\n}\n"
	om := "<?php\nfinal class Mage {\n public static function getVersionInfo()\n {\n  return ['major' => '1', 'minor' => '9', 'revision' => '4', 'patch' => '5'];\n }\n" +
		" public static function getOpenMageMajorVersion(): int\n {\n  return 20;\n }\n" +
		" public static function getOpenMageVersionInfo(): array\n {\n  if (self::getOpenMageMajorVersion() === 20) {\n   return ['major' => '20', 'minor' => '10', 'patch' => '2'];\n  }\n  return ['major' => '19', 'minor' => '5', 'patch' => '0'];\n }\n}\n"
	om19 := strings.Replace(om, "return 20;", "return 19;", 1)
	// OpenMage 19.4.x: the major version in a local variable.
	om194 := "<?php\nfinal class Mage {\n public static function getOpenMageVersionInfo()\n {\n  $majorVersion = 19;\n" +
		"  if ($majorVersion === 20) {\n   return ['major' => '20', 'minor' => '0', 'patch' => '20'];\n  }\n  return ['major' => '19', 'minor' => '4', 'patch' => '23'];\n }\n}\n"
	for src, want := range map[string]string{ce: "1.9.4.5", om: "20.10.2", om19: "19.5.0", om194: "19.4.23", "<?php echo 1;": ""} {
		if got := MageVersion([]byte(src)); got != want {
			t.Errorf("MageVersion = %q, want %q", got, want)
		}
	}
}
