package units

import "testing"

func TestBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 22528: "22.0 KiB", 5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestFirstLine(t *testing.T) {
	for _, tc := range []struct {
		in   string
		max  int
		want string
	}{
		{"  fix checkout\n\nlong body", 0, "fix checkout"},
		{"windows\r\nbody", 0, "windows"},
		{"abcdefghij", 8, "abcde..."},
		{"abcdefgh", 8, "abcdefgh"},
		{"ünïcödé-ünïcödé", 10, "ünïcödé..."},
	} {
		if got := FirstLine(tc.in, tc.max); got != tc.want {
			t.Errorf("FirstLine(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
		}
	}
}

func TestTruncate(t *testing.T) {
	if got := Truncate("short", 10); got != "short" {
		t.Errorf("got %q", got)
	}
	if got := Truncate("abcdef", 3); got != "abc…" {
		t.Errorf("got %q", got)
	}
	// "é" is two bytes: a cut inside it moves back to its start.
	if got := Truncate("aé", 2); got != "a…" {
		t.Errorf("got %q, want a cut on a character boundary", got)
	}
}

func TestEditDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"abc", "", 3}, {"", "ab", 2}, {"kitten", "sitting", 3},
		{"google-analytics.com", "google-analytics.cm", 1}, {"keep_releases", "keep_release", 1},
	} {
		if got := EditDistance(c.a, c.b); got != c.want {
			t.Errorf("EditDistance(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}
