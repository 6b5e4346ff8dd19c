// Package builder turns an application checkout into a built tree: Plan picks
// the recipe's shell steps from the build spec and what the checkout contains,
// and a Runner executes them, in the offline builder container (Docker) or on
// the host (Local). Recipes are plain data so they can be unit-tested and
// shown to the user before anything runs.
package builder

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Recipe names accepted in Spec.Type.
const (
	TypeMagento2  = "magento2"
	TypeMagento1  = "magento1"
	TypePWAStudio = "pwastudio"
	TypeNodeJS    = "nodejs"
	TypeAngular   = "angular"
	TypeCustom    = "custom"
)

// Spec is the build section of the app config, as the recipes need it.
type Spec struct {
	Type string
	// Env is added to every step's environment. It is build configuration,
	// not secrets: it is shown in plans and logs.
	Env map[string]string
	// Locales and Themes select what magento2 deploys as static content.
	// Empty means: the locales configured in app/etc/config.php and every
	// theme registered there.
	Locales []string
	Themes  []string
	// Jobs is the static-content-deploy parallelism (default 4).
	Jobs int
	// Magepack bundles JS with magepack after the static deploy; it needs a
	// committed magepack.config.js.
	Magepack bool
	// Stores makes pwastudio build once per store view.
	Stores []PWAStore
	// Steps are the commands of the custom recipe.
	Steps []CustomStep
	// NodeBuildScript is the package.json script node recipes run (default "build").
	NodeBuildScript string
}

// PWAStore is one store view of a multi-store PWA Studio build.
type PWAStore struct {
	Code     string
	Website  string
	Currency string
}

// CustomStep is one user-defined command of the custom recipe.
type CustomStep struct {
	Name string
	Run  string // shell, run with sh -euc
	Dir  string // relative to the checkout; empty = checkout root
}

// Step is one command of a build plan.
type Step struct {
	Name   string
	Dir    string // relative to the checkout, "." for the root
	Script string // run with sh -euc
	Env    map[string]string
}

