package config

import (
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

var (
	nameRe   = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	envKeyRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	localeRe = regexp.MustCompile(`^[a-z]{2,3}_[A-Z][A-Za-z]{1,3}$`)
)

// validator collects the value problems of one file; add records one at
// the line of a dotted path, so every error points into the file.
type validator struct {
	c    *Config
	file string
	doc  *yaml.Node
	errs Errors
}

func (v *validator) add(path, msg, hint string) {
	v.errs = append(v.errs, &Error{File: v.file, Line: lineOf(v.doc, path), Msg: msg, Hint: hint})
}

// validate checks values once the types are right, one section at a time
// and in file order, so an operator reads the errors top to bottom.
func (c *Config) validate(file string, doc *yaml.Node) Errors {
	v := &validator{c: c, file: file, doc: doc}
	v.temporal()
	v.artifacts()
	v.server()
	v.workerAndGit()
	for _, hn := range sortedKeys(c.Hosts) {
		v.host(hn, c.Hosts[hn])
	}
	for _, gn := range sortedKeys(c.Groups) {
		v.group(gn, c.Groups[gn])
	}
	for _, sn := range sortedKeys(c.Schedules) {
		v.schedule(sn, c.Schedules[sn])
	}
	for _, name := range c.AppNames() {
		v.app(name, c.Apps[name])
	}
	return v.errs
}

// isURL reports whether s parses as a URL with a scheme and a host.
func isURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.Scheme != "" && u.Host != ""
}

// secretRefs checks each non-empty secret reference, keyed by its path.
func (v *validator) secretRefs(hint string, refs ...[2]string) {
	for _, ref := range refs {
		if ref[1] != "" {
			if err := CheckSecretRef(ref[1]); err != nil {
				v.add(ref[0], err.Error(), hint)
			}
		}
	}
}

func (v *validator) temporal() {
	if a := v.c.Temporal.Address; !strings.Contains(a, ":") {
		v.add("temporal.address", fmt.Sprintf("temporal.address %q needs a host:port", a), "e.g. 127.0.0.1:7233")
	}
}

func (v *validator) artifacts() {
	s3 := v.c.Artifacts.S3
	if s3 == nil {
		return
	}
	if s3.Bucket == "" {
		v.add("artifacts.s3", "artifacts.s3.bucket is required", "name the bucket that holds release artifacts")
	}
	if s3.Endpoint != "" && !isURL(s3.Endpoint) {
		v.add("artifacts.s3.endpoint", fmt.Sprintf(fmtS3Endpoint, s3.Endpoint), "e.g. http://127.0.0.1:9000")
	}
	if v.c.Artifacts.Dir != "" && lineOf(v.doc, "artifacts.dir") > 0 {
		v.add("artifacts.dir", "artifacts.dir and artifacts.s3 are both set", hintArtifactsDirAnd)
	}
}

func (v *validator) server() {
	s := v.c.Server
	if !strings.Contains(s.Listen, ":") {
		v.add("server.listen", fmt.Sprintf("server.listen %q needs host:port", s.Listen), "e.g. 127.0.0.1:8080")
	}
	v.secretRefs(hintSecretRefNoValue,
		[2]string{"server.auth.token", s.Auth.Token},
		[2]string{"server.auth.basic_password", s.Auth.BasicPassword},
		[2]string{"server.lifecycle_token", s.LifecycleToken})
	if (s.Auth.BasicUser == "") != (s.Auth.BasicPassword == "") {
		v.add("server.auth", "server.auth.basic_user and basic_password go together", "set both, or use token")
	}
	if strings.EqualFold(s.Auth.BasicUser, "token") {
		v.add("server.auth.basic_user", msgTokenUser, "choose a person's name, e.g. ops")
	}
	if q := s.LifecycleSQS; q != nil && !isURL(q.QueueURL) {
		v.add("server.lifecycle_sqs", fmt.Sprintf(fmtQueueURL, q.QueueURL), hintQueueURL)
	}
	if s.WebhookMaxAge.Duration < 0 {
		v.add("server.webhook_max_age", "server.webhook_max_age must be positive", hintWebhookMaxAge)
	}
	if s.MaxBody < 0 {
		v.add("server.max_body", "server.max_body must be positive", "bytes, e.g. 5242880")
	}
}

