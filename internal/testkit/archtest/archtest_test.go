// Package archtest holds the import rule of mageflow's packages and the test
// that enforces it, so the picture in docs/architecture.md ("Packages and who
// may import whom") cannot drift from the code.
package archtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/mageflow/mageflow"

// layer is a package's role. The order of the constants is the picture's
// order, top to bottom.
type layer string

const (
	program    layer = "program"     // a main: starter, worker, benchmarks
	cli        layer = "cli"         // internal/front/cli, the commands of bin/mageflow
	front      layer = "front end"   // starts workflows, serves HTTP, runs the worker
	workflows  layer = "workflows"   // workflows/
	activities layer = "activities"  // activities/
	library    layer = "library"     // domain libraries: no Temporal, no workflows
	harness    layer = "test stack"  // test/...: integration tests and the stacks they run
	testhelper layer = "test helper" // helpers for _test files and test stacks
)

// mayImport is the rule: a package of the key's layer may import (from its
// non-test files) only packages of the listed layers. _test files may import
// anything; only test helpers and test stacks are meant for them.
var mayImport = map[layer][]layer{
	program:    {cli, front, workflows, activities, library, harness, testhelper},
	cli:        {front, workflows, activities, library},
	front:      {front, workflows, activities, library},
	workflows:  {activities, library}, // activities for their types and names only
	activities: {activities, library}, // the control side uses the agent's types; never the reverse (TestAgentLinksOnlyTheHostSide)
	library:    {library},
	harness:    {front, workflows, activities, library, harness, testhelper},
	testhelper: {library, testhelper},
}

// layers classifies every package of the module, by path below the module.
var layers = map[string]layer{
	"starter":               program,
	"worker":                program,
	"worker/agent":          program,
	"test/benchbuildnumber": program,
	"test/benchpackage":     program,
	"test/benchwebhook":     program,
	"test/benchdeploy":      program,
	"test/benchfleet":       program,
	"test/m1manifest":       program,
	"test/benchdelta":       program,
	"test/benchscale":       program,

	"internal/front/cli": cli,

	"internal/front/agentapp": front,

	"internal/front/start":     front,
	"internal/front/sqspoll":   front,
	"internal/front/server":    front,
	"internal/front/workerapp": front,
	"internal/front/tclient":   front,
	"internal/front/devserver": front,
	"internal/front/cluster":   front,
	"internal/front/demo":      front,

	"workflows":                     workflows,
	"activities":                    activities,
	"activities/agent":              activities,
	"activities/internal/heartbeat": activities,

	"internal/build/artifact": library,
	"internal/build/builder":  library,
	"internal/build/catalog":  library,
	"internal/build/gitmeta":  library,
	"internal/build/release":  library,
	"internal/build/store":    library,

	"internal/host/hostops":  library,
	"internal/host/lbconf":   library,
	"internal/host/magento":  library,
	"internal/host/phpfpm":   library,
	"internal/host/webstack": library,

	"internal/m1/m1audit":  library,
	"internal/m1/m1core":   library,
	"internal/m1/m1fix":    library,
	"internal/m1/m1verify": library,

	"internal/fleet":        library,
	"internal/fleet/aws":    library,
	"internal/fleet/docker": library,

	"internal/platform/codec":      library,
	"internal/platform/config":     library,
	"internal/platform/ctxio":      library,
	"internal/platform/metrics":    library,
	"internal/platform/searchattr": library,
	"internal/platform/secrets":    library,
	"internal/platform/units":      library,
	"internal/platform/webhook":    library,

	"test":                         harness,
	"test/benchdeploy/deploystack": harness,
	"test/fleetstack":              harness,
	"test/m1store":                 harness,
	"test/fixtures":                harness,
	"internal/testkit/archtest":    harness,

	"internal/testkit/testenv":             testhelper,
	"internal/testkit/fakerepo":            testhelper,
	"internal/testkit/treegen":             testhelper,
	"internal/build/artifact/artifacttest": testhelper,
	"internal/m1/m1audit/m1test":           testhelper,
}

// exception is one import today's code makes against the rule, kept until the
// code moves. A new violation fails; so does an exception no longer needed.
type exception struct {
	from, to, why string
}

var exceptions = []exception{}

// moduleRoots are the module's top folders holding Go code.
var moduleRoots = []string{"./activities/...", "./internal/...", "./starter/...", "./test/...", "./worker/...", "./workflows/..."}

// TestRootsCoverTheModule fails when a new top folder holds Go code the
// roots above would miss.
func TestRootsCoverTheModule(t *testing.T) {
	entries, err := os.ReadDir("../../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || name == "var" || name == "bin" || strings.HasPrefix(name, ".") || name == "docs" {
			continue
		}
		if !slices.Contains(moduleRoots, "./"+name+"/...") {
			matches, _ := filepath.Glob(filepath.Join("../../..", name, "*.go"))
			deeper, _ := filepath.Glob(filepath.Join("../../..", name, "*", "*.go"))
			if len(matches)+len(deeper) > 0 {
				t.Errorf("top folder %s holds Go code: add ./%s/... to moduleRoots", name, name)
			}
		}
	}
}

type pkg struct {
	ImportPath string
	Imports    []string
}

