package m1fix

import (
	"go/ast"
	"go/parser"
	gotoken "go/token"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// goFieldRE finds Go names in a text meant for the store's operator: a
// qualified exported name (Options.Pages, m1audit.Target, o.DeployUser) or
// a CamelCase option name the operator never sees. Config keys are
// snake_case (hosts.<name>.hardening.pages), so they never match.
var goFieldRE = regexp.MustCompile(`\b([A-Za-z][A-Za-z0-9]*\.[A-Z][A-Za-z0-9]+|(Options|Target|AuditOptions|DiscoverOptions|Hardening)\b|[A-Z][a-z]+([A-Z][a-z]+)*(URL|User|Users|Pages|Dir|Args|Binary|Hosts|Allow|Conf|Name|Root|Days|Admins|Exceptions|Signatures|Writable|Auth|Minute|Day|Path|Timeout|Concurrency|Canaries)\b)`)

// fixTexts collects, from the Go files of dirs (tests excluded), every
// string that can end up in a result's Fix: the right-hand side of
// `x.Fix = …` and of `Fix: …` in composite literals, with the package's
// named string constants and variables they use resolved.
func fixTexts(t *testing.T, fset *gotoken.FileSet, files []*ast.File) map[string]string {
	t.Helper()
	named := map[string]ast.Expr{}
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			if vs, ok := n.(*ast.ValueSpec); ok {
				for i, name := range vs.Names {
					if i < len(vs.Values) {
						named[name.Name] = vs.Values[i]
					}
				}
			}
			return true
		})
	}
	out := map[string]string{}
	var collect func(pos gotoken.Pos, e ast.Expr, depth int)
	collect = func(pos gotoken.Pos, e ast.Expr, depth int) {
		if depth > 8 || e == nil {
			return
		}
		ast.Inspect(e, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.BasicLit:
				if x.Kind == gotoken.STRING {
					if s, err := strconv.Unquote(x.Value); err == nil {
						out[s] = fset.Position(pos).String()
					}
				}
			case *ast.Ident:
				if v, ok := named[x.Name]; ok {
					collect(pos, v, depth+1)
				}
			}
			return true
		})
	}
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.AssignStmt:
				for i, l := range x.Lhs {
					if sel, ok := l.(*ast.SelectorExpr); ok && sel.Sel.Name == "Fix" && i < len(x.Rhs) {
						collect(x.Pos(), x.Rhs[i], 0)
					}
				}
			case *ast.KeyValueExpr:
				if k, ok := x.Key.(*ast.Ident); ok && k.Name == "Fix" {
					collect(x.Pos(), x.Value, 0)
				}
			}
			return true
		})
	}
	return out
}

// codeSpanRE is a `command` or "directive" quoted in a fix text: the
// operator types it as written (DenyUsers is sshd's word, not a Go field).
var codeSpanRE = regexp.MustCompile("`[^`]*`|\"[^\"]*\"")

// prose is s without its quoted code spans.
func prose(s string) string { return codeSpanRE.ReplaceAllString(s, "") }

func parseDir(t *testing.T, fset *gotoken.FileSet, dir string) []*ast.File {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no Go files in %s: %v", dir, err)
	}
	var files []*ast.File
	for _, n := range names {
		if strings.HasSuffix(n, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, n, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	return files
}

// TestFixTextsSpeakConfigKeys: what a report tells the operator to do names
// config keys (hosts.<name>.hardening.pages), never Go fields
// (Options.Pages), in m1fix, m1verify and m1audit.
func TestFixTextsSpeakConfigKeys(t *testing.T) {
	total := 0
	for _, dir := range []string{".", "../m1verify", "../m1audit"} {
		fset := gotoken.NewFileSet()
		texts := fixTexts(t, fset, parseDir(t, fset, dir))
		if len(texts) < 3 {
			t.Errorf("%s: only %d fix texts found: the collector is broken", dir, len(texts))
		}
		total += len(texts)
		for s, pos := range texts {
			if m := goFieldRE.FindAllString(prose(s), -1); len(m) > 0 {
				t.Errorf("%s: fix text names the Go identifiers %q instead of config keys: %q", pos, m, s)
			}
		}
	}
	t.Logf("%d fix texts checked", total)
}

// TestFixTextCollectorCatches proves the check can fail: Go fields in a
// direct assignment, a composite literal, a named constant and a
// Sprintf format are all found; config keys pass.
func TestFixTextCollectorCatches(t *testing.T) {
	src := `package x
const fixPages = "No page answered 200: check Host, BaseURL and Options.Pages."
var fixUser = "set " + "o.DeployUser"
func f() {
	r.Fix = fixPages
	r.Fix = fmt.Sprintf("set %s in Target.WebRoot", x)
	_ = Result{Fix: "add it to AllowedScriptHosts or BaseURL"}
	_ = Result{Fix: fixUser}
	r.Fix = "set hosts.<name>.hardening.pages and hardening.base_url; add ` + "`DenyUsers www-data`" + ` and \"AllowUsers\""
}`
	fset := gotoken.NewFileSet()
	f, err := parser.ParseFile(fset, "x.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	texts := fixTexts(t, fset, []*ast.File{f})
	var caught []string
	for s := range texts {
		caught = append(caught, goFieldRE.FindAllString(prose(s), -1)...)
	}
	for _, want := range []string{"Options.Pages", "o.DeployUser", "Target.WebRoot", "AllowedScriptHosts", "BaseURL"} {
		found := false
		for _, c := range caught {
			found = found || c == want
		}
		if !found {
			t.Errorf("%q not caught; caught %q", want, caught)
		}
	}
	if len(caught) != 6 {
		t.Errorf("caught %q, want exactly the six Go names (config keys must pass)", caught)
	}
}