func (v *validator) workerAndGit() {
	if v.c.Worker.MaxConcurrentBuilds < 0 {
		v.add("worker.max_concurrent_builds", "worker.max_concurrent_builds must be positive", "")
	}
	g := v.c.Git
	if g.SSHKey != "" && !strings.HasPrefix(g.SSHKey, "file:") {
		v.add("git.ssh_key", msgGitSSHKeyRef, hintGitSSHKeyRef)
	}
	v.secretRefs(hintSecretInDir, [2]string{"git.ssh_key", g.SSHKey}, [2]string{"git.token", g.Token})
}

// host checks hosts.<hn>.
func (v *validator) host(hn string, h *Host) {
	hp := "hosts." + hn
	if h == nil {
		v.add(hp, fmt.Sprintf("host %q is empty", hn), "give it at least root: and url:")
		return
	}
	if !nameRe.MatchString(hn) {
		v.add(hp, fmt.Sprintf(fmtHostName, hn), "lower-case letters, digits, - and _")
	}
	v.hostRoot(hn, hp, h)
	if h.URL != "" && !isURL(h.URL) {
		v.add(hp+".url", fmt.Sprintf("%s.url %q is not a URL", hp, h.URL), "e.g. http://10.0.0.5:80")
	}
	if h.PHPFPM.Service != "" && h.PHPFPM.PIDFile != "" {
		v.add(hp+".php_fpm", fmt.Sprintf(fmtHostPHPFPM, hp), hintHostPHPFPM)
	}
	validateHardening(hp, h.Hardening, v.add)
	v.secretRefs(hintSecretRef, [2]string{hp + ".nginx.maintenance_bypass", h.Nginx.MaintenanceBypass})
}

// hostRoot checks hosts.<hn>.root: required where releases go (an app's
// environment deploys to the host, or the host has no hardening block
// either), optional on a host that is only hardened — its Magento root
// comes from nginx (or hardening.root), never from root:.
func (v *validator) hostRoot(hn, hp string, h *Host) {
	if h.Root != "" {
		if !filepath.IsAbs(h.Root) { // defaults resolve a relative root against the config's directory
			v.add(hp+".root", fmt.Sprintf(fmtHostRootAbs, hp, h.Root), hintHostRoot)
		}
		return
	}
	if deployers := v.deploysTo(hn); len(deployers) > 0 {
		v.add(hp, fmt.Sprintf(fmtHostRootDeploy, hp, strings.Join(deployers, ", ")), hintHostRoot)
	} else if h.Hardening == nil {
		v.add(hp, fmt.Sprintf(fmtHostRootNone, hp), hintHostRootNone)
	}
}

// deploysTo lists the app environments ("apps.A.environments.E") that
// deploy to host hn.
func (v *validator) deploysTo(hn string) []string {
	var out []string
	for _, an := range sortedKeys(v.c.Apps) {
		a := v.c.Apps[an]
		if a == nil {
			continue
		}
		for _, en := range sortedKeys(a.Environments) {
			if e := a.Environments[en]; e != nil && contains(e.Hosts, hn) {
				out = append(out, "apps."+an+".environments."+en)
			}
		}
	}
	return out
}

// group checks groups.<gn>.
func (v *validator) group(gn string, g *Group) {
	gp := "groups." + gn
	if g == nil {
		v.add(gp, fmt.Sprintf("group %q is empty", gn), "give it provider:, name: and host:")
		return
	}
	if g.Provider != "aws" && g.Provider != "docker" {
		v.add(gp+".provider", fmt.Sprintf("%s.provider %q is not known", gp, g.Provider), "aws or docker")
	}
	validateDockerGroup(gp, g, v.add)
	if g.Name == "" {
		v.add(gp, fmt.Sprintf("%s.name is required", gp), hintGroupName)
	}
	if g.Host.Root == "" {
		v.add(gp+".host", fmt.Sprintf("%s.host.root is required", gp), hintGroupHostDir)
	}
	if v.c.Hosts[gn] != nil {
		v.add(gp, fmt.Sprintf("%q is both a host and a group", gn), "give them different names")
	}
}

