package builder

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/mageflow/mageflow/test/fixtures"
)

// tree writes files (path => content) under a temp dir.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, c := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func names(steps []Step) []string {
	out := make([]string, len(steps))
	for i, s := range steps {
		out[i] = s.Name
	}
	return out
}

func TestParsePHPArrayFile(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(fixtures.Magento2AppSource(), "app/etc/config.php"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := parsePHPArrayFile(string(src))
	if err != nil {
		t.Fatal(err)
	}
	if got := dig(cfg, "modules", "Vendor_Module"); got != int64(1) {
		t.Errorf("modules.Vendor_Module = %#v", got)
	}
	if got := dig(cfg, "themes", "frontend/Vendor/theme", "parent_id"); got != "Vendor/base" {
		t.Errorf("theme parent = %#v", got)
	}
	if got := dig(cfg, "themes", "frontend/Vendor/base", "parent_id"); got != nil {
		t.Errorf("null parent = %#v", got)
	}
	if got := dig(cfg, "scopes", "groups", "1", "code"); got != "main_website_store" {
		t.Errorf("int-keyed group = %#v", got)
	}

	other, err := parsePHPArrayFile(`<?php
# old style
return array('a' => array(1, 2, 'x' => "q\"\n"), 'b' => TRUE, 'c' => -1.5, 5 => 'five', 'six', /* c */);`)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"a": map[string]any{"0": int64(1), "1": int64(2), "x": "q\"\n"},
		"b": true, "c": -1.5, "5": "five", "6": "six",
	}
	if !reflect.DeepEqual(other, want) {
		t.Errorf("got %#v\nwant %#v", other, want)
	}

	for _, bad := range []string{
		`<?php return ['a' => getenv('X')];`,
		`<?php return ['a' => 'unterminated];`,
		`<?php return "not an array";`,
		`<?php echo 1;`,
		`<?php return ['a' => "x$y"];`,
	} {
		if _, err := parsePHPArrayFile(bad); err == nil {
			t.Errorf("expected error for %s", bad)
		}
	}
	_, err = parsePHPArrayFile("<?php\nreturn [\n 'a' => FOO,\n];")
	if err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("error should name the line: %v", err)
	}
}

