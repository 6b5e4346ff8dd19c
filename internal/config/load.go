package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Error is a configuration problem at a place in the file.
type Error struct {
	File string
	Line int
	Msg  string
	Hint string
}

func (e *Error) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	s := loc + ": " + e.Msg
	if e.Hint != "" {
		s += " (" + e.Hint + ")"
	}
	return s
}

// Errors collects every problem so an operator fixes them in one pass.
type Errors []*Error

func (es Errors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "\n")
}

// Load reads the file at path. A missing file is an error unless allowMissing
// is set, in which case the defaults are returned (so `mageflow` works in an
// empty directory and says which file it would read).
func Load(path string, allowMissing bool) (*Config, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && allowMissing {
		c := Default()
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read config: %w (create it from the example in docs/configuration.md, or pass --config FILE / set %s)", err, EnvFile)
	}
	return Parse(path, data)
}

// Parse validates data as the content of file path.
func Parse(path string, data []byte) (*Config, error) {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			c := Default()
			c.File = path
			return c, nil
		}
		return nil, &Error{File: path, Line: yamlLine(err.Error()), Msg: "not valid YAML: " + stripYAMLPrefix(err.Error()), Hint: "check indentation and quoting"}
	}
	var errs Errors
	doc := &root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	checkKeys(path, doc, reflect.TypeOf(Config{}), "", &errs)
	if len(errs) > 0 {
		return nil, errs
	}
	c := &Config{}
	if err := doc.Decode(c); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			for _, m := range te.Errors {
				errs = append(errs, &Error{File: path, Line: yamlLine(m), Msg: stripYAMLPrefix(m), Hint: "see docs/configuration.md for the expected type"})
			}
			return nil, errs
		}
		return nil, &Error{File: path, Line: yamlLine(err.Error()), Msg: strings.TrimPrefix(stripYAMLPrefix(err.Error()), ": ")}
	}
	c.File = path
	base, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	c.applyDefaults(base)
	if errs := c.validate(path, doc); len(errs) > 0 {
		return nil, errs
	}
	return c, nil
}

var lineRe = regexp.MustCompile(`line (\d+)`)

func yamlLine(msg string) int {
	m := lineRe.FindStringSubmatch(msg)
	if m == nil {
		return 0
	}
	var n int
	fmt.Sscanf(m[1], "%d", &n)
	return n
}

func stripYAMLPrefix(msg string) string {
	msg = strings.TrimPrefix(msg, "yaml: ")
	msg = lineRe.ReplaceAllString(strings.TrimPrefix(msg, "unmarshal errors:\n  "), "")
	return strings.TrimPrefix(strings.TrimSpace(msg), ": ")
}

// checkKeys walks the YAML tree against the struct type and reports every key
// the type does not know, with the closest known key as a hint.
func checkKeys(file string, n *yaml.Node, t reflect.Type, path string, errs *Errors) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		if t == reflect.TypeOf(Duration{}) {
			return
		}
		if n.Kind != yaml.MappingNode {
			if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
				return
			}
			*errs = append(*errs, &Error{File: file, Line: n.Line, Msg: fmt.Sprintf("%s must be a mapping of keys", orRoot(path)), Hint: "known keys: " + strings.Join(knownKeys(t), ", ")})
			return
		}
		fields := map[string]reflect.Type{}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
			if tag == "" || tag == "-" {
				continue
			}
			fields[tag] = f.Type
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			ft, ok := fields[k.Value]
			if !ok {
				hint := "known keys: " + strings.Join(knownKeys(t), ", ")
				if s := closest(k.Value, knownKeys(t)); s != "" {
					hint = fmt.Sprintf("did you mean %q?", s)
				}
				*errs = append(*errs, &Error{File: file, Line: k.Line, Msg: fmt.Sprintf("unknown key %q in %s", k.Value, orRoot(path)), Hint: hint})
				continue
			}
			checkKeys(file, v, ft, join(path, k.Value), errs)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			checkKeys(file, n.Content[i+1], t.Elem(), join(path, n.Content[i].Value), errs)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i, c := range n.Content {
			checkKeys(file, c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), errs)
		}
	}
}

func orRoot(p string) string {
	if p == "" {
		return "the top level"
	}
	return p
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}

