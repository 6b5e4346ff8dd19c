package cli

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// readmeUsage returns the mageflow command lines of the README's "Using
// it" block, comments removed, with each optional "[...]" part both left
// out and put in.
func readmeUsage(t *testing.T) [][]string {
	t.Helper()
	b, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var lines [][]string
	inBlock := false
	opt := regexp.MustCompile(`\s*\[([^\]]+)\]`)
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "## ") {
			inBlock = l == "## Using it"
			continue
		}
		l, _, _ = strings.Cut(l, "#")
		if !inBlock || !strings.HasPrefix(l, "./bin/mageflow ") {
			continue
		}
		bare := opt.ReplaceAllString(l, "")
		full := opt.ReplaceAllString(l, " $1")
		for _, v := range []string{bare, full} {
			f := strings.Fields(v)[1:]
			lines = append(lines, f)
		}
	}
	if len(lines) < 8 {
		t.Fatalf("found %d usage lines in README.md's \"Using it\" block; the test reads the wrong section", len(lines))
	}
	return lines
}

// Every mageflow line the README shows parses: run against a config file
// that does not exist, each one gets past flag parsing and stops at loading
// the config (exit 1, naming the file), never at a usage error (exit 2).
func TestReadmeUsageLinesParse(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "absent.yaml")
	for _, args := range readmeUsage(t) {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			code := Main(append(args, "--config", missing), &out, &errb)
			if code != 1 || !strings.Contains(errb.String(), missing) {
				t.Fatalf("exit %d, want 1 with a config error naming %s; stderr:\n%s", code, missing, errb.String())
			}
		})
	}
}

// Every command answers -h with its flags and exit 0.
func TestEveryCommandHasHelp(t *testing.T) {
	for _, c := range commands() {
		if c.name == "version" {
			continue
		}
		var out, errb bytes.Buffer
		if code := Main([]string{c.name, "-h"}, &out, &errb); code != 0 {
			t.Errorf("mageflow %s -h: exit %d; stderr:\n%s", c.name, code, errb.String())
		}
	}
}

// A refresh without --image is what the README shows: the workflow takes an
// image of a running instance. Only --group is required.
func TestRefreshNeedsOnlyGroup(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main([]string{"refresh", "--batch", "1"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "--group is required") {
		t.Fatalf("refresh without --group: exit %d, stderr %q", code, errb.String())
	}
}
