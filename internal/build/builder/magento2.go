package builder

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// defaultJobs is the setup:static-content:deploy parallelism when the config
// sets none: Magento's own default, and a fair use of a shared build host.
const defaultJobs = 4

// magentoConfig is what the magento2 recipe reads from app/etc/config.php.
// Deploying static content without a database only works when scopes and
// themes were dumped there (app:config:dump scopes themes), so that file is the
// single source of locales and themes.
type magentoConfig struct {
	locales []string // configured store locales, sorted, deduplicated
	themes  []string // registered themes as Vendor/name, sorted
}

func readMagentoConfig(checkoutDir string) (magentoConfig, error) {
	path := filepath.Join(checkoutDir, "app", "etc", "config.php")
	src, err := os.ReadFile(path)
	if err != nil {
		return magentoConfig{}, fmt.Errorf("app/etc/config.php not found: run `bin/magento app:config:dump scopes themes` on a development install and commit app/etc/config.php (static content is deployed without a database)")
	}
	cfg, err := parsePHPArrayFile(string(src))
	if err != nil {
		return magentoConfig{}, fmt.Errorf("app/etc/config.php: %w", err)
	}
	var mc magentoConfig
	locales := map[string]bool{}
	addLocale := func(scope any) {
		if code, ok := dig(asMap(scope), "general", "locale", "code").(string); ok && code != "" {
			locales[code] = true
		}
	}
	addLocale(dig(cfg, "system", "default"))
	for _, scopeType := range []string{"websites", "stores"} {
		for _, scope := range asMap(dig(cfg, "system", scopeType)) {
			addLocale(scope)
		}
	}
	mc.locales = sortedKeys(locales)

	themes := map[string]bool{}
	for key, t := range asMap(cfg["themes"]) {
		path, _ := asMap(t)["theme_path"].(string)
		if path == "" {
			// Key is "<area>/<Vendor>/<name>".
			if parts := strings.SplitN(key, "/", 2); len(parts) == 2 {
				path = parts[1]
			}
		}
		if path != "" {
			themes[path] = true
		}
	}
	mc.themes = sortedKeys(themes)
	return mc, nil
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// themeBuild is a frontend theme whose assets must be built with node before
// static content deploy copies them.
type themeBuild struct {
	name string // Vendor/name
	kind string // hyva | scandipwa
	dir  string // relative to checkout
}

// detectThemeBuilds finds Hyvä themes (web/tailwind/package.json) and
// ScandiPWA themes (package.json with a "scandipwa" section) under
// app/design/frontend.
func detectThemeBuilds(checkoutDir string) ([]themeBuild, error) {
	matches, err := filepath.Glob(filepath.Join(checkoutDir, "app", "design", "frontend", "*", "*"))
	if err != nil {
		return nil, err
	}
	sort.Strings(matches)
	var out []themeBuild
	for _, dir := range matches {
		rel, _ := filepath.Rel(checkoutDir, dir)
		rel = filepath.ToSlash(rel)
		name := filepath.Base(filepath.Dir(dir)) + "/" + filepath.Base(dir)
		if exists(filepath.Join(dir, "web", "tailwind", "package.json")) {
			out = append(out, themeBuild{name: name, kind: "hyva", dir: rel + "/web/tailwind"})
			continue
		}
		if raw, err := os.ReadFile(filepath.Join(dir, "package.json")); err == nil {
			var pkg map[string]json.RawMessage
			if err := json.Unmarshal(raw, &pkg); err != nil {
				return nil, fmt.Errorf("%s/package.json: %w", rel, err)
			}
			if _, ok := pkg["scandipwa"]; ok {
				out = append(out, themeBuild{name: name, kind: "scandipwa", dir: rel})
			}
		}
	}
	return out, nil
}

func planMagento2(spec Spec, checkoutDir string) ([]Step, error) {
	if err := checkMagento2Files(checkoutDir); err != nil {
		return nil, err
	}
	mc, err := readMagentoConfig(checkoutDir)
	if err != nil {
		return nil, err
	}
	locales, err := magento2Locales(spec, mc)
	if err != nil {
		return nil, err
	}
	themes, err := magento2Themes(spec, mc)
	if err != nil {
		return nil, err
	}
	jobs := spec.Jobs
	if jobs <= 0 {
		jobs = defaultJobs
	}

	steps := []Step{
		{Name: "composer install", Script: "composer install --no-dev --optimize-autoloader --no-interaction"},
		{Name: "di compile", Script: "php bin/magento setup:di:compile"},
	}
	themeSteps, err := themeBuildSteps(checkoutDir, themes)
	if err != nil {
		return nil, err
	}
	steps = append(steps, themeSteps...)
	steps = append(steps, staticContentStep(jobs, themes, locales))
	if spec.Magepack {
		step, err := magepackStep(checkoutDir)
		if err != nil {
			return nil, err
		}
		steps = append(steps, step)
	}
	return steps, nil
}

// Messages of planMagento2's refusals.
const (
	hintComposerLock     = ": run composer update once and commit composer.lock so builds are reproducible"
	errThemeUnregistered = "theme %s is not registered in app/etc/config.php: run `bin/magento app:config:dump themes` and commit config.php, or fix build.themes"
	errMagepackConfig    = "magepack is enabled but magepack.config.js is missing: generate it with `magepack generate` against a running store and commit it"
)

// checkMagento2Files refuses a checkout without composer.json,
// composer.lock or bin/magento.
func checkMagento2Files(checkoutDir string) error {
	for _, f := range []string{"composer.json", "composer.lock", "bin/magento"} {
		if !exists(filepath.Join(checkoutDir, f)) {
			hint := ""
			if f == "composer.lock" {
				hint = hintComposerLock
			}
			return fmt.Errorf("%s not found in the checkout%s", f, hint)
		}
	}
	return nil
}

// magento2Locales are the build's locales: the spec's, else config.php's,
// else en_US; each must look like a locale code.
func magento2Locales(spec Spec, mc magentoConfig) ([]string, error) {
	locales := spec.Locales
	if len(locales) == 0 {
		locales = mc.locales
	}
	if len(locales) == 0 {
		locales = []string{"en_US"}
	}
	for _, l := range locales {
		if !localeName.MatchString(l) {
			return nil, fmt.Errorf("locale %q is not a locale code like en_US", l)
		}
	}
	return locales, nil
}

// magento2Themes are the build's themes: the spec's, else config.php's.
// Without a database, deploy only knows themes dumped to config.php, so a
// theme the spec names must be registered there (when any is).
func magento2Themes(spec Spec, mc magentoConfig) ([]string, error) {
	themes := spec.Themes
	if len(themes) == 0 {
		themes = mc.themes
	}
	registered := map[string]bool{}
	for _, t := range mc.themes {
		registered[t] = true
	}
	for _, t := range spec.Themes {
		if !themeName.MatchString(t) {
			return nil, fmt.Errorf("theme %q is not of the form Vendor/name", t)
		}
		if len(mc.themes) > 0 && !registered[t] {
			return nil, fmt.Errorf(errThemeUnregistered, t)
		}
	}
	return themes, nil
}

// themeBuildSteps are the node builds of the checkout's Hyvä and ScandiPWA
// themes, of the selected themes only when any is selected.
func themeBuildSteps(checkoutDir string, themes []string) ([]Step, error) {
	selected := map[string]bool{}
	for _, t := range themes {
		selected[t] = true
	}
	builds, err := detectThemeBuilds(checkoutDir)
	if err != nil {
		return nil, err
	}
	var steps []Step
	for _, b := range builds {
		if len(selected) > 0 && !selected[b.name] {
			continue
		}
		tool, err := detectNodeTool(checkoutDir, b.dir)
		if err != nil {
			return nil, fmt.Errorf("%s theme %s: %w", b.kind, b.name, err)
		}
		script := "build-prod" // Hyvä's production tailwind build
		if b.kind == "scandipwa" {
			script = "build"
		}
		steps = append(steps, Step{
			Name:   b.kind + " theme " + b.name,
			Dir:    b.dir,
			Script: tool.install + " && " + tool.run + " " + script,
		})
	}
	return steps, nil
}

// staticContentStep deploys the static content of the themes and locales.
func staticContentStep(jobs int, themes, locales []string) Step {
	scd := []string{"php bin/magento setup:static-content:deploy -f --jobs", strconv.Itoa(jobs)}
	for _, t := range themes {
		scd = append(scd, "--theme", shellQuote(t))
	}
	for _, l := range locales {
		scd = append(scd, shellQuote(l))
	}
	return Step{Name: "static content deploy", Script: strings.Join(scd, " ")}
}

// magepackStep bundles the JavaScript with the committed
// magepack.config.js.
func magepackStep(checkoutDir string) (Step, error) {
	if !exists(filepath.Join(checkoutDir, "magepack.config.js")) {
		return Step{}, errors.New(errMagepackConfig)
	}
	tool, err := detectNodeTool(checkoutDir, ".")
	if err != nil {
		return Step{}, fmt.Errorf("magepack: %w (magepack must be a devDependency in the root package.json)", err)
	}
	return Step{
		Name:   "magepack bundle",
		Script: tool.install + "\nnpx --no-install magepack bundle",
	}, nil
}