// listPackages runs `go list -json ./...` at the module root and returns each
// package's non-test imports of the module's own packages, by short path.
func listPackages(t *testing.T) map[string][]string {
	t.Helper()
	// Explicit roots, not ./...: var/ holds generated trees (benchmarks
	// write there while tests run) and is no part of the module.
	cmd := exec.Command("go", append([]string{"list", "-json=ImportPath,Imports"}, moduleRoots...)...)
	cmd.Dir = "../../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	pkgs := map[string][]string{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		var own []string
		for _, imp := range p.Imports {
			if short, ok := shortPath(imp); ok {
				own = append(own, short)
			}
		}
		short, _ := shortPath(p.ImportPath)
		pkgs[short] = own
	}
	if len(pkgs) == 0 {
		t.Fatal("go list found no packages")
	}
	return pkgs
}

// shortPath is path below the module, and whether path is in the module.
func shortPath(path string) (string, bool) {
	if path == module {
		return ".", true
	}
	rest, ok := strings.CutPrefix(path, module+"/")
	return rest, ok
}

func allowed(from, to layer) bool {
	for _, l := range mayImport[from] {
		if l == to {
			return true
		}
	}
	return false
}

func TestImportRule(t *testing.T) {
	pkgs := listPackages(t)
	excused := map[[2]string]bool{}
	for _, e := range exceptions {
		excused[[2]string{e.from, e.to}] = true
	}
	used := map[[2]string]bool{}

	paths := make([]string, 0, len(pkgs))
	for p := range pkgs {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		from, ok := layers[p]
		if !ok {
			t.Errorf("package %s has no layer: add it to the layer table in internal/testkit/archtest (and to the picture in docs/architecture.md)", p)
			continue
		}
		for _, imp := range pkgs[p] {
			to, ok := layers[imp]
			if !ok || allowed(from, to) {
				continue // an unclassified import fails as a package above
			}
			edge := [2]string{p, imp}
			if excused[edge] {
				used[edge] = true
				continue
			}
			t.Errorf("%s (%s) imports %s (%s): a %s package may import only %v (docs/architecture.md, \"Packages and who may import whom\")",
				p, from, imp, to, from, mayImport[from])
		}
	}

	for p := range layers {
		if _, ok := pkgs[p]; !ok {
			t.Errorf("layer table in internal/testkit/archtest names %s, which is no package any more: remove it", p)
		}
	}
	for _, e := range exceptions {
		if !used[[2]string{e.from, e.to}] {
			t.Errorf("exception %s -> %s (%s) is no longer needed: remove it from internal/testkit/archtest", e.from, e.to, e.why)
		}
	}
}

// TestRuleIsComplete keeps the rule table itself whole: every layer has a
// row, so a new layer cannot silently import nothing or everything.
func TestRuleIsComplete(t *testing.T) {
	seen := map[layer]bool{}
	for _, l := range layers {
		seen[l] = true
	}
	for l := range seen {
		if _, ok := mayImport[l]; !ok {
			t.Errorf("layer %q has no row in mayImport", l)
		}
	}
}

// agentMustNotLink are import path prefixes bin/mageflow-agent must not
// link: it runs as root on every app server, so it carries the host
// activities and what they need (the S3 client included, to fetch
// artifacts), and nothing of the control side.
var agentMustNotLink = []string{
	"github.com/aws/aws-sdk-go-v2/service/ec2",
	"github.com/aws/aws-sdk-go-v2/service/autoscaling",
	"github.com/aws/aws-sdk-go-v2/service/sqs",
	"github.com/docker/",
	"github.com/go-git/",
	"github.com/chromedp/",
	"github.com/prometheus/",
	module + "/workflows",
	module + "/internal/fleet",
	module + "/internal/front/cli",
	module + "/internal/front/server",
	module + "/internal/front/start",
	module + "/internal/front/workerapp",
	module + "/internal/build/builder",
	module + "/internal/build/gitmeta",
}

// TestAgentLinksOnlyTheHostSide lists everything worker/agent links and
// fails on any control-side package.
func TestAgentLinksOnlyTheHostSide(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "./worker/agent")
	cmd.Dir = "../../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, stderr.String())
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, module+"/activities/agent") {
		t.Fatalf("worker/agent does not link activities/agent: %v", deps)
	}
	for _, d := range deps {
		for _, bad := range agentMustNotLink {
			if d == bad || strings.HasPrefix(d, strings.TrimSuffix(bad, "/")+"/") || strings.HasPrefix(d, bad) && strings.HasSuffix(bad, "/") {
				t.Errorf("bin/mageflow-agent links %s (matches %s): the agent must carry the host side only", d, bad)
			}
		}
	}
}

// TestPictureNamesEveryPackage keeps the picture in docs/architecture.md
// whole: every package of the layer table appears in it, by its path below
// internal/ or, inside a group's row, by its last element.
func TestPictureNamesEveryPackage(t *testing.T) {
	b, err := os.ReadFile("../../../docs/architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	start := strings.Index(doc, "## Packages and who may import whom")
	if start < 0 {
		t.Fatal(`docs/architecture.md has no "Packages and who may import whom" section`)
	}
	fence := strings.Index(doc[start:], "```")
	end := strings.Index(doc[start+fence+3:], "```")
	if fence < 0 || end < 0 {
		t.Fatal("the section has no picture (a ``` block)")
	}
	words := map[string]bool{}
	for _, w := range strings.FieldsFunc(doc[start+fence+3:start+fence+3+end], func(r rune) bool {
		return !(r == '/' || r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	}) {
		words[strings.TrimSuffix(w, "/")] = true
	}
	for p := range layers {
		short := strings.TrimPrefix(p, "internal/")
		base := short[strings.LastIndex(short, "/")+1:]
		if !words[short] && !words[base] {
			t.Errorf("the picture in docs/architecture.md does not name %s: add it to its layer's row", p)
		}
	}
}
