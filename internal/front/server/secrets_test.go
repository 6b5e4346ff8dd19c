package server

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestLifecycleTokenAttack: an attacker probes /hooks/aws-lifecycle with
// tokens of every length, a prefix of the real token and the real token
// plus garbage; all 401 and nothing starts. The real token as the operator
// stores it (a file with a trailing newline) works, and the missing and the
// wrong header are told apart without saying anything about the token.
func TestLifecycleTokenAttack(t *testing.T) {
	const real = "lc-7f3a9e2b41d0"
	fl := &fakeLifecycle{}
	h := New(Options{Lifecycle: fl, LifecycleToken: secretOf(real + "\n"), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	call := func(auth string) (int, string) {
		req := httptest.NewRequest(http.MethodPost, "/hooks/aws-lifecycle", bytes.NewBufferString("{}"))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w.Code, w.Body.String()
	}
	probes := []string{"Bearer " + real[:5], "Bearer " + real + "x", "Bearer " + strings.ToUpper(real), "Basic " + real, real}
	for n := 1; n <= 40; n++ {
		probes = append(probes, "Bearer "+strings.Repeat("a", n))
	}
	for _, p := range probes {
		code, body := call(p)
		if code != http.StatusUnauthorized || strings.Contains(body, real) || strings.Contains(body, "length") {
			t.Errorf("probe %q: %d %s", p, code, body)
		}
	}
	if _, body := call(""); !strings.Contains(body, "missing bearer token") {
		t.Errorf("no header: %s", body)
	}
	if _, body := call("Bearer nope"); !strings.Contains(body, "wrong bearer token") {
		t.Errorf("wrong token: %s", body)
	}
	if len(fl.got) != 0 {
		t.Fatalf("a probe started a readiness run: %q", fl.got)
	}
	if code, body := call("Bearer " + real); code != http.StatusAccepted {
		t.Fatalf("the real token (stored with a newline): %d %s", code, body)
	}
}

// TestSecretsComparedByDigest keeps every secret comparison of the
// operator-facing files on equal(), which compares sha256 digests in
// constant time: subtle.ConstantTimeCompare and bytes.Equal on the secrets
// themselves return early on a length mismatch, telling a prober the
// token's length.
func TestSecretsComparedByDigest(t *testing.T) {
	fset := token.NewFileSet()
	for _, file := range []string{"auth.go", "cookies.go", "login.go", "lifecycle.go", "codecauth.go", "session.go", "deploys.go", "dashboard.go"} {
		f, err := parser.ParseFile(fset, file, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			fn, ok := n.(*ast.FuncDecl)
			if ok && fn.Name.Name == "equal" {
				return false // the one place that may call it, on digests
			}
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			pkg, _ := sel.X.(*ast.Ident)
			if pkg != nil && (pkg.Name == "subtle" && sel.Sel.Name == "ConstantTimeCompare" || pkg.Name == "bytes" && sel.Sel.Name == "Equal") {
				t.Errorf("%s: %s.%s compares a secret directly; use equal() (sha256 digests in constant time)", fset.Position(call.Pos()), pkg.Name, sel.Sel.Name)
			}
			return true
		})
	}
	if !equal([]byte("same"), []byte("same")) || equal([]byte("a"), []byte("ab")) {
		t.Fatal("equal is wrong")
	}
}
