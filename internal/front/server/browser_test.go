package server

import (
	"bytes"
	"context"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mageflow/mageflow/internal/build/catalog"
)

// lockedBuffer collects the log of a server running in other goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// chromiumPath finds Debian's chromium, which `make deps` installs.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Fatal("chromium not found: the browser test needs Debian's chromium; run `apt-get install chromium` (make deps installs it)")
	return ""
}

// saveScreenshot keeps every screenshot as a test artifact: in
// $TEST_ARTIFACTS_DIR, else var/test-artifacts/screenshots (ignored by git).
// With MAGEFLOW_UPDATE_SCREENSHOTS=1 it also refreshes the committed ones in
// testdata/screenshots (do that when the UI changes), so an ordinary run
// leaves the tree clean.
func saveScreenshot(t *testing.T, name string, png []byte) {
	t.Helper()
	dir := os.Getenv("TEST_ARTIFACTS_DIR")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "var", "test-artifacts", "screenshots")
	}
	dirs := []string{dir}
	if os.Getenv("MAGEFLOW_UPDATE_SCREENSHOTS") != "" {
		dirs = append(dirs, filepath.Join("testdata", "screenshots"))
	}
	for _, dir := range dirs {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBrowserRollback drives the real handler in headless Chromium, the way
// an operator on call would: log in, check what production runs, press
// Rollback, read the flash, and reload until the environment shows the
// previous release and the history shows the rollback succeeded. It runs on
// a desktop window and on a 390×844 phone viewport, where the tables must
// collapse into cards without horizontal scrolling.
func TestBrowserRollback(t *testing.T) {
	bin := chromiumPath(t)
	// One bound for the whole test, browser included: nothing here may hang
	// a CI run.
	root, stop := context.WithTimeout(context.Background(), 3*time.Minute)
	defer stop()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.NoSandbox, // we run as root in CI
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.WindowSize(1280, 900),
		chromedp.WSURLReadTimeout(30*time.Second),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(root, opts...)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	if err := chromedp.Do(browser); err != nil {
		t.Fatalf("starting %s: %v (is chromium working? try `%s --headless --no-sandbox --dump-dom about:blank`)", bin, err, bin)
	}

	for _, vp := range []struct {
		name   string
		w, h   int64
		mobile bool
	}{
		{"desktop", 1280, 900, false},
		{"phone", 390, 844, true},
	} {
		t.Run(vp.name, func(t *testing.T) {
			fd := sampleDeploys()
			now := time.Now().UTC().Truncate(time.Second)
			fd.envs[0].State.DeployedAt = now.Add(-20 * time.Minute)
			fd.history["shop/production"][0].StartedAt = now.Add(-22 * time.Minute)
			fin := now.Add(-20 * time.Minute)
			fd.history["shop/production"][0].FinishedAt = &fin
			fd.rollbackDelay = time.Second
			fd.done = make(chan struct{})
			logs := &lockedBuffer{}
			srv := httptest.NewServer(New(Options{
				Apps: testApps()[:1], Releases: sampleReleases(), Deploys: fd, UIBaseURL: testUI, Namespace: "shops",
				Auth: Auth{Token: secretOf(testToken), ProtectViews: true}, Logger: slog.New(slog.NewTextHandler(logs, nil)),
			}))
			defer srv.Close()

			// A fresh browser context per run: its own cookie jar, so the
			// phone run logs in again (cookies ignore the port).
			tab, closeTab := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
			defer closeTab()
			viewport := []chromedp.EmulateViewportOption{chromedp.EmulateScale(1)}
			if vp.mobile {
				viewport = append(viewport, chromedp.EmulatePortrait, chromedp.EmulateMobile)
			}
			if err := chromedp.Do(tab, chromedp.EmulateViewport(vp.w, vp.h, viewport...)); err != nil {
				t.Fatal(err)
			}
			step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
				t.Helper()
				ctx, cancel := context.WithTimeout(tab, 20*time.Second)
				defer cancel()
				if err := chromedp.Do(ctx, actions...); err != nil {
					t.Fatalf("%s: %v\nserver log:\n%s", what, err, logs)
				}
			}
			text := func(sel string) string {
				t.Helper()
				ctx, cancel := context.WithTimeout(tab, 10*time.Second)
				defer cancel()
				s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
				if err != nil {
					t.Fatalf("reading %s: %v", sel, err)
				}
				return strings.TrimSpace(s)
			}
			shot := func(name string) {
				t.Helper()
				ctx, cancel := context.WithTimeout(tab, 10*time.Second)
				defer cancel()
				png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
				if err != nil {
					t.Fatalf("screenshot %s: %v", name, err)
				}
				saveScreenshot(t, "dashboard-"+vp.name+"-"+name+".png", png)
			}
			const current = "#env-shop-production .current-release"

			// The dashboard is protected: the browser lands on the login form.
			step("opening the dashboard", chromedp.Navigate(srv.URL+"/"), chromedp.WaitVisible(chromedp.CSS(`input[name=password]`)))
			step("logging in",
				chromedp.SendKeys(chromedp.CSS(`input[name=name]`), "Dana"),
				chromedp.SendKeys(chromedp.CSS(`input[name=password]`), testToken),
				chromedp.Click(chromedp.CSS(`form.login button[type=submit]`)),
				chromedp.WaitVisible(chromedp.CSS(current)))
			if got := text(current); got != "12-3f9a2c1" {
				t.Fatalf("production shows %q as current, want 12-3f9a2c1", got)
			}
			if got := text("header nav span"); got != "Dana" {
				t.Errorf("logged-in user shown as %q", got)
			}
			shot("before")

			step("pressing Rollback",
				chromedp.Click(chromedp.CSS(`#env-shop-production form.rollback button[type=submit]`)),
				chromedp.WaitVisible(chromedp.CSS(`.flash`)))
			if got := text(".flash"); got != "Rollback of shop/production to the previous release started: rollback/shop/production" {
				t.Fatalf("flash %q", got)
			}
			if got := text(".flash a"); got != "rollback/shop/production" {
				t.Errorf("flash link %q", got)
			}
			shot("flash")

			// Reload like an operator would, until the switch shows.
			deadline := time.Now().Add(15 * time.Second)
			for {
				step("reloading", chromedp.Navigate(srv.URL+"/"), chromedp.WaitVisible(chromedp.CSS(current)))
				cur, outcome, kind := text(current), text("table.recent tbody tr:first-child .outcome"), text(`table.recent tbody tr:first-child td[data-label=Kind]`)
				if cur == "11-aaaaaaa" && outcome == catalog.OutcomeSucceeded && kind == "rollback" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("after 15 s production shows %q, newest deploy %s %s; want 11-aaaaaaa and a succeeded rollback", cur, kind, outcome)
				}
				time.Sleep(300 * time.Millisecond)
			}
			if running, err := chromedp.Run(tab, chromedp.Evaluate[bool](`document.querySelector('#env-shop-production .running') !== null`)); err != nil || running {
				t.Errorf("a running deploy is still shown (%v)", err)
			}
			shot("after")
			step("scrolling to the deploy history", chromedp.ScrollIntoView(chromedp.CSS("table.recent")))
			shot("history")

			// Cards, not a sideways-scrolling table, on a phone.
			ctx, cancel := context.WithTimeout(tab, 10*time.Second)
			defer cancel()
			layout, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]any](`({
				overflow: document.documentElement.scrollWidth - window.innerWidth,
				thead: getComputedStyle(document.querySelector('table.recent thead')).display,
				width: window.innerWidth})`))
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("layout at %dx%d: %v", vp.w, vp.h, layout)
			if layout["overflow"].(float64) > 0 {
				t.Errorf("page scrolls sideways by %v px", layout["overflow"])
			}
			if collapsed := layout["thead"] == "none"; collapsed != vp.mobile {
				t.Errorf("table header display %v at width %v", layout["thead"], layout["width"])
			}

			_, _, rb := fd.calls()
			if want := []RollbackRequest{{App: "shop", Env: "production", By: "Dana"}}; !slices.Equal(rb, want) {
				t.Errorf("rollbacks %+v, want %+v", rb, want)
			}
			select {
			case <-fd.done:
			case <-time.After(5 * time.Second):
				t.Error("the fake rollback never finished")
			}
			if !strings.Contains(logs.String(), "dashboard action") || !strings.Contains(logs.String(), "user=Dana") {
				t.Errorf("the rollback is not in the audit log:\n%s", logs)
			}
		})
	}
}