func knownKeys(t reflect.Type) []string {
	var ks []string
	for i := 0; i < t.NumField(); i++ {
		tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
		if tag != "" && tag != "-" {
			ks = append(ks, tag)
		}
	}
	sort.Strings(ks)
	return ks
}

// closest returns the known key within edit distance 2 of s, if any.
func closest(s string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := editDistance(s, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// UnmarshalYAML reads a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration, write e.g. 90s, 20m or 2h", n.Line, n.Value)
	}
	d.Duration = v
	return nil
}

// MarshalYAML writes the duration back as a string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

var (
	nameRe   = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	envKeyRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	localeRe = regexp.MustCompile(`^[a-z]{2,3}_[A-Z][A-Za-z]{1,3}$`)
)

// validate checks values once the types are right. line() finds the line of
// a dotted path in the YAML tree so every error points at the file.
func (c *Config) validate(file string, doc *yaml.Node) Errors {
	var errs Errors
	add := func(path, msg, hint string) {
		errs = append(errs, &Error{File: file, Line: lineOf(doc, path), Msg: msg, Hint: hint})
	}
	if !strings.Contains(c.Temporal.Address, ":") {
		add("temporal.address", fmt.Sprintf("temporal.address %q needs a host:port", c.Temporal.Address), "e.g. 127.0.0.1:7233")
	}
	if s3 := c.Artifacts.S3; s3 != nil {
		if s3.Bucket == "" {
			add("artifacts.s3", "artifacts.s3.bucket is required", "name the bucket that holds release artifacts")
		}
		if s3.Endpoint != "" {
			if u, err := url.Parse(s3.Endpoint); err != nil || u.Scheme == "" || u.Host == "" {
				add("artifacts.s3.endpoint", fmt.Sprintf("artifacts.s3.endpoint %q is not a URL", s3.Endpoint), "e.g. http://127.0.0.1:9000")
			}
		}
		if c.Artifacts.Dir != "" && lineOf(doc, "artifacts.dir") > 0 {
			add("artifacts.dir", "artifacts.dir and artifacts.s3 are both set", "keep one: dir for a local folder, s3 for a bucket")
		}
	}
	if !strings.Contains(c.Server.Listen, ":") {
		add("server.listen", fmt.Sprintf("server.listen %q needs host:port", c.Server.Listen), "e.g. 127.0.0.1:8080")
	}
	for _, ref := range []struct{ path, v string }{{"server.auth.token", c.Server.Auth.Token}, {"server.auth.basic_password", c.Server.Auth.BasicPassword}, {"server.lifecycle_token", c.Server.LifecycleToken}} {
		if ref.v != "" {
			if err := CheckSecretRef(ref.v); err != nil {
				add(ref.path, err.Error(), "write file:NAME or env:NAME, never the secret itself")
			}
		}
	}
	if (c.Server.Auth.BasicUser == "") != (c.Server.Auth.BasicPassword == "") {
		add("server.auth", "server.auth.basic_user and basic_password go together", "set both, or use token")
	}
	if strings.EqualFold(c.Server.Auth.BasicUser, "token") {
		add("server.auth.basic_user", `server.auth.basic_user "token" is the name every token holder acts under`, "choose a person's name, e.g. ops")
	}
	if q := c.Server.LifecycleSQS; q != nil {
		if u, err := url.Parse(q.QueueURL); err != nil || u.Scheme == "" || u.Host == "" {
			add("server.lifecycle_sqs", fmt.Sprintf("server.lifecycle_sqs.queue_url %q is not a queue URL", q.QueueURL), "e.g. https://sqs.eu-west-1.amazonaws.com/123456789012/mageflow-lifecycle")
		}
	}
	if c.Server.WebhookMaxAge.Duration < 0 {
		add("server.webhook_max_age", "server.webhook_max_age must be positive", "a duration such as 1h; deliveries of older pushes are refused")
	}
	if c.Server.MaxBody < 0 {
		add("server.max_body", "server.max_body must be positive", "bytes, e.g. 5242880")
	}
	if c.Worker.MaxConcurrentBuilds < 0 {
		add("worker.max_concurrent_builds", "worker.max_concurrent_builds must be positive", "")
	}
	if c.Git.SSHKey != "" && !strings.HasPrefix(c.Git.SSHKey, "file:") {
		add("git.ssh_key", "git.ssh_key must be a file: reference", "put the private key (mode 0600) in secrets.dir and write file:NAME")
	}
	for _, ref := range []struct{ path, v string }{{"git.ssh_key", c.Git.SSHKey}, {"git.token", c.Git.Token}} {
		if ref.v != "" {
			if err := CheckSecretRef(ref.v); err != nil {
				add(ref.path, err.Error(), "write file:NAME (a file in secrets.dir) or env:NAME")
			}
		}
	}
	for _, hn := range sortedKeys(c.Hosts) {
		h := c.Hosts[hn]
		hp := "hosts." + hn
		if h == nil {
			add(hp, fmt.Sprintf("host %q is empty", hn), "give it at least root: and url:")
			continue
		}
		if !nameRe.MatchString(hn) {
			add(hp, fmt.Sprintf("host name %q is not usable in task queue names", hn), "lower-case letters, digits, - and _")
		}
		if h.Root == "" || !filepath.IsAbs(h.Root) {
			add(hp, fmt.Sprintf("%s.root is required", hp), "e.g. /srv/mageflow: releases live under <root>/<app>/")
		}
		if h.URL != "" {
			if u, err := url.Parse(h.URL); err != nil || u.Scheme == "" || u.Host == "" {
				add(hp+".url", fmt.Sprintf("%s.url %q is not a URL", hp, h.URL), "e.g. http://10.0.0.5:80")
			}
		}
		if h.PHPFPM.Service != "" && h.PHPFPM.PIDFile != "" {
			add(hp+".php_fpm", fmt.Sprintf("%s.php_fpm: set service or pid_file, not both", hp), "service reloads with systemctl, pid_file with SIGUSR2")
		}
		validateHardening(hp, h.Hardening, add)
		if ref := h.Nginx.MaintenanceBypass; ref != "" {
			if err := CheckSecretRef(ref); err != nil {
				add(hp+".nginx.maintenance_bypass", err.Error(), "write file:NAME or env:NAME")
			}
		}
	}
	for _, gn := range sortedKeys(c.Groups) {
		g := c.Groups[gn]
		gp := "groups." + gn
		if g == nil {
			add(gp, fmt.Sprintf("group %q is empty", gn), "give it provider:, name: and host:")
			continue
		}
		if g.Provider != "aws" && g.Provider != "docker" {
			add(gp+".provider", fmt.Sprintf("%s.provider %q is not known", gp, g.Provider), "aws or docker")
		}
		validateDockerGroup(gp, g, add)
		if g.Name == "" {
			add(gp, fmt.Sprintf("%s.name is required", gp), "the autoscaling group's name at the provider")
		}
		if g.Host.Root == "" {
			add(gp+".host", fmt.Sprintf("%s.host.root is required", gp), "where releases live on every instance, e.g. /srv/mageflow")
		}
		if c.Hosts[gn] != nil {
			add(gp, fmt.Sprintf("%q is both a host and a group", gn), "give them different names")
		}
	}
	for _, sn := range sortedKeys(c.Schedules) {
		sc := c.Schedules[sn]
		sp := "schedules." + sn
		if sc == nil {
			add(sp, fmt.Sprintf("schedule %q is empty", sn), "give it cron: or every:, and action:")
			continue
		}
		if (sc.Cron == "") == (sc.Every.Duration == 0) {
			add(sp, fmt.Sprintf("%s needs exactly one of cron: and every:", sp), `e.g. cron: "0 3 * * 1" (Mondays 03:00 UTC)`)
		}
		switch sc.Action {
		case "refresh":
			if c.Groups[sc.Group] == nil {
				add(sp+".group", fmt.Sprintf("%s.group %q is not declared in the groups section", sp, sc.Group), "a refresh rolls a new image through a group")
			}
		case "harden":
			validateHardenSchedule(c, sp, sc, add)
		case "build":
			if c.Apps[sc.App] == nil || sc.Ref == "" {
				add(sp, fmt.Sprintf("%s builds: it needs app: (a configured app) and ref:", sp), "")
			}
		default:
			add(sp+".action", fmt.Sprintf("%s.action %q is not known", sp, sc.Action), "refresh, build or harden")
		}
	}
	for _, name := range c.AppNames() {
		a := c.Apps[name]
		p := "apps." + name
		if a == nil {
			add(p, fmt.Sprintf("app %q is empty", name), "give it at least repo: and type:")
			continue
		}
		if !nameRe.MatchString(name) {
			add(p, fmt.Sprintf("app name %q is not usable in paths and workflow ids", name), "use lower-case letters, digits, - and _")
		}
		if a.Repo == "" {
			add(p, fmt.Sprintf("%s.repo is required", p), "a URL go-git can fetch: a path, file://, https:// or ssh://")
		} else if !filepath.IsAbs(a.Repo) && schemelessHost(a.Repo, "") != "" {
			add(p+".repo", fmt.Sprintf("%s.repo %q has no scheme, so git would read it as a local directory", p, a.Repo), schemeHint(a.Repo))
		}
		if !contains(AppTypes, a.Type) {
			add(p+".type", fmt.Sprintf("%s.type %q is not a known app type", p, a.Type), "one of "+strings.Join(AppTypes, ", "))
		}
		b := a.Build
		if !contains(Builders, b.Builder) {
			add(p+".build.builder", fmt.Sprintf("%s.build.builder %q is not a builder", p, b.Builder), "docker or local")
		}
		if b.Network == "host" {
			add(p+".build.network", fmt.Sprintf("%s.build.network host would give builds every route the build host has", p), "create a network that reaches only your package mirrors and name it here")
		}
		if b.Builder == "local" && (b.Network != "" || b.Image != "") {
			add(p+".build.builder", fmt.Sprintf("%s.build.image and network apply to the docker builder only", p), "remove them or set builder: docker")
		}
		if b.Jobs < 1 || b.Jobs > 64 {
			add(p+".build.jobs", fmt.Sprintf("%s.build.jobs must be between 1 and 64", p), "")
		}
		for _, k := range sortedKeys(b.Env) {
			if !envKeyRe.MatchString(k) {
				add(p+".build.env", fmt.Sprintf("%s.build.env key %q is not an environment variable name", p, k), "letters, digits and _")
			}
		}
		for _, l := range b.Locales {
			if !localeRe.MatchString(l) {
				add(p+".build.locales", fmt.Sprintf("%s.build.locales: %q is not a locale", p, l), "e.g. en_US, de_DE")
			}
		}
		if a.Type == "custom" && len(b.Steps) == 0 {
			add(p+".type", fmt.Sprintf("%s is type custom but has no build.steps", p), "list steps with name: and run:")
		}
		if a.Type != "custom" && len(b.Steps) > 0 {
			add(p+".build.steps", fmt.Sprintf("%s.build.steps is only used by type custom", p), "remove it or set type: custom")
		}
		for i, s := range b.Steps {
			if s.Name == "" || s.Run == "" {
				add(fmt.Sprintf("%s.build.steps", p), fmt.Sprintf("%s.build.steps[%d] needs name: and run:", p, i), "")
			}
			if strings.Contains(s.Dir, "..") || filepath.IsAbs(s.Dir) {
				add(fmt.Sprintf("%s.build.steps", p), fmt.Sprintf("%s.build.steps[%d].dir must stay inside the checkout", p, i), "a relative path without ..")
			}
		}
		for i, s := range b.Stores {
			if s.Code == "" {
				add(p+".build.stores", fmt.Sprintf("%s.build.stores[%d].code is required", p, i), "the store view code")
			}
		}
		if len(b.Stores) > 0 && a.Type != "pwastudio" {
			add(p+".build.stores", fmt.Sprintf("%s.build.stores is only used by type pwastudio", p), "")
		}
		if b.Timeout.Duration < time.Minute {
			add(p+".build.timeout", fmt.Sprintf("%s.build.timeout %s is too short", p, b.Timeout.Duration), "at least 1m")
		}
		for _, s := range a.Shared {
			if s == "" || strings.Contains(s, "..") || filepath.IsAbs(s) {
				add(p+".shared", fmt.Sprintf("%s.shared entry %q must be a relative path inside the release", p, s), "")
			}
		}
		if w := a.Webhook; w != nil {
			if !contains(Providers, w.Provider) {
				add(p+".webhook.provider", fmt.Sprintf("%s.webhook.provider %q is not supported", p, w.Provider), "github, gitlab or bitbucket")
			}
			if w.Secret == "" {
				add(p+".webhook", fmt.Sprintf("%s.webhook.secret is required", p), "unsigned webhooks are refused; write file:NAME or env:NAME")
			} else if err := CheckSecretRef(w.Secret); err != nil {
				add(p+".webhook.secret", err.Error(), "write file:NAME (a file in secrets.dir) or env:NAME, never the secret itself")
			}
		}
		branches := map[string]string{}
		for _, en := range sortedKeys(a.Environments) {
			e := a.Environments[en]
			ep := p + ".environments." + en
			if e == nil || e.Branch == "" {
				add(ep, fmt.Sprintf("%s.branch is required", ep), "the branch whose pushes build for this environment")
				continue
			}
			if !nameRe.MatchString(en) {
				add(ep, fmt.Sprintf("environment name %q is not usable in ids", en), "lower-case letters, digits, - and _")
			}
			if other, ok := branches[e.Branch]; ok {
				add(ep+".branch", fmt.Sprintf("branch %q feeds both %s and %s", e.Branch, other, en), "map a branch to one environment")
			}
			branches[e.Branch] = en
			if !contains(Approvals, e.Approval) {
				add(ep+".approval", fmt.Sprintf("%s.approval %q is not known", ep, e.Approval), "none or required")
			}
			if e.Group != "" {
				if len(e.Hosts) > 0 {
					add(ep+".group", fmt.Sprintf("%s names both hosts and a group", ep), "an environment deploys to a host list or to a group's instances")
				}
				if c.Groups[e.Group] == nil {
					add(ep+".group", fmt.Sprintf("%s.group names %q, which is not declared under groups:", ep, e.Group), "declare it with provider:, name: and host:")
				}
			}
			for _, h := range e.Hosts {
				if c.Hosts[h] == nil {
					add(ep+".hosts", fmt.Sprintf("%s.hosts names %q, which is not declared under hosts:", ep, h), "declare it: hosts: {"+h+": {root: /srv/mageflow, url: http://…}}")
				}
			}
			if e.URL != "" {
				if u, err := url.Parse(e.URL); err != nil || u.Scheme == "" || u.Host == "" {
					add(ep+".url", fmt.Sprintf("%s.url %q is not a URL", ep, e.URL), "the environment's public URL, e.g. https://shop.example.com")
				}
			}
			for _, ref := range []string{e.EnvPHP, e.Config} {
				if ref != "" {
					if err := CheckSecretRef(ref); err != nil {
						add(ep, err.Error(), "env_php and config are secret references: file:NAME or env:NAME")
					}
				}
			}
			if e.KeepReleases != 0 && e.KeepReleases < 2 {
				add(ep+".keep_releases", fmt.Sprintf("%s.keep_releases must be at least 2", ep), "current and the one before it are always kept")
			}
			if e.AutoDeploy && len(e.Hosts) == 0 && e.Group == "" {
				add(ep+".auto_deploy", fmt.Sprintf("%s.auto_deploy needs hosts", ep), "list the hosts the environment deploys to")
			}
		}
	}
	return errs
}