func TestPlanMagento2Fixture(t *testing.T) {
	dir := fixtures.Magento2AppSource()
	steps, err := Plan(Spec{Type: TypeMagento2, Env: map[string]string{"MAGE_MODE": "production"}}, dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := names(steps), []string{"composer install", "di compile", "static content deploy"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("steps = %q, want %q", got, want)
	}
	if got := steps[0].Script; got != "composer install --no-dev --optimize-autoloader --no-interaction" {
		t.Errorf("composer = %q", got)
	}
	// Locales and themes come from config.php: en_US default + de_DE store.
	want := "php bin/magento setup:static-content:deploy -f --jobs 4 --theme Vendor/base --theme Vendor/theme de_DE en_US"
	if got := steps[2].Script; got != want {
		t.Errorf("scd = %q\nwant %q", got, want)
	}
	for _, s := range steps {
		if s.Env["MAGE_MODE"] != "production" || s.Dir != "." {
			t.Errorf("step %q env/dir = %v %q", s.Name, s.Env, s.Dir)
		}
	}

	steps, err = Plan(Spec{Type: TypeMagento2, Locales: []string{"fr_FR"}, Themes: []string{"Vendor/theme"}, Jobs: 2}, dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := steps[2].Script; got != "php bin/magento setup:static-content:deploy -f --jobs 2 --theme Vendor/theme fr_FR" {
		t.Errorf("scd = %q", got)
	}

	for _, tc := range []struct {
		spec Spec
		want string
	}{
		{Spec{Type: TypeMagento2, Themes: []string{"Other/theme"}}, "not registered in app/etc/config.php"},
		{Spec{Type: TypeMagento2, Themes: []string{"x; rm -rf /"}}, "Vendor/name"},
		{Spec{Type: TypeMagento2, Locales: []string{"en_US && curl"}}, "locale code"},
		{Spec{Type: TypeMagento2, Magepack: true}, "magepack.config.js is missing"},
	} {
		if _, err := Plan(tc.spec, dir); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Plan(%+v) error = %v, want %q", tc.spec, err, tc.want)
		}
	}
}

// magento2Tree is a minimal magento2 checkout plus extra files.
func magento2Tree(t *testing.T, extra map[string]string) string {
	files := map[string]string{
		"composer.json": "{}",
		"composer.lock": "{}",
		"bin/magento":   "",
		"app/etc/config.php": `<?php return ['themes' => [
  'frontend/Acme/hyva' => ['theme_path' => 'Acme/hyva', 'area' => 'frontend', 'parent_id' => 'Hyva/default'],
  'frontend/Acme/pwa' => ['theme_path' => 'Acme/pwa', 'area' => 'frontend', 'parent_id' => null],
  'adminhtml/Magento/backend' => ['theme_path' => 'Magento/backend', 'area' => 'adminhtml', 'parent_id' => null],
]];`,
	}
	for k, v := range extra {
		files[k] = v
	}
	return tree(t, files)
}

func TestPlanMagento2ThemeBuilds(t *testing.T) {
	dir := magento2Tree(t, map[string]string{
		"app/design/frontend/Acme/hyva/web/tailwind/package.json":      `{"scripts":{"build-prod":"x"}}`,
		"app/design/frontend/Acme/hyva/web/tailwind/package-lock.json": `{}`,
		"app/design/frontend/Acme/pwa/package.json":                    `{"scandipwa":{"type":"theme"}}`,
		"app/design/frontend/Acme/pwa/yarn.lock":                       ``,
		"app/design/frontend/Acme/plain/web/css/a.css":                 ``,
		"magepack.config.js":                                           `module.exports = []`,
		"package.json":                                                 `{}`,
		"package-lock.json":                                            `{}`,
	})
	steps, err := Plan(Spec{Type: TypeMagento2, Magepack: true}, dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"composer install", "di compile", "hyva theme Acme/hyva", "scandipwa theme Acme/pwa", "static content deploy", "magepack bundle"}
	if got := names(steps); !reflect.DeepEqual(got, want) {
		t.Fatalf("steps = %q\nwant %q", got, want)
	}
	if s := steps[2]; s.Dir != "app/design/frontend/Acme/hyva/web/tailwind" || s.Script != "npm ci --no-audit --no-fund && npm run build-prod" {
		t.Errorf("hyva step = %+v", s)
	}
	if s := steps[3]; s.Dir != "app/design/frontend/Acme/pwa" || s.Script != "yarn install --frozen-lockfile --non-interactive && yarn run build" {
		t.Errorf("scandipwa step = %+v", s)
	}
	if got := steps[4].Script; got != "php bin/magento setup:static-content:deploy -f --jobs 4 --theme Acme/hyva --theme Acme/pwa --theme Magento/backend en_US" {
		t.Errorf("scd = %q", got)
	}
	if !strings.Contains(steps[5].Script, "npx --no-install magepack bundle") {
		t.Errorf("magepack = %q", steps[5].Script)
	}

	// Only the selected theme is built.
	steps, err = Plan(Spec{Type: TypeMagento2, Themes: []string{"Acme/pwa"}}, dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(steps); !reflect.DeepEqual(got, []string{"composer install", "di compile", "scandipwa theme Acme/pwa", "static content deploy"}) {
		t.Errorf("steps = %q", got)
	}

	noLock := magento2Tree(t, map[string]string{"app/design/frontend/Acme/hyva/web/tailwind/package.json": `{}`})
	if _, err := Plan(Spec{Type: TypeMagento2}, noLock); err == nil || !strings.Contains(err.Error(), "commit the lockfile") {
		t.Errorf("missing theme lockfile: %v", err)
	}
}

func TestPlanMagento2MissingFiles(t *testing.T) {
	for file, want := range map[string]string{
		"composer.lock":      "commit composer.lock",
		"app/etc/config.php": "app:config:dump",
		"bin/magento":        "bin/magento not found",
	} {
		dir := magento2Tree(t, nil)
		if err := os.Remove(filepath.Join(dir, file)); err != nil {
			t.Fatal(err)
		}
		if _, err := Plan(Spec{Type: TypeMagento2}, dir); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("without %s: %v", file, err)
		}
	}
}

func TestPlanMagento1(t *testing.T) {
	if _, err := Plan(Spec{Type: TypeMagento1}, t.TempDir()); err == nil || !strings.Contains(err.Error(), "app/Mage.php") {
		t.Errorf("non-M1 tree: %v", err)
	}
	steps, err := Plan(Spec{Type: TypeMagento1}, tree(t, map[string]string{"app/Mage.php": "<?php"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := names(steps); !reflect.DeepEqual(got, []string{"minify skin and js", "normalize permissions"}) {
		t.Fatalf("steps = %q", got)
	}
	if !strings.Contains(steps[0].Script, "php -- skin skin.min js js.min") {
		t.Errorf("minify script = %q", steps[0].Script[:80])
	}
}

func TestMinifyHeredocDelimiterAbsentFromSource(t *testing.T) {
	if strings.Contains(minifyPHP, minifyHeredoc) {
		t.Fatalf("minify.php contains the heredoc delimiter %q; the step script would be cut short", minifyHeredoc)
	}
}

func TestPlanNode(t *testing.T) {
	npm := tree(t, map[string]string{"package.json": "{}", "package-lock.json": "{}"})
	yarn := tree(t, map[string]string{"package.json": "{}", "yarn.lock": ""})
	for _, typ := range []string{TypeNodeJS, TypeAngular, TypePWAStudio} {
		steps, err := Plan(Spec{Type: typ}, npm)
		if err != nil {
			t.Fatal(err)
		}
		if steps[0].Script != "npm ci --no-audit --no-fund" || steps[1].Script != "npm run build" {
			t.Errorf("%s npm: %+v", typ, steps)
		}
		steps, err = Plan(Spec{Type: typ, NodeBuildScript: "build:prod"}, yarn)
		if err != nil {
			t.Fatal(err)
		}
		if steps[0].Script != "yarn install --frozen-lockfile --non-interactive" || steps[1].Script != "yarn run build:prod" {
			t.Errorf("%s yarn: %+v", typ, steps)
		}
	}
	if _, err := Plan(Spec{Type: TypeNodeJS}, tree(t, map[string]string{"package.json": "{}"})); err == nil || !strings.Contains(err.Error(), "lockfile") {
		t.Errorf("no lockfile: %v", err)
	}
	if _, err := Plan(Spec{Type: TypeNodeJS, NodeBuildScript: "build; rm -rf /"}, npm); err == nil {
		t.Error("script name with shell syntax accepted")
	}
}

func TestPlanPWAStudioMultiStore(t *testing.T) {
	dir := tree(t, map[string]string{"package.json": "{}", "yarn.lock": ""})
	steps, err := Plan(Spec{Type: TypePWAStudio, Env: map[string]string{"MAGENTO_BACKEND_URL": "https://shop.example"}, Stores: []PWAStore{
		{Code: "default", Website: "base", Currency: "USD"},
		{Code: "de", Website: "eu", Currency: "EUR"},
	}}, dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(steps); !reflect.DeepEqual(got, []string{"install dependencies", "pwa build default", "pwa build de", "collect store builds"}) {
		t.Fatalf("steps = %q", got)
	}
	de := steps[2]
	wantEnv := map[string]string{"STORE_VIEW_CODE": "de", "WEBSITE_CODE": "eu", "CURRENCY": "EUR", "MAGENTO_BACKEND_URL": "https://shop.example"}
	if !reflect.DeepEqual(de.Env, wantEnv) {
		t.Errorf("env = %v", de.Env)
	}
	if !strings.Contains(de.Script, "yarn run build") || !strings.Contains(de.Script, "mv dist .mageflow-stores/de") {
		t.Errorf("script = %q", de.Script)
	}
	for _, bad := range [][]PWAStore{{{Code: "../x"}}, {{Code: "a"}, {Code: "a"}}, {{Code: "a", Currency: "euro"}}} {
		if _, err := Plan(Spec{Type: TypePWAStudio, Stores: bad}, dir); err == nil {
			t.Errorf("stores %+v accepted", bad)
		}
	}
}

func TestPlanCustomAndErrors(t *testing.T) {
	dir := t.TempDir()
	steps, err := Plan(Spec{Type: TypeCustom, Steps: []CustomStep{{Name: "make", Run: "make all", Dir: "src/"}, {Run: "true"}}}, dir)
	if err != nil {
		t.Fatal(err)
	}
	if steps[0].Dir != "src" || steps[0].Script != "make all" || steps[1].Name != "step 2" || steps[1].Dir != "." {
		t.Errorf("steps = %+v", steps)
	}
	for _, tc := range []struct {
		spec Spec
		want string
	}{
		{Spec{Type: TypeCustom}, "build.steps is empty"},
		{Spec{Type: TypeCustom, Steps: []CustomStep{{Run: "x", Dir: "../up"}}}, "inside it"},
		{Spec{Type: TypeCustom, Steps: []CustomStep{{Run: "x", Dir: "/abs"}}}, "relative"},
		{Spec{Type: TypeCustom, Steps: []CustomStep{{Name: "n", Run: "  "}}}, "empty run"},
		{Spec{Type: "rails"}, "unknown build.type"},
		{Spec{}, "build.type is not set"},
		{Spec{Type: TypeCustom, Env: map[string]string{"BAD-NAME": "1"}, Steps: []CustomStep{{Run: "x"}}}, "valid variable name"},
	} {
		if _, err := Plan(tc.spec, dir); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Plan(%+v) = %v, want %q", tc.spec, err, tc.want)
		}
	}
	if _, err := Plan(Spec{Type: TypeCustom}, filepath.Join(dir, "missing")); err == nil {
		t.Error("missing checkout accepted")
	}
}
