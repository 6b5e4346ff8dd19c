package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mageflow/mageflow/internal/build/catalog"
	"github.com/mageflow/mageflow/internal/build/release"
	"github.com/mageflow/mageflow/internal/build/store"
	"github.com/mageflow/mageflow/internal/platform/config"
	"github.com/mageflow/mageflow/internal/platform/units"
)

// testConfig writes a config with one app, one host and a local artifact
// store in a temporary directory. Its Temporal address answers nothing:
// a test that reaches a dial would fail there, never against a real server.
func testConfig(t *testing.T) (path, artifacts string) {
	t.Helper()
	dir := t.TempDir()
	artifacts = filepath.Join(dir, "artifacts")
	yml := `temporal: {address: 127.0.0.1:1, namespace: default, ui_url: http://ui.test:8233}
artifacts: {dir: ` + artifacts + `}
secrets: {dir: ` + filepath.Join(dir, "secrets") + `}
hosts:
  web1: {root: ` + filepath.Join(dir, "www") + `}
apps:
  shop:
    repo: file:///srv/git/shop.git
    type: magento2
    build: {builder: local}
    environments:
      production: {branch: main, hosts: [web1]}
`
	path = filepath.Join(dir, "mageflow.yaml")
	if err := os.WriteFile(path, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(path, false); err != nil {
		t.Fatalf("the test config does not load: %v", err)
	}
	return path, artifacts
}

func run(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

// Wrong or missing flags are usage errors: exit 2, the command named, the
// fix in the message, and no config or server needed to say so.
func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"nope"}, `mageflow: unknown command "nope"`},
		{[]string{"build", "--app", "shop"}, "mageflow build: --app and --ref are required"},
		{[]string{"build", "--app", "shop", "--ref", "main", "extra"}, `mageflow build: unexpected argument "extra"`},
		{[]string{"build", "--no-such-flag"}, "flag provided but not defined: -no-such-flag"},
		{[]string{"releases"}, "mageflow releases: --app is required"},
		{[]string{"deploy", "--app", "shop"}, "mageflow deploy: --app and --env are required, e.g. mageflow deploy"},
		{[]string{"rollback", "--env", "production"}, "mageflow rollback: --app and --env are required, e.g. mageflow rollback"},
		{[]string{"deploy", "--app", "shop", "--env", "production", "--force"}, "--force applies to rollback only"},
		{[]string{"deploy", "--to", "1-abcdef0"}, "flag provided but not defined: -to"},
		{[]string{"approve", "--app", "shop"}, "--app and --env are required (or --group for an image refresh)"},
		{[]string{"reject", "--app", "shop", "--env", "production"}, "mageflow reject: say why with --reason"},
		{[]string{"harden"}, "mageflow harden: --host is required"},
		{[]string{"refresh", "--group", "web", "--batch", "0"}, "--batch must be at least 1"},
		{[]string{"refresh", "--batch", "x"}, `invalid value "x" for flag -batch`},
		{[]string{"schedule"}, "use `mageflow schedule apply`"},
		{[]string{"schedule", "delete"}, "use `mageflow schedule apply`"},
		{[]string{"schedule", "list", "now"}, `mageflow schedule: unexpected argument "now"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errs := run(tc.args...)
			if code != 2 || !strings.Contains(errs, tc.want) || out != "" {
				t.Fatalf("exit %d, stdout %q, stderr:\n%s\nwant exit 2, nothing on stdout, stderr containing %q", code, out, errs, tc.want)
			}
		})
	}
}

func TestNoArgumentsPrintsUsageAndHelpDoesNotFail(t *testing.T) {
	code, _, errs := run()
	if code != 2 || !strings.Contains(errs, "usage: mageflow <command>") {
		t.Fatalf("no arguments: exit %d, stderr %q", code, errs)
	}
	for _, c := range commands() {
		if !strings.Contains(errs, "  "+c.name+" ") {
			t.Errorf("usage does not list %s", c.name)
		}
	}
	if code, _, _ := run("help"); code != 0 {
		t.Errorf("mageflow help: exit %d, want 0", code)
	}
	if code, _, errs := run("schedule", "-h"); code != 0 || !strings.Contains(errs, "schedule apply") {
		t.Errorf("mageflow schedule -h: exit %d, stderr %q", code, errs)
	}
}

func TestVersion(t *testing.T) {
	if code, out, _ := run("version"); code != 0 || out != "mageflow "+Version+"\n" {
		t.Fatalf("version: exit %d, %q", code, out)
	}
}

// Checks on the config run before any dial, so they fail fast and the
// same with no Temporal server.
func TestConfigChecksComeBeforeTheServer(t *testing.T) {
	cfg, _ := testConfig(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"build", "--app", "blog", "--ref", "main"}, `"blog"`},
		{[]string{"releases", "--app", "blog"}, `"blog"`},
		{[]string{"harden", "--host", "web9"}, `host "web9" is not declared under hosts: in ` + cfg},
		{[]string{"harden", "--host", "web1", "--app", "blog"}, `"blog"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, _, errs := run(append(tc.args, "--config", cfg)...)
			if code != 1 || !strings.Contains(errs, tc.want) || strings.Contains(errs, "127.0.0.1:1") {
				t.Fatalf("exit %d, stderr:\n%s\nwant exit 1 naming %s before any dial", code, errs, tc.want)
			}
		})
	}
}