// CheckSecretRef validates a secret reference without reading it.
func CheckSecretRef(ref string) error {
	kind, name, ok := strings.Cut(ref, ":")
	if !ok || name == "" {
		return fmt.Errorf("secret reference %q has no kind", redact(ref))
	}
	switch kind {
	case "file":
		if strings.Contains(name, "..") || strings.HasPrefix(name, "/") {
			return fmt.Errorf("secret file %q must be a name inside secrets.dir", name)
		}
	case "env":
		if !envKeyRe.MatchString(name) {
			return fmt.Errorf("secret env %q is not a variable name", name)
		}
	default:
		return fmt.Errorf("secret reference kind %q is not known", kind)
	}
	return nil
}

// redact keeps an accidental inline secret out of error messages.
func redact(s string) string {
	if len(s) <= 4 {
		return "****"
	}
	return s[:2] + strings.Repeat("*", 6)
}

// lineOf returns the line of the node at a dotted path, or of its nearest
// existing parent.
func lineOf(doc *yaml.Node, path string) int {
	n := doc
	line := 0
	for _, part := range strings.Split(path, ".") {
		if n == nil || n.Kind != yaml.MappingNode {
			break
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == part {
				line = n.Content[i].Line
				next = n.Content[i+1]
				break
			}
		}
		if next == nil {
			break
		}
		n = next
	}
	return line
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
