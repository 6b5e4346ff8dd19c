package builder

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mageflow/mageflow/test/fixtures"
)

// requireTools fails (never skips) with the install command when a tool the
// test needs is missing.
func requireTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			pkg := map[string]string{"php": "php-cli php-xml", "composer": "composer", "node": "nodejs"}[tool]
			t.Fatalf("%s not found on PATH: run `apt-get install %s` (the Makefile's test-deps target does this)", tool, pkg)
		}
	}
}

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// checkFixtureBuilt asserts the outputs of the magento2 recipe on the fixture.
func checkFixtureBuilt(t *testing.T, dir string) {
	t.Helper()
	for _, f := range []string{
		"vendor/autoload.php",
		"vendor/mageflow-fixture/release-marker/src/Marker.php",
		"generated/metadata/global.php",
		"generated/code/Vendor/Module/Block/PageFactory.php",
		"pub/static/deployed_version.txt",
		"pub/static/frontend/Vendor/theme/en_US/css/styles.css",
		"pub/static/frontend/Vendor/theme/de_DE/js-translation.json",
		"pub/static/frontend/Vendor/base/de_DE/Vendor_Module/js/greeting.js",
	} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Errorf("build output missing: %v", err)
			continue
		}
		if uid := fileUID(st); uid != os.Getuid() {
			t.Errorf("%s owned by uid %d, want the caller's %d", f, uid, os.Getuid())
		}
	}
}

