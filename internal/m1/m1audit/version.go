package m1audit

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mageflow/mageflow/internal/platform/units"
)

// MageVersion is what app/Mage.php says about the release.
type MageVersion struct {
	Version  string // "1.9.4.5"; for OpenMage the OpenMage version, "20.10.2"
	Magento  string // the Magento-compatible version getVersionInfo returns
	Edition  string // "Community", "Enterprise", ...
	OpenMage bool
}

var (
	versionFnRe  = regexp.MustCompile(`function\s+getVersionInfo\s*\(`)
	omVersionRe  = regexp.MustCompile(`function\s+getOpenMageVersionInfo\s*\(`)
	versionKVRe  = regexp.MustCompile(`['"](major|minor|revision|patch|stability|number)['"]\s*=>\s*['"]([^'"]*)['"]`)
	editionRe    = regexp.MustCompile(`\$_currentEdition\s*=\s*self::EDITION_([A-Z]+)`)
	phpVersionRe = regexp.MustCompile(`(?m)^PHP (\d+)\.(\d+)\.(\d+)`)
	supeeRe      = regexp.MustCompile(`(?i)\b(SUPEE-\d+|PATCH_SUPEE-\d+|APPSEC-\d+)`)
)

// ParseMageVersion reads the version functions of app/Mage.php. It returns
// an error when neither getVersionInfo nor getOpenMageVersionInfo is found,
// so a person looks at the release by hand.
func ParseMageVersion(src []byte) (MageVersion, error) {
	var v MageVersion
	if m := editionRe.FindSubmatch(src); m != nil {
		e := strings.ToLower(string(m[1]))
		v.Edition = strings.ToUpper(e[:1]) + e[1:]
	}
	if loc := omVersionRe.FindIndex(src); loc != nil {
		if s := versionString(fnBody(src[loc[1]:]), false); s != "" {
			v.Version, v.OpenMage = s, true
		}
	}
	if loc := versionFnRe.FindIndex(src); loc != nil {
		v.Magento = versionString(fnBody(src[loc[1]:]), true)
	}
	if v.Version == "" {
		v.Version = v.Magento
	}
	if v.Version == "" {
		return v, fmt.Errorf("app/Mage.php has no getVersionInfo() or getOpenMageVersionInfo() with a version array; read the release from your deployment records")
	}
	return v, nil
}

// fnBody returns src up to the end of the first {...} block.
func fnBody(src []byte) []byte {
	start := bytes.IndexByte(src, '{')
	if start < 0 {
		return nil
	}
	depth := 0
	for i := start; i < len(src); i++ {
		switch src[i] {
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				return src[start : i+1]
			}
		}
	}
	return src[start:]
}

func versionString(body []byte, withRevision bool) string {
	kv := map[string]string{}
	for _, m := range versionKVRe.FindAllSubmatch(body, -1) {
		kv[string(m[1])] = string(m[2])
	}
	if kv["major"] == "" {
		return ""
	}
	parts := []string{kv["major"], kv["minor"]}
	if withRevision {
		parts = append(parts, kv["revision"])
	}
	parts = append(parts, kv["patch"])
	s := strings.Join(parts, ".")
	if kv["stability"] != "" {
		s += "-" + kv["stability"]
		if kv["number"] != "" {
			s += kv["number"]
		}
	}
	return s
}

// ParseAppliedPatches returns the patch names in app/etc/applied.patches.list
// that are applied and not reverted, sorted.
func ParseAppliedPatches(src []byte) []string {
	state := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(src))
	for sc.Scan() {
		line := sc.Text()
		m := supeeRe.FindString(line)
		if m == "" {
			continue
		}
		m = strings.ToUpper(strings.TrimPrefix(strings.ToUpper(m), "PATCH_"))
		state[m] = !strings.Contains(strings.ToUpper(line), "REVERTED")
	}
	var out []string
	for p, on := range state {
		if on {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

// ParsePHPVersion returns "8.2.29" from `php -v` or `php-fpm -v` output.
func ParsePHPVersion(out string) (string, error) {
	m := phpVersionRe.FindStringSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("no \"PHP x.y.z\" line in the -v output %q", units.FirstLine(out, 120))
	}
	return m[1] + "." + m[2] + "." + m[3], nil
}

// PHPSupportAsOf is when PHPSupportEnds was last checked against
// https://www.php.net/supported-versions.php.
const PHPSupportAsOf = "2026-11-01"

// PHPSupportEnds is the end of security support for each PHP branch (the
// date php.net lists; since 2024 branches end on 31 December). Override it
// with AuditOptions.PHPSupport when the table is out of date.
var PHPSupportEnds = map[string]time.Time{
	"5.6": date(2018, 12, 31),
	"7.0": date(2019, 1, 10),
	"7.1": date(2019, 12, 1),
	"7.2": date(2020, 11, 30),
	"7.3": date(2021, 12, 6),
	"7.4": date(2022, 11, 28),
	"8.0": date(2023, 11, 26),
	"8.1": date(2025, 12, 31),
	"8.2": date(2026, 12, 31),
	"8.3": date(2027, 12, 31),
	"8.4": date(2028, 12, 31),
	"8.5": date(2029, 12, 31),
}

func date(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 23, 59, 59, 0, time.UTC) }

// phpBranch returns "8.2" for "8.2.29".
func phpBranch(v string) string {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return v
	}
	return parts[0] + "." + parts[1]
}

// compareVersions compares dotted numeric versions ("1.9.4.5" < "1.9.4.10").
func compareVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) || i < len(bs); i++ {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(strings.SplitN(as[i], "-", 2)[0])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(strings.SplitN(bs[i], "-", 2)[0])
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}
