package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"

	"github.com/mageflow/mageflow/internal/platform/codec"
)

// temporalCLI is the pinned Temporal CLI that `make test` installs.
func temporalCLI(t *testing.T) string {
	t.Helper()
	cli, err := filepath.Abs(filepath.Join("..", "..", "..", "bin", "temporal"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cli); err != nil {
		t.Skipf("the Web UI test needs the Temporal CLI at %s, which `make test` installs (`make bin/temporal`): %v", cli, err)
	}
	return cli
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// webUICodecSettings are the Web UI's codec settings as its codec dialog
// stores them in localStorage (ui-server v2.42, the UI of the pinned CLI):
// the dialog's "override" switch, the endpoint and "include cross-origin
// credentials". docs/operations.md (Web UI codec) tells operators the same.
func webUICodecSettings(endpoint string) string {
	ep, _ := json.Marshal(endpoint)
	return `localStorage.setItem("overrideRemoteCodecConfiguration", "true");
		localStorage.setItem("endpoint", ` + strconv.Quote(string(ep)) + `);
		localStorage.setItem("includeCredentials", "true");
		localStorage.setItem("passAccessToken", "false");`
}

// TestBrowserWebUICodec is finding 2 as an operator and an outsider see it:
// a workflow's input is encrypted in Temporal; the Temporal Web UI (the
// pinned dev server's) decodes it through mageflow's /codec with the
// session cookie. Logged in to mageflow in the same browser, the operator
// reads the plaintext on the workflow page; a browser that is not logged in
// gets 401 from the codec and the page shows no plaintext. It also checks,
// from a page of the UI's origin, that the SameSite=Strict session cookie
// goes along with fetch(…, {credentials: "include"}) to the other port
// (same site: ports do not count).
func TestBrowserWebUICodec(t *testing.T) {
	cli := temporalCLI(t)
	bin := chromiumPath(t)
	root, stop := context.WithTimeout(context.Background(), 4*time.Minute)
	defer stop()

	c := testCodec(t)
	uiURL := "http://127.0.0.1:" + freePort(t)
	logs := &lockedBuffer{}
	srv := httptest.NewServer(New(Options{
		Codec: codec.Handler(c, codec.UIOrigins(uiURL)), CodecOrigins: codec.UIOrigins(uiURL),
		Auth:   Auth{Token: secretOf(testToken), ProtectViews: true},
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
	}))
	defer srv.Close()
	endpoint := srv.URL + "/codec"

	dev, err := testsuite.StartDevServer(root, testsuite.DevServerOptions{
		ExistingPath: cli, EnableUI: true, UIPort: strings.TrimPrefix(uiURL, "http://127.0.0.1:"), LogLevel: "error",
		ClientOptions: &client.Options{Namespace: "default", DataConverter: codec.DataConverter(c)},
		ExtraArgs:     []string{"--ui-codec-endpoint", endpoint},
	})
	if err != nil {
		t.Fatalf("starting the Temporal dev server with its UI: %v", err)
	}
	defer func() { _ = dev.Stop() }()
	const wfID = "card-check"
	// No worker: the workflow waits with its encrypted input in the history.
	if _, err := dev.Client().ExecuteWorkflow(root, client.StartWorkflowOptions{ID: wfID, TaskQueue: "nobody-polls"}, "CardCheck", cardSecret); err != nil {
		t.Fatal(err)
	}
	requireEncryptedAtRest(t, root, dev.FrontendHostPort(), wfID)

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true), chromedp.WindowSize(1280, 1000), chromedp.WSURLReadTimeout(30*time.Second))
	alloc, cancelAlloc := chromedp.NewExecAllocator(root, opts...)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	if err := chromedp.Do(browser); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	page := uiURL + "/namespaces/default/workflows/" + wfID

	for _, who := range []string{"operator", "anonymous"} {
		t.Run(who, func(t *testing.T) {
			tab, closeTab := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
			defer closeTab()
			// The first action creates the tab: on tab itself, so that it
			// lives as long as tab, not as long as one step's timeout.
			if err := chromedp.Do(tab); err != nil {
				t.Fatal(err)
			}
			step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
				t.Helper()
				ctx, cancel := context.WithTimeout(tab, 45*time.Second)
				defer cancel()
				if err := chromedp.Do(ctx, actions...); err != nil {
					t.Fatalf("%s: %v\nserver log:\n%s", what, err, logs)
				}
			}
			if who == "operator" {
				step("logging in to mageflow", chromedp.Navigate(srv.URL+"/login"),
					chromedp.SendKeys(chromedp.CSS(`input[name=name]`), "Dana"),
					chromedp.SendKeys(chromedp.CSS(`input[name=password]`), testToken),
					chromedp.Click(chromedp.CSS(`form.login button[type=submit]`)),
					chromedp.WaitVisible(chromedp.CSS(`header nav span`)))
			}
			step("opening the Web UI", chromedp.Navigate(uiURL+"/namespaces/default/workflows"))
			step("setting the UI's codec options", chromedp.Evaluate[chromedp.Void](webUICodecSettings(endpoint)))
			direct := codecFetch(t, tab, endpoint, c)
			step("opening the workflow in the Web UI", chromedp.Navigate(page))
			shown := pollPageText(tab, func(text string) bool {
				if who == "operator" {
					return strings.Contains(text, "4111111111111111")
				}
				return strings.Contains(text, "CardCheck") && strings.Contains(logs.String(), `msg="codec request refused" status=401`)
			})
			png, err := chromedp.Run(tab, chromedp.CaptureScreenshot())
			if err == nil {
				saveScreenshot(t, "webui-codec-"+who+".png", png)
			}
			if who == "operator" {
				if direct != http.StatusOK {
					t.Errorf("fetch with credentials from the UI origin while logged in: %d (is the SameSite=Strict cookie sent to the other port?)", direct)
				}
				if !strings.Contains(shown, "4111111111111111") {
					t.Errorf("the logged-in operator does not see the decoded input:\n%.2000s\nserver log:\n%s", shown, logs)
				}
				return
			}
			if direct != http.StatusUnauthorized {
				t.Errorf("fetch with credentials from the UI origin, not logged in: %d, want 401", direct)
			}
			if strings.Contains(shown, "4111") {
				t.Errorf("an anonymous browser sees the plaintext:\n%.2000s", shown)
			}
			// What it sees instead: the payload as stored (its encoding
			// "binary/encrypted", base64) and the UI's codec error.
			if !strings.Contains(shown, base64.StdEncoding.EncodeToString([]byte(codec.EncodingEncrypted))) || !strings.Contains(shown, "Codec Server could not connect") {
				t.Errorf("the anonymous page shows neither the encrypted payload nor the codec error:\n%.2000s", shown)
			}
			if !strings.Contains(logs.String(), `msg="codec request refused" status=401`) {
				t.Errorf("the UI never got a 401 from the codec (did it call it?):\n%s", logs)
			}
		})
	}
}