// schedule checks schedules.<sn>.
func (v *validator) schedule(sn string, sc *Schedule) {
	sp := "schedules." + sn
	if sc == nil {
		v.add(sp, fmt.Sprintf("schedule %q is empty", sn), "give it cron: or every:, and action:")
		return
	}
	if (sc.Cron == "") == (sc.Every.Duration == 0) {
		v.add(sp, fmt.Sprintf(fmtScheduleWhen, sp), hintScheduleWhen)
	}
	switch sc.Action {
	case "refresh":
		if v.c.Groups[sc.Group] == nil {
			v.add(sp+".group", fmt.Sprintf(fmtScheduleGroup, sp, sc.Group), hintScheduleGroup)
		}
	case "harden":
		validateHardenSchedule(v.c, sp, sc, v.add)
	case "build":
		if v.c.Apps[sc.App] == nil || sc.Ref == "" {
			v.add(sp, fmt.Sprintf(fmtScheduleBuild, sp), "")
		}
	default:
		v.add(sp+".action", fmt.Sprintf("%s.action %q is not known", sp, sc.Action), "refresh, build or harden")
	}
}

// app checks apps.<name>: the app itself, its build, webhook and
// environments.
func (v *validator) app(name string, a *App) {
	p := "apps." + name
	if a == nil {
		v.add(p, fmt.Sprintf("app %q is empty", name), "give it at least repo: and type:")
		return
	}
	if !nameRe.MatchString(name) {
		v.add(p, fmt.Sprintf(fmtAppName, name), "use lower-case letters, digits, - and _")
	}
	if a.Repo == "" {
		v.add(p, fmt.Sprintf("%s.repo is required", p), hintAppRepo)
	} else if !filepath.IsAbs(a.Repo) && schemelessHost(a.Repo, "") != "" {
		v.add(p+".repo", fmt.Sprintf(fmtAppRepoScheme, p, a.Repo), schemeHint(a.Repo))
	}
	if !contains(AppTypes, a.Type) {
		v.add(p+".type", fmt.Sprintf("%s.type %q is not a known app type", p, a.Type), "one of "+strings.Join(AppTypes, ", "))
	}
	v.build(p, a.Build)
	v.buildSteps(p, a)
	for _, s := range a.Shared {
		if s == "" || strings.Contains(s, "..") || filepath.IsAbs(s) {
			v.add(p+".shared", fmt.Sprintf(fmtAppShared, p, s), "")
		}
	}
	v.webhook(p, a.Webhook)
	branches := map[string]string{}
	for _, en := range sortedKeys(a.Environments) {
		v.environment(p, en, a.Environments[en], branches)
	}
}

// build checks apps.<app>.build: builder, network, jobs, env and locales.
func (v *validator) build(p string, b Build) {
	if !contains(Builders, b.Builder) {
		v.add(p+".build.builder", fmt.Sprintf("%s.build.builder %q is not a builder", p, b.Builder), "docker or local")
	}
	if b.Network == "host" {
		v.add(p+".build.network", fmt.Sprintf(fmtBuildNetworkHost, p), hintBuildNetwork)
	}
	if b.Builder == "local" && (b.Network != "" || b.Image != "") {
		v.add(p+".build.builder", fmt.Sprintf(fmtBuildDockerOnly, p), "remove them or set builder: docker")
	}
	if b.Jobs < 1 || b.Jobs > 64 {
		v.add(p+".build.jobs", fmt.Sprintf("%s.build.jobs must be between 1 and 64", p), "")
	}
	for _, k := range sortedKeys(b.Env) {
		if !envKeyRe.MatchString(k) {
			v.add(p+".build.env", fmt.Sprintf(fmtBuildEnvKey, p, k), "letters, digits and _")
		}
	}
	for _, l := range b.Locales {
		if !localeRe.MatchString(l) {
			v.add(p+".build.locales", fmt.Sprintf("%s.build.locales: %q is not a locale", p, l), "e.g. en_US, de_DE")
		}
	}
}