// Plan returns the ordered steps that build checkoutDir according to spec.
// It only reads the checkout; errors say what is missing and how to fix it.
func Plan(spec Spec, checkoutDir string) ([]Step, error) {
	st, err := os.Stat(checkoutDir)
	if err != nil || !st.IsDir() {
		return nil, fmt.Errorf("checkout %s is not a directory", checkoutDir)
	}
	for k := range spec.Env {
		if !envName.MatchString(k) {
			return nil, fmt.Errorf("build env name %q is not a valid variable name", k)
		}
	}
	var steps []Step
	switch spec.Type {
	case TypeMagento2:
		steps, err = planMagento2(spec, checkoutDir)
	case TypeMagento1:
		steps, err = planMagento1(checkoutDir)
	case TypePWAStudio:
		steps, err = planPWAStudio(spec, checkoutDir)
	case TypeNodeJS, TypeAngular:
		steps, err = planNode(spec, checkoutDir, spec.Type)
	case TypeCustom:
		steps, err = planCustom(spec)
	case "":
		return nil, errors.New("build.type is not set: use one of magento2, magento1, pwastudio, nodejs, angular, custom")
	default:
		return nil, fmt.Errorf("unknown build.type %q: use one of magento2, magento1, pwastudio, nodejs, angular, custom", spec.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s recipe: %w", spec.Type, err)
	}
	for i := range steps {
		env := map[string]string{}
		for k, v := range spec.Env {
			env[k] = v
		}
		// Step-specific values (e.g. STORE_VIEW_CODE) win over the spec's.
		for k, v := range steps[i].Env {
			env[k] = v
		}
		steps[i].Env = env
		if steps[i].Dir == "" {
			steps[i].Dir = "."
		}
	}
	return steps, nil
}

var (
	envName     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	localeName  = regexp.MustCompile(`^[a-z]{2,3}(_[A-Za-z0-9]+)*$`)
	themeName   = regexp.MustCompile(`^[A-Za-z0-9_-]+/[A-Za-z0-9_.-]+$`)
	storeCode   = regexp.MustCompile(`^[a-z0-9_]+$`)
	scriptName  = regexp.MustCompile(`^[A-Za-z0-9_:.-]+$`)
	currencyISO = regexp.MustCompile(`^[A-Z]{3}$`)
	shellSafe   = regexp.MustCompile(`^[A-Za-z0-9_./:=@+-]+$`)
)

// shellQuote quotes s for sh; plans also validate names, this is the second
// line of defence against config values being interpreted by the shell.
func shellQuote(s string) string {
	if s != "" && shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// cleanRelDir validates a step directory from config: relative, inside the
// checkout.
func cleanRelDir(dir string) (string, error) {
	if dir == "" {
		return ".", nil
	}
	c := filepath.Clean(dir)
	if filepath.IsAbs(c) || c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("step dir %q must be relative to the checkout and stay inside it", dir)
	}
	return filepath.ToSlash(c), nil
}

// nodeTool is how a JS project installs its dependencies and runs a script,
// chosen by the lockfile it commits.
type nodeTool struct {
	install string
	run     string // prefix, script name appended
}

// detectNodeTool picks yarn or npm by lockfile. A lockfile is required:
// without one every build resolves versions anew and releases stop being
// reproducible.
func detectNodeTool(checkoutDir, rel string) (nodeTool, error) {
	dir := filepath.Join(checkoutDir, rel)
	if !exists(filepath.Join(dir, "package.json")) {
		return nodeTool{}, fmt.Errorf("%s has no package.json", filepath.Join(rel, "package.json"))
	}
	switch {
	case exists(filepath.Join(dir, "yarn.lock")):
		return nodeTool{install: "yarn install --frozen-lockfile --non-interactive", run: "yarn run"}, nil
	case exists(filepath.Join(dir, "package-lock.json")), exists(filepath.Join(dir, "npm-shrinkwrap.json")):
		return nodeTool{install: "npm ci --no-audit --no-fund", run: "npm run"}, nil
	}
	return nodeTool{}, fmt.Errorf("%s has neither package-lock.json nor yarn.lock: run npm install (or yarn) there and commit the lockfile so builds are reproducible", rel)
}

func planNode(spec Spec, checkoutDir, kind string) ([]Step, error) {
	script, err := buildScript(spec)
	if err != nil {
		return nil, err
	}
	tool, err := detectNodeTool(checkoutDir, ".")
	if err != nil {
		return nil, err
	}
	return []Step{
		{Name: "install dependencies", Script: tool.install},
		{Name: kind + " build", Script: tool.run + " " + script},
	}, nil
}

func buildScript(spec Spec) (string, error) {
	s := spec.NodeBuildScript
	if s == "" {
		s = "build"
	}
	if !scriptName.MatchString(s) {
		return "", fmt.Errorf("build script name %q has unexpected characters", s)
	}
	return s, nil
}

// planPWAStudio builds once per store view. PWA Studio bakes the store into
// the bundle at build time (STORE_VIEW_CODE etc.), so multi-store needs one
// build each; every build is moved aside before the next one cleans dist/,
// then all are gathered under dist/<code>/.
func planPWAStudio(spec Spec, checkoutDir string) ([]Step, error) {
	script, err := buildScript(spec)
	if err != nil {
		return nil, err
	}
	tool, err := detectNodeTool(checkoutDir, ".")
	if err != nil {
		return nil, err
	}
	steps := []Step{{Name: "install dependencies", Script: tool.install}}
	if len(spec.Stores) == 0 {
		return append(steps, Step{Name: "pwa build", Script: tool.run + " " + script}), nil
	}
	const stash = ".mageflow-stores"
	seen := map[string]bool{}
	for _, s := range spec.Stores {
		if !storeCode.MatchString(s.Code) {
			return nil, fmt.Errorf("store code %q must match [a-z0-9_]+ (it becomes a directory name)", s.Code)
		}
		if seen[s.Code] {
			return nil, fmt.Errorf("store %q is listed twice", s.Code)
		}
		seen[s.Code] = true
		if s.Currency != "" && !currencyISO.MatchString(s.Currency) {
			return nil, fmt.Errorf("store %q currency %q is not an ISO 4217 code like EUR", s.Code, s.Currency)
		}
		env := map[string]string{"STORE_VIEW_CODE": s.Code}
		if s.Website != "" {
			env["WEBSITE_CODE"] = s.Website
		}
		if s.Currency != "" {
			env["CURRENCY"] = s.Currency
		}
		steps = append(steps, Step{
			Name: "pwa build " + s.Code,
			Env:  env,
			Script: "rm -rf dist\n" + tool.run + " " + script + "\n" +
				"test -d dist || { echo 'build did not produce dist/' >&2; exit 1; }\n" +
				"mkdir -p " + stash + "\nrm -rf " + stash + "/" + s.Code + "\nmv dist " + stash + "/" + s.Code,
		})
	}
	return append(steps, Step{
		Name:   "collect store builds",
		Script: "rm -rf dist\nmv " + stash + " dist\nls dist",
	}), nil
}

func planCustom(spec Spec) ([]Step, error) {
	if len(spec.Steps) == 0 {
		return nil, errors.New("build.steps is empty: list at least one {name, run} step")
	}
	out := make([]Step, 0, len(spec.Steps))
	for i, s := range spec.Steps {
		if strings.TrimSpace(s.Run) == "" {
			return nil, fmt.Errorf("step %d (%q) has an empty run", i+1, s.Name)
		}
		dir, err := cleanRelDir(s.Dir)
		if err != nil {
			return nil, fmt.Errorf("step %d (%q): %w", i+1, s.Name, err)
		}
		name := s.Name
		if name == "" {
			name = fmt.Sprintf("step %d", i+1)
		}
		out = append(out, Step{Name: name, Dir: dir, Script: s.Run})
	}
	return out, nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
