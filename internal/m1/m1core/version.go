package m1core

import (
	"regexp"
	"strings"
)

var (
	ceFnRe    = regexp.MustCompile(`function\s+getVersionInfo\s*\(`)
	omFnRe    = regexp.MustCompile(`function\s+getOpenMageVersionInfo\s*\(`)
	omMajorRe = regexp.MustCompile(`function\s+getOpenMageMajorVersion\s*\([^)]*\)[^{]*\{\s*return\s+(\d+)\s*;`)
	omVarRe   = regexp.MustCompile(`\$majorVersion\s*=\s*(\d+)\s*;`) // OpenMage 19.4.x
	kvRe      = regexp.MustCompile(`['"](major|minor|revision|patch)['"]\s*=>\s*['"]?(\d+)`)
)

// MageVersion returns the release app/Mage.php declares, named as the
// index names releases: the OpenMage version ("20.10.2") when
// getOpenMageVersionInfo exists, else the Magento one ("1.9.4.5"). It
// returns "" when the file declares neither.
func MageVersion(src []byte) string {
	s := string(src)
	if loc := omFnRe.FindStringIndex(s); loc != nil {
		want := ""
		if m := omMajorRe.FindStringSubmatch(s); m != nil {
			want = m[1]
		} else if m := omVarRe.FindStringSubmatch(s[loc[1]:]); m != nil {
			want = m[1]
		}
		if v := versionAfter(s[loc[1]:], want, []string{"major", "minor", "patch"}); v != "" {
			return v
		}
	}
	if loc := ceFnRe.FindStringIndex(s); loc != nil {
		return versionAfter(s[loc[1]:], "", []string{"major", "minor", "revision", "patch"})
	}
	return ""
}

// versionAfter reads the first version array in s (the one whose major is
// want, when given) with the keys in order.
func versionAfter(s, major string, keys []string) string {
	ms := kvRe.FindAllStringSubmatch(s, 64)
	for i := 0; i+len(keys) <= len(ms); i++ {
		if ms[i][1] != keys[0] || (major != "" && ms[i][2] != major) {
			continue
		}
		parts := make([]string, 0, len(keys))
		for j, k := range keys {
			if ms[i+j][1] != k {
				return ""
			}
			parts = append(parts, ms[i+j][2])
		}
		return strings.Join(parts, ".")
	}
	return ""
}