// buildSteps checks the parts of apps.<app>.build that depend on the app
// type (custom steps, PWA Studio stores) and the timeout.
func (v *validator) buildSteps(p string, a *App) {
	b := a.Build
	if a.Type == "custom" && len(b.Steps) == 0 {
		v.add(p+".type", fmt.Sprintf("%s is type custom but has no build.steps", p), "list steps with name: and run:")
	}
	if a.Type != "custom" && len(b.Steps) > 0 {
		v.add(p+".build.steps", fmt.Sprintf("%s.build.steps is only used by type custom", p), "remove it or set type: custom")
	}
	for i, s := range b.Steps {
		if s.Name == "" || s.Run == "" {
			v.add(p+".build.steps", fmt.Sprintf("%s.build.steps[%d] needs name: and run:", p, i), "")
		}
		if strings.Contains(s.Dir, "..") || filepath.IsAbs(s.Dir) {
			v.add(p+".build.steps", fmt.Sprintf(fmtBuildStepDir, p, i), "a relative path without ..")
		}
	}
	for i, s := range b.Stores {
		if s.Code == "" {
			v.add(p+".build.stores", fmt.Sprintf("%s.build.stores[%d].code is required", p, i), "the store view code")
		}
	}
	if len(b.Stores) > 0 && a.Type != "pwastudio" {
		v.add(p+".build.stores", fmt.Sprintf("%s.build.stores is only used by type pwastudio", p), "")
	}
	if b.Timeout.Duration < time.Minute {
		v.add(p+".build.timeout", fmt.Sprintf("%s.build.timeout %s is too short", p, b.Timeout.Duration), "at least 1m")
	}
}

// webhook checks apps.<app>.webhook.
func (v *validator) webhook(p string, w *Webhook) {
	if w == nil {
		return
	}
	if !contains(Providers, w.Provider) {
		v.add(p+".webhook.provider", fmt.Sprintf(fmtWebhookProvider, p, w.Provider), "github, gitlab or bitbucket")
	}
	if w.Secret == "" {
		v.add(p+".webhook", fmt.Sprintf("%s.webhook.secret is required", p), hintWebhookSecret)
	} else if err := CheckSecretRef(w.Secret); err != nil {
		v.add(p+".webhook.secret", err.Error(), hintSecretInDirNoVal)
	}
}

// environment checks apps.<app>.environments.<en>; branches maps each
// branch seen so far to its environment, so a branch feeds only one.
func (v *validator) environment(p, en string, e *Environment, branches map[string]string) {
	ep := p + ".environments." + en
	if e == nil || e.Branch == "" {
		v.add(ep, fmt.Sprintf("%s.branch is required", ep), hintEnvBranch)
		return
	}
	if !nameRe.MatchString(en) {
		v.add(ep, fmt.Sprintf("environment name %q is not usable in ids", en), "lower-case letters, digits, - and _")
	}
	if other, ok := branches[e.Branch]; ok {
		v.add(ep+".branch", fmt.Sprintf(fmtEnvBranchTwice, e.Branch, other, en), "map a branch to one environment")
	}
	branches[e.Branch] = en
	if !contains(Approvals, e.Approval) {
		v.add(ep+".approval", fmt.Sprintf("%s.approval %q is not known", ep, e.Approval), "none or required")
	}
	v.environmentTargets(ep, e)
	if e.URL != "" && !isURL(e.URL) {
		v.add(ep+".url", fmt.Sprintf("%s.url %q is not a URL", ep, e.URL), hintEnvURL)
	}
	v.secretRefs(hintEnvSecrets, [2]string{ep, e.EnvPHP}, [2]string{ep, e.Config})
	if e.KeepReleases != 0 && e.KeepReleases < 2 {
		v.add(ep+".keep_releases", fmt.Sprintf("%s.keep_releases must be at least 2", ep), hintKeepReleases)
	}
	if e.AutoDeploy && len(e.Hosts) == 0 && e.Group == "" {
		v.add(ep+".auto_deploy", fmt.Sprintf("%s.auto_deploy needs hosts", ep), "list the hosts the environment deploys to")
	}
}

// environmentTargets checks that an environment deploys to declared hosts
// or to one declared group, not both.
func (v *validator) environmentTargets(ep string, e *Environment) {
	if e.Group != "" {
		if len(e.Hosts) > 0 {
			v.add(ep+".group", fmt.Sprintf("%s names both hosts and a group", ep), hintEnvHostsGroup)
		}
		if v.c.Groups[e.Group] == nil {
			v.add(ep+".group", fmt.Sprintf(fmtEnvGroupUnknown, ep, e.Group), hintEnvGroup)
		}
	}
	for _, h := range e.Hosts {
		if v.c.Hosts[h] == nil {
			hint := "declare it: hosts: {" + h + ": {root: /srv/mageflow, url: http://…}}"
			v.add(ep+".hosts", fmt.Sprintf(fmtEnvHostUnknown, ep, h), hint)
		}
	}
}