func putReleases(t *testing.T, dir string, metas ...release.Meta) {
	t.Helper()
	st, err := store.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range metas {
		if err := catalog.Put(context.Background(), st, &metas[i]); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReleasesWithNoneSaysHowToBuild(t *testing.T) {
	cfg, _ := testConfig(t)
	code, out, errs := run("releases", "--app", "shop", "--config", cfg)
	if code != 0 || out != "no releases of shop yet: run mageflow build --app shop --ref BRANCH\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, out, _ = run("releases", "--app", "shop", "--json", "--config", cfg)
	if code != 0 || out != "[]\n" {
		t.Fatalf("--json with no releases: exit %d, %q; want an empty array for scripts", code, out)
	}
}

func TestReleasesListsNewestFirst(t *testing.T) {
	cfg, artifacts := testConfig(t)
	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	long := "Add the " + strings.Repeat("very ", 20) + "long feature\n\nbody text"
	old := release.Meta{ID: "1-abcdef0", App: "shop", Commit: "abcdef0123", ShortCommit: "abcdef0", Branch: "main", BuildNumber: 1,
		Message: "First\nmore", Author: "ann", CommittedAt: at, Artifact: release.Artifact{Size: 2048}}
	newer := release.Meta{ID: "2-1234567", App: "shop", Commit: "1234567890", ShortCommit: "1234567", Branch: "main", BuildNumber: 2,
		Message: long, Author: "bob", CommittedAt: at.Add(time.Hour), Artifact: release.Artifact{Size: 3 << 20}}
	putReleases(t, artifacts, old, newer)

	code, out, errs := run("releases", "--app", "shop", "--json", "--config", cfg)
	if code != 0 {
		t.Fatalf("exit %d, stderr %s", code, errs)
	}
	var got []release.Meta
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("--json is not a JSON array of releases: %v\n%s", err, out)
	}
	if len(got) != 2 || got[0].ID != newer.ID || got[1].ID != old.ID || got[0].Message != long {
		t.Fatalf("--json = %+v, want [%s %s] with the full message", got, newer.ID, old.ID)
	}

	code, out, errs = run("releases", "--app", "shop", "--config", cfg)
	if code != 0 {
		t.Fatalf("exit %d, stderr %s", code, errs)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "RELEASE") || !strings.HasPrefix(lines[1], newer.ID) || !strings.HasPrefix(lines[2], old.ID) {
		t.Fatalf("table:\n%s", out)
	}
	if !strings.HasSuffix(lines[1], units.FirstLine(long, messageWidth)) || !strings.HasSuffix(lines[2], "First") {
		t.Errorf("the MESSAGE column is not each commit's first line:\n%s", out)
	}
	if strings.Contains(out, "body text") {
		t.Errorf("the table shows more than the first line:\n%s", out)
	}
}

func TestFirstLineCutsAtTheLimit(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"  fix it\nbody", "fix it"},
		{strings.Repeat("x", messageWidth), strings.Repeat("x", messageWidth)},
		{strings.Repeat("x", messageWidth+1), strings.Repeat("x", messageWidth-3) + "..."},
	} {
		if got := units.FirstLine(tc.in, messageWidth); got != tc.want || len(got) > messageWidth {
			t.Errorf("firstLine(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestPrintReleaseAndDeploy(t *testing.T) {
	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	m := &release.Meta{ID: "2-1234567", App: "shop", Commit: "1234567890", ShortCommit: "1234567", Branch: "main", BuildNumber: 2,
		Message: "Ship it\nbody", Author: "bob", AuthorEmail: "bob@example.com", CommittedAt: at,
		Steps: []release.StepDuration{{Name: "composer", Seconds: 1.25}}}
	var b bytes.Buffer
	printRelease(&b, m, "http://ui/x")
	for _, want := range []string{"release 2-1234567 of shop\n", "commit        1234567890 (1234567)", "author        bob <bob@example.com>",
		"message       Ship it\n", "steps         composer 1.2s", "workflow      http://ui/x"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("printRelease lacks %q:\n%s", want, b.String())
		}
	}
	fin := at.Add(1500 * time.Millisecond)
	d := &catalog.Deploy{Kind: "deploy", App: "shop", Env: "production", Outcome: "succeeded", ReleaseID: "2-1234567",
		PreviousRelease: "1-abcdef0", StartedAt: at, FinishedAt: &fin}
	b.Reset()
	printDeploy(&b, d, "http://ui/y")
	for _, want := range []string{"deploy of shop to production: succeeded\n", "release   2-1234567 (previous 1-abcdef0)", "duration  1.5s", "workflow  http://ui/y"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("printDeploy lacks %q:\n%s", want, b.String())
		}
	}
}

func TestWorkflowURLUsesTheConfigsUIAndNamespace(t *testing.T) {
	cfg := &config.Config{}
	cfg.Temporal.UIURL, cfg.Temporal.Namespace = "http://ui:8233/", "prod"
	if got, want := WorkflowURL(cfg, "build/shop/abc", "r1"), "http://ui:8233/namespaces/prod/workflows/build%2Fshop%2Fabc/r1/history"; got != want {
		t.Fatalf("WorkflowURL = %q, want %q", got, want)
	}
}
