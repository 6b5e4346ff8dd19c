package builder

import (
	"encoding/json"
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
	for _, f := range []string{"composer.json", "composer.lock", "bin/magento"} {
		if !exists(filepath.Join(checkoutDir, f)) {
			hint := ""
			if f == "composer.lock" {
				hint = ": run composer update once and commit composer.lock so builds are reproducible"
			}
			return nil, fmt.Errorf("%s not found in the checkout%s", f, hint)
		}
	}
	mc, err := readMagentoConfig(checkoutDir)
	if err != nil {
		return nil, err
	}

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
		// Without a database, deploy only knows themes dumped to config.php.
		if len(mc.themes) > 0 && !registered[t] {
			return nil, fmt.Errorf("theme %s is not registered in app/etc/config.php: run `bin/magento app:config:dump themes` and commit config.php, or fix build.themes", t)
		}
	}
	selected := map[string]bool{}
	for _, t := range themes {
		selected[t] = true
	}

	jobs := spec.Jobs
	if jobs <= 0 {
		jobs = defaultJobs
	}

	steps := []Step{
		{Name: "composer install", Script: "composer install --no-dev --optimize-autoloader --no-interaction"},
		{Name: "di compile", Script: "php bin/magento setup:di:compile"},
	}

	builds, err := detectThemeBuilds(checkoutDir)
	if err != nil {
		return nil, err
	}
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

	scd := []string{"php bin/magento setup:static-content:deploy -f --jobs", strconv.Itoa(jobs)}
	for _, t := range themes {
		scd = append(scd, "--theme", shellQuote(t))
	}
	for _, l := range locales {
		scd = append(scd, shellQuote(l))
	}
	steps = append(steps, Step{Name: "static content deploy", Script: strings.Join(scd, " ")})

	if spec.Magepack {
		if !exists(filepath.Join(checkoutDir, "magepack.config.js")) {
			return nil, fmt.Errorf("magepack is enabled but magepack.config.js is missing: generate it with `magepack generate` against a running store and commit it")
		}
		tool, err := detectNodeTool(checkoutDir, ".")
		if err != nil {
			return nil, fmt.Errorf("magepack: %w (magepack must be a devDependency in the root package.json)", err)
		}
		steps = append(steps, Step{
			Name:   "magepack bundle",
			Script: tool.install + "\nnpx --no-install magepack bundle",
		})
	}
	return steps, nil
}