// codecFetch posts the encrypted payload to the codec from the current page
// (the UI's origin) as the UI does, with credentials, and returns the
// status.
func codecFetch(t *testing.T, tab context.Context, endpoint string, c *codec.Codec) int {
	t.Helper()
	body := string(encryptedHistory(t, c))
	js := `fetch(` + strconv.Quote(endpoint+"/decode") + `, {method: "POST", credentials: "include",
		headers: {"Content-Type": "application/json", "X-Namespace": "default"}, body: ` + strconv.Quote(body) + `})
		.then(r => r.status, () => -1)`
	ctx, cancel := context.WithTimeout(tab, 20*time.Second)
	defer cancel()
	status, err := chromedp.Run(ctx, chromedp.Evaluate[int](js, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("fetch from the UI origin: %v", err)
	}
	return status
}

// pollPageText reads the page's text until done says it shows what the
// test waits for (or 45 s pass), then once more after the UI had two more
// seconds to finish decoding, and returns it.
func pollPageText(tab context.Context, done func(string) bool) string {
	read := func() string {
		ctx, cancel := context.WithTimeout(tab, 5*time.Second)
		defer cancel()
		s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
		return s
	}
	deadline := time.Now().Add(45 * time.Second)
	for time.Now().Before(deadline) && !done(read()) {
		time.Sleep(500 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	return read()
}

// requireEncryptedAtRest reads the workflow's input as Temporal stores it,
// without the codec: it must be encrypted, or the test proves nothing.
func requireEncryptedAtRest(t *testing.T, ctx context.Context, hostPort, wfID string) {
	t.Helper()
	raw, err := client.DialContext(ctx, client.Options{HostPort: hostPort, Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	it := raw.GetWorkflowHistory(ctx, wfID, "", false, 0)
	ev, err := it.Next()
	if err != nil {
		t.Fatal(err)
	}
	in := ev.GetWorkflowExecutionStartedEventAttributes().GetInput().GetPayloads()
	if len(in) != 1 || strings.Contains(string(in[0].GetData()), "4111") || string(in[0].GetMetadata()["encoding"]) != codec.EncodingEncrypted {
		t.Fatalf("the workflow input is not encrypted at rest: %v", in)
	}
}
