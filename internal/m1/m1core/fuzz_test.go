package m1core

import (
	"bytes"
	"compress/gzip"
	"encoding/gob"
	"regexp"
	"testing"
)

var versionShape = regexp.MustCompile(`^\d+(\.\d+){2,3}$`)

// FuzzMageVersion: whatever app/Mage.php holds, the version read is empty
// or dotted digits, never a panic.
func FuzzMageVersion(f *testing.F) {
	f.Add("<?php final class Mage { public static function getVersionInfo() { return array('major' => '1', 'minor' => '9', 'revision' => '4', 'patch' => '5'); } }")
	f.Add("function getOpenMageVersionInfo() { $majorVersion = 19; return ['major' => '19', 'minor' => '4', 'patch' => '23']; }")
	f.Fuzz(func(t *testing.T, src string) {
		if v := MageVersion([]byte(src)); v != "" && !versionShape.MatchString(v) {
			t.Fatalf("version %q", v)
		}
	})
}

// FuzzDecode: a corrupt index is an error, never a panic or an index that
// points outside itself.
func FuzzDecode(f *testing.F) {
	var seed bytes.Buffer
	gob.NewEncoder(&seed).Encode(&wireIndex{Format: formatVersion, Paths: []string{"index.php"}, Hashes: make([]byte, 32),
		Versions: []wireVersion{{Name: "1", Base: -1, SetPath: []uint32{0}, SetHash: []uint32{0}}}})
	f.Add(seed.Bytes())
	f.Fuzz(func(t *testing.T, raw []byte) {
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		zw.Write(raw)
		zw.Close()
		ix, err := Decode(&z)
		if err != nil {
			return
		}
		for _, v := range ix.Versions() {
			for p := range ix.Files(v) {
				if _, ok := ix.pathID[p]; !ok {
					t.Fatalf("version %s names unknown path %q", v, p)
				}
			}
		}
	})
}
