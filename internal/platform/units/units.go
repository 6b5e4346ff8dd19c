// Package units formats quantities for people (CLI, dashboard, workflow
// details). Pure functions, safe to call from workflow code.
package units

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Bytes formats n with binary prefixes: "512 B", "22.0 KiB", "1.4 GiB".
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// FirstLine is the first line of s (a commit message's subject), trimmed,
// cut to at most max runes with "..." when longer; max <= 0 keeps it whole.
// It never splits a UTF-8 character.
func FirstLine(s string, max int) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = strings.TrimSpace(s[:i])
	}
	if max <= 0 || utf8.RuneCountInString(s) <= max {
		return s
	}
	return string([]rune(s)[:max-3]) + "..."
}

// Truncate cuts s to at most n bytes, on a character boundary, and marks
// the cut with "…" (for logs and error messages quoting untrusted input).
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// EditDistance is the Levenshtein distance between a and b, in bytes: how
// close a mistyped config key is to a known one, or a script host to a
// well-known domain it imitates.
func EditDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