func TestLocalBuildsMagento2Fixture(t *testing.T) {
	requireTools(t, "php", "composer")
	dir := fixtures.Magento2App(t)
	steps, err := Plan(Spec{Type: TypeMagento2, Jobs: 2}, dir)
	if err != nil {
		t.Fatal(err)
	}
	var log syncBuffer
	var progress []string
	durations, err := Execute(context.Background(), NewLocal(), dir, steps, &log, func(i, n int, name string) {
		progress = append(progress, name)
		if n != len(steps) {
			t.Errorf("progress total %d, want %d", n, len(steps))
		}
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if len(durations) != len(steps) || len(progress) != len(steps) {
		t.Fatalf("durations %v progress %v", durations, progress)
	}
	for i, d := range durations {
		if d.Name != steps[i].Name || d.ExitCode != 0 || d.Seconds <= 0 {
			t.Errorf("duration %d = %+v", i, d)
		}
	}
	checkFixtureBuilt(t, dir)
	if !strings.Contains(log.String(), "==> [3/3] static content deploy") {
		t.Errorf("log lacks step header:\n%s", log.String())
	}
}

func TestExecuteStepErrorCarriesTail(t *testing.T) {
	dir := t.TempDir()
	steps := []Step{
		{Name: "ok", Dir: ".", Script: "echo first"},
		{Name: "noisy failure", Dir: ".", Script: "for i in $(seq 1 100); do echo line $i; done; echo boom >&2; exit 3"},
		{Name: "never", Dir: ".", Script: "touch never-ran"},
	}
	var log syncBuffer
	durations, err := Execute(context.Background(), NewLocal(), dir, steps, &log, nil)
	var se *StepError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v, want *StepError", err)
	}
	if se.Step != "noisy failure" || se.ExitCode != 3 || len(se.Tail) != tailLines {
		t.Fatalf("StepError = %+v", se)
	}
	if se.Tail[len(se.Tail)-1] != "boom" || se.Tail[0] != "line 72" {
		t.Errorf("tail = %q", se.Tail)
	}
	if msg := se.Error(); !strings.Contains(msg, `"noisy failure"`) || !strings.Contains(msg, "exit code 3") || !strings.Contains(msg, "boom") {
		t.Errorf("Error() = %q", msg)
	}
	if len(durations) != 2 || durations[1].ExitCode != 3 {
		t.Errorf("durations = %+v", durations)
	}
	if _, err := os.Stat(filepath.Join(dir, "never-ran")); err == nil {
		t.Error("step after the failure ran")
	}
}

func TestLocalEnvIsMinimal(t *testing.T) {
	t.Setenv("MAGEFLOW_SECRET_FROM_PARENT", "leak")
	dir := t.TempDir()
	var log syncBuffer
	code, err := NewLocal().Run(context.Background(), dir, Step{Name: "env", Dir: ".", Script: "env", Env: map[string]string{"BUILD_FLAG": "on"}}, &log)
	if err != nil || code != 0 {
		t.Fatalf("%d %v", code, err)
	}
	out := log.String()
	if strings.Contains(out, "MAGEFLOW_SECRET_FROM_PARENT") || !strings.Contains(out, "BUILD_FLAG=on") || !strings.Contains(out, "PATH=/usr/local/sbin") {
		t.Errorf("env:\n%s", out)
	}
	if _, err := NewLocal().Run(context.Background(), dir, Step{Name: "x", Dir: "nope", Script: "true"}, &log); err == nil {
		t.Error("missing step dir accepted")
	}
}

func TestLocalCancelKillsProcessGroup(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var log syncBuffer
	// The child ignores SIGTERM and writes its pid: cancellation must still
	// kill it, not only the shell.
	step := Step{Name: "hang", Dir: ".", Script: "sh -c 'trap \"\" TERM; echo $$ > child.pid; sleep 300' & wait"}
	done := make(chan error, 1)
	go func() {
		_, err := NewLocal().Run(ctx, dir, step, &log)
		done <- err
	}()
	pidFile := filepath.Join(dir, "child.pid")
	for i := 0; i < 100; i++ {
		if b, _ := os.ReadFile(pidFile); len(b) > 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	b, _ := os.ReadFile(pidFile)
	pid := strings.TrimSpace(string(b))
	if pid == "" {
		t.Fatal("child never started")
	}
	// Give the kernel a moment to reap, then the process must be gone.
	for i := 0; i < 50; i++ {
		if _, err := os.Stat("/proc/" + pid); err != nil {
			return
		}
		if st, _ := os.ReadFile("/proc/" + pid + "/stat"); strings.Contains(string(st), ") Z ") {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("child %s survived cancellation", pid)
}

const sampleJS = `/*! licence: keep me */
// a comment with 'quotes' and /regex/
var re = /[/*]+\/x/g, half = 10 / 2 / 1;   /* block */
var s = "http://not-a-comment /* nor this */", t2 = 'it\'s';
function f(a, b) {
    return a
        + b;
}
var tpl = ` + "`sum ${f(1, 2)} and ${`nested ${1 + 1}`} // kept`" + `;
var n = 1 .toString(), m = 5 - -2, p = 5 + +3, i = 0;
i++
i++
var obj = { a: 1 }; var isIn = 'a' in obj;
var typeRe = typeof /x/ === 'object';
if (re.test('//**')) { console.log('match') }
console.log(re.source, half, s, t2, f(2, 3), tpl, n, m, p, i, isIn, typeRe);
console.log("line2".replace(/\d/, function (d) { return d * 2; }));
`

const sampleCSS = `/*! keep licence */
/* theme colours */
body  ,  html {
    color : #333 ;
    background: url(data:image/png;base64,AAAA//8=) no-repeat;
    font-family: "Open  Sans", sans-serif;
}
a :hover { width: calc(100% - 2px); }
`

func TestMagento1RecipeMinifiesSafely(t *testing.T) {
	requireTools(t, "php", "node")
	dir := tree(t, map[string]string{
		"app/Mage.php":                         "<?php",
		"js/lib/sample.js":                     sampleJS,
		"js/broken.js":                         "var x = 'unterminated\n",
		"skin/frontend/base/default/css/a.css": sampleCSS,
		"skin/frontend/base/default/img/x.png": "\x89PNG not really",
	})
	if err := os.Chmod(filepath.Join(dir, "js/lib/sample.js"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "js/lib"), 0o700); err != nil {
		t.Fatal(err)
	}
	steps, err := Plan(Spec{Type: TypeMagento1}, dir)
	if err != nil {
		t.Fatal(err)
	}
	var log syncBuffer
	if _, err := Execute(context.Background(), NewLocal(), dir, steps, &log, nil); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if !strings.Contains(log.String(), "kept js/broken.js unchanged") {
		t.Errorf("broken file not reported:\n%s", log.String())
	}

	minJS, err := os.ReadFile(filepath.Join(dir, "js.min/lib/sample.js"))
	if err != nil {
		t.Fatal(err)
	}
	if len(minJS) >= len(sampleJS) || strings.Contains(string(minJS), "a comment") || !strings.Contains(string(minJS), "/*! licence") {
		t.Errorf("js not minified:\n%s", minJS)
	}
	// Same behaviour: node prints the same for original and minified.
	orig := runNode(t, filepath.Join(dir, "js/lib/sample.js"))
	got := runNode(t, filepath.Join(dir, "js.min/lib/sample.js"))
	if orig != got {
		t.Errorf("minified JS behaves differently:\norig: %s\nmin:  %s\ncode:\n%s", orig, got, minJS)
	}

	minCSS, err := os.ReadFile(filepath.Join(dir, "skin.min/frontend/base/default/css/a.css"))
	if err != nil {
		t.Fatal(err)
	}
	wantCSS := "/*! keep licence */\nbody,html{color : #333;background: url(data:image/png;base64,AAAA//8=) no-repeat;font-family: \"Open  Sans\",sans-serif}a :hover{width: calc(100% - 2px)}\n"
	if string(minCSS) != wantCSS {
		t.Errorf("css =\n%q\nwant\n%q", minCSS, wantCSS)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "skin.min/frontend/base/default/img/x.png")); string(b) != "\x89PNG not really" {
		t.Error("binary file not copied verbatim")
	}
	for p, want := range map[string]os.FileMode{"js/lib": 0o755, "js/lib/sample.js": 0o644, "js.min/lib/sample.js": 0o644, "skin.min": 0o755} {
		st, err := os.Stat(filepath.Join(dir, p))
		if err != nil || st.Mode().Perm() != want {
			t.Errorf("%s mode = %v (%v), want %v", p, st.Mode().Perm(), err, want)
		}
	}
}

func runNode(t *testing.T, file string) string {
	t.Helper()
	out, err := exec.Command("node", file).CombinedOutput()
	if err != nil {
		t.Fatalf("node %s: %v\n%s", file, err, out)
	}
	return string(out)
}

func fileUID(st os.FileInfo) int {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return int(s.Uid)
	}
	return -1
}
