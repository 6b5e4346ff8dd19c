package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/mageflow/mageflow/activities/internal/heartbeat"
	"github.com/mageflow/mageflow/internal/build/catalog"
	"github.com/mageflow/mageflow/internal/build/store"
	"github.com/mageflow/mageflow/internal/m1/m1audit"
	"github.com/mageflow/mageflow/internal/m1/m1fix"
	"github.com/mageflow/mageflow/internal/m1/m1verify"
	"github.com/mageflow/mageflow/internal/platform/config"
	"github.com/mageflow/mageflow/internal/platform/secrets"
)

// The MagentoM1EOLHardening steps run on the host's agent, like every host
// step: the agent reads nginx, PHP-FPM, sshd and the store's files
// directly, and resolves the basic-auth and database passwords from its own
// secrets area, so no credential ever travels through workflow history.
// Inputs carry only the host, the app and whether to change anything; the
// settings come from the agent's config (hosts.NAME.hardening).

// HardenActivities are the MagentoM1EOLHardening steps. They run on the
// host's agent, on the same task queue as its HostActivities
// (HostTaskQueue(NAME)), and need only the agent's config, its
// secrets area (basic-auth and database passwords) and the artifact store
// (where HardenReport keeps reports).
type HardenActivities struct {
	Host    string
	Config  *config.Config
	Store   store.Store
	Secrets secrets.Area
	// HeartbeatEvery is how often long steps heartbeat (default 10s).
	HeartbeatEvery time.Duration
	// Now is the clock of the report and the audit's recent-admin check
	// (tests move it).
	Now func() time.Time
}

// NewHardenActivities are the hardening steps of the agent h: same host,
// config, store, secrets, heartbeat interval and clock.
func NewHardenActivities(h *HostActivities) *HardenActivities {
	return &HardenActivities{Host: h.Host, Config: h.Config, Store: h.Store, Secrets: h.Secrets, HeartbeatEvery: h.HeartbeatEvery, Now: h.Now}
}

func (h *HardenActivities) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// heartbeatWhile records current() every HeartbeatEvery until stop.
func (h *HardenActivities) heartbeatWhile(ctx context.Context, current func() any) (stop func()) {
	return heartbeat.While(ctx, h.HeartbeatEvery, current)
}

// HardenRequest names the host (and optionally the app) of a run.
type HardenRequest struct {
	Host string
	App  string `json:",omitempty"`
	// Apply allows remediation; without it nothing on the host changes
	// except verification's temporary canaries, which are always removed.
	Apply bool `json:",omitempty"`
}

// HardenStepInput is the input of the steps after discovery.
type HardenStepInput struct {
	HardenRequest
	Target m1audit.Target
	// Flagged are the files the audit's file checks named (slash paths
	// relative to the web root, sorted, at most MaxFlagged): HardenApply
	// records their times and hashes before it changes anything. Only the
	// apply step gets them.
	Flagged []string `json:",omitempty"`
}

// MaxFlagged bounds HardenStepInput.Flagged: a tree full of findings must
// not make the activity input (and workflow history) unbounded.
const MaxFlagged = 1000

// HardenReportInput carries every step's results to the report step.
type HardenReportInput struct {
	HardenRequest
	Target  m1audit.Target
	Started time.Time
	Audit   []m1audit.CheckResult
	Applied []m1audit.CheckResult `json:",omitempty"`
	// After is the audit run again after remediation (Apply only): it
	// decides which failures are now fixed.
	After    []m1audit.CheckResult `json:",omitempty"`
	Verified []m1audit.CheckResult `json:",omitempty"`
	// Notes are step failures the report must mention (e.g. verification
	// could not run); each becomes an error result.
	Notes []HardenNote `json:",omitempty"`
}

// HardenNote is a step that did not produce results.
type HardenNote struct {
	Step  string
	Error string
}

// HardenStored is the report and where it was stored.
type HardenStored struct {
	Report      *m1audit.Report
	JSONKey     string
	MarkdownKey string
}

// HardenCleanupInput names the web root whose canaries must go. WebRoot ""
// means: the configured root (discovery never ran, or failed).
type HardenCleanupInput struct {
	HardenRequest
	WebRoot string `json:",omitempty"`
}

// VerifyProgress is the heartbeat detail of HardenVerify: the canaries it
// created, so a retry (or a person looking at the pending activity) knows
// what to delete.
type VerifyProgress struct {
	Phase    string
	Canaries []string `json:",omitempty"`
}

// hardenCtx is what every hardening step resolves first.
type hardenCtx struct {
	cfg  *config.Hardening
	host *config.Host
}

func (h *HardenActivities) hardenResolve(r HardenRequest) (*hardenCtx, error) {
	if r.Host != h.Host {
		return nil, nonRetryable(ErrInvalidInput, "this agent serves host %q but the hardening step is for host %q: check `--host` of the agent polling %s", h.Host, r.Host, HostTaskQueue(r.Host))
	}
	if h.Config == nil {
		return nil, nonRetryable(ErrConfig, "agent has no configuration")
	}
	hc := h.Config.Hosts[h.Host]
	if hc == nil {
		return nil, nonRetryable(ErrConfig, "host %q is not declared under hosts: in the agent's config %s", h.Host, h.Config.File)
	}
	if r.App != "" {
		if _, err := h.Config.App(r.App); err != nil {
			return nil, nonRetryable(ErrConfig, "%v (the agent reads its own config file: update it and restart the agent)", err)
		}
	}
	c := &hardenCtx{cfg: hc.Hardening, host: hc}
	if c.cfg == nil {
		c.cfg = &config.Hardening{} // every setting has a default
	}
	return c, nil
}

// HardenDiscover derives the store's topology from the host itself: the
// vhost and root from `nginx -T`, the PHP-FPM pool and its user, the admin
// frontName, version and patches.
func (h *HardenActivities) HardenDiscover(ctx context.Context, r HardenRequest) (*m1audit.Target, error) {
	c, err := h.hardenResolve(r)
	if err != nil {
		return nil, err
	}
	hc := c.cfg
	t, err := m1audit.Discover(ctx, m1audit.DiscoverOptions{
		NginxBinary: hc.Nginx.Binary, NginxArgs: hc.Nginx.Args,
		ServerName: hc.ServerName, Root: hc.Root,
		PHPFPMBinary: hc.PHPFPM.Binary, PHPFPMConf: hc.PHPFPM.Conf,
	})
	if err != nil {
		return nil, nonRetryable(ErrConfig, "discover the Magento 1 store on %s: %v (set hosts.%s.hardening.server_name, root or nginx.args if discovery looks in the wrong place)", h.Host, err, h.Host)
	}
	return t, nil
}

// signatures loads the shipped signatures under the operator's layers.
func signatures(hc *config.Hardening) (*m1audit.Signatures, error) {
	sigs, err := loadSignatureLayers(hc.Signatures)
	if err != nil {
		return nil, nonRetryable(ErrConfig, "hardening signatures: %v", err)
	}
	return sigs, nil
}

func loadSignatureLayers(dirs []string) (*m1audit.Signatures, error) {
	layers := append(make([]fs.FS, 0, len(dirs)+1), m1audit.Shipped())
	for _, d := range dirs {
		st, err := os.Stat(d)
		if err != nil {
			return nil, fmt.Errorf("signature directory %s: %w (create it or remove it from hardening.signatures)", d, err)
		}
		if !st.IsDir() {
			return nil, fmt.Errorf("signature directory %s is not a directory", d)
		}
		layers = append(layers, os.DirFS(d))
	}
	return m1audit.LoadSignaturesFS(layers...)
}

// dbConfig resolves the database override's password on the agent.
func (h *HardenActivities) dbConfig(hc *config.Hardening) (*m1audit.DBConfig, error) {
	d := hc.DB
	if d == nil {
		return nil, nil // local.xml's connection
	}
	db := &m1audit.DBConfig{Host: d.Host, Socket: d.Socket, Name: d.Name, User: d.User, Prefix: d.Prefix}
	if d.Password != "" {
		v, err := h.Secrets.Read(d.Password)
		if err != nil {
			return nil, nonRetryable(ErrConfig, "hosts.%s.hardening.db.password: %v", h.Host, err)
		}
		db.Password = string(v)
	}
	return db, nil
}

// HardenAudit runs every read-only check: files (malware, PHP in images
// and static dirs), writability as the PHP user, the database (injected
// scripts, rogue admins, risky settings), nginx, PHP-FPM and sshd. It
// changes nothing.
func (h *HardenActivities) HardenAudit(ctx context.Context, in HardenStepInput) ([]m1audit.CheckResult, error) {
	c, err := h.hardenResolve(in.HardenRequest)
	if err != nil {
		return nil, err
	}
	sigs, err := signatures(c.cfg)
	if err != nil {
		return nil, err
	}
	db, err := h.dbConfig(c.cfg)
	if err != nil {
		return nil, err
	}
	stop := h.heartbeatWhile(ctx, func() any { return HostProgress{Step: "audit"} })
	defer stop()
	t := in.Target
	hc := c.cfg
	res, err := m1audit.Audit(ctx, &t, m1audit.AuditOptions{
		Signatures: sigs, SSHDBinary: hc.SSHD.Binary, SSHDConfig: hc.SSHD.Config, SSHDHostKeys: hc.SSHD.HostKeys, DB: db,
		RecentAdminDays: hc.RecentAdminDays, KnownAdmins: hc.KnownAdmins, ScriptHosts: hc.AllowedScriptHosts,
		WritableExceptions: hc.Writable, Now: h.now,
	})
	if err != nil {
		return nil, fmt.Errorf("audit %s: %w", t.WebRoot, err)
	}
	return res, nil
}

// basicAuth resolves a basic-auth block's password.
func (h *HardenActivities) basicAuth(a *config.HardeningAuth) (*m1fix.BasicAuth, error) {
	if a == nil {
		return nil, nil
	}
	v, err := h.Secrets.Read(a.Password)
	if err != nil {
		return nil, nonRetryable(ErrConfig, "hosts.%s.hardening.basic_auth.password: %v", h.Host, err)
	}
	return &m1fix.BasicAuth{User: a.User, Password: string(v), Realm: a.Realm}, nil
}

// HardenApply remediates what a program may: the checksummed nginx include
// (deny paths, no PHP outside the entry points, admin basic auth and rate
// limits), the pool's limit_extensions, ownership and modes, the sshd
// drop-in. Every change is tested (nginx -t, php-fpm -t, sshd -t) and
// rolled back when the test fails; a second run changes nothing. Findings
// only a person can judge (malware, injected scripts, rogue admins) are
// left for the report.
func (h *HardenActivities) HardenApply(ctx context.Context, in HardenStepInput) ([]m1audit.CheckResult, error) {
	c, err := h.hardenResolve(in.HardenRequest)
	if err != nil {
		return nil, err
	}
	if !in.Apply {
		return nil, nonRetryable(ErrInvalidInput, "HardenApply called without Apply: refusing to change %s", h.Host)
	}
	hc := c.cfg
	ba, err := h.basicAuth(hc.BasicAuth)
	if err != nil {
		return nil, err
	}
	opt := m1fix.Options{
		NginxBinary: hc.Nginx.Binary, NginxArgs: hc.Nginx.Args, IncludeDir: hc.Nginx.IncludeDir, HTTPConfDir: hc.Nginx.HTTPConfDir,
		BasicAuth: ba, StagingBasicAuth: hc.StagingBasicAuth, AdminAllow: hc.AdminAllow,
		AdminRatePerMinute: hc.AdminRatePerMinute, AdminLoginsPerDay: hc.AdminLoginsPerDay,
		PHPFPMBinary: hc.PHPFPM.Binary, PHPFPMConf: hc.PHPFPM.Conf, PHPFPMArgs: hc.PHPFPM.Args, ReloadPHPFPM: command(hc.PHPFPM.Reload),
		SSHDBinary: hc.SSHD.Binary, SSHDArgs: sshdArgs(hc.SSHD), SSHDDropInDir: hc.SSHD.DropInDir, ReloadSSHD: command(hc.SSHD.Reload),
		DeployUser: firstNonEmpty(hc.DeployUser, c.host.DeployUser), Writable: hc.Writable, StateDir: hc.StateDir,
		Flagged: in.Flagged,
	}
	stop := h.heartbeatWhile(ctx, func() any { return HostProgress{Step: "apply"} })
	defer stop()
	t := in.Target
	res, err := m1fix.Apply(ctx, &t, opt)
	if err != nil {
		return nil, fmt.Errorf("remediate %s: %w", h.Host, err)
	}
	return res, nil
}

// command turns a configured reload command into the callback m1fix
// wants; nil (its default: signal the pid file) when none is configured.
func command(argv []string) func(ctx context.Context) error {
	if len(argv) == 0 {
		return nil
	}
	return func(ctx context.Context) error {
		out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
		}
		return nil
	}
}

// sshdArgs are the -f/-h arguments of `sshd -t` for a non-default config.
func sshdArgs(s config.HardeningSSHD) []string {
	var args []string
	if s.Config != "" {
		args = append(args, "-f", s.Config)
	}
	for _, k := range s.HostKeys {
		args = append(args, "-h", k)
	}
	return args
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// HardenVerify proves the rules over real HTTP to the origin (with the
// store's Host header): denied paths and their variants, canaries that must
// not execute, admin and staging protection, the storefront's scripts.
//
// Canaries are the only thing verification writes. Each one is recorded in
// the heartbeat before its request is made; a retry first deletes every
// canary an earlier attempt left (from its heartbeat and by name) and then
// verifies again, and the activity deletes its own canaries when it ends,
// cancelled or not. The workflow's cleanup step sweeps once more.
func (h *HardenActivities) HardenVerify(ctx context.Context, in HardenStepInput) ([]m1audit.CheckResult, error) {
	c, err := h.hardenResolve(in.HardenRequest)
	if err != nil {
		return nil, err
	}
	hc := c.cfg
	root := in.Target.WebRoot
	if root == "" || !filepath.IsAbs(root) {
		return nil, nonRetryable(ErrInvalidInput, "verification needs the store's absolute web root (discovery found %q)", root)
	}
	var prev VerifyProgress
	if activity.HasHeartbeatDetails(ctx) && activity.GetHeartbeatDetails(ctx, &prev) == nil {
		removeCanaryFiles(root, prev.Canaries)
	}
	if _, err := m1verify.RemoveCanaries(root); err != nil {
		return nil, fmt.Errorf("remove canaries left by an earlier attempt under %s: %w", root, err)
	}

	sigs, err := signatures(hc)
	if err != nil {
		return nil, err
	}
	base, hostHeader, staging := verifyOrigin(c, in.Target, root)

	var mu sync.Mutex
	prog := VerifyProgress{Phase: "verify"}
	snapshot := func() any {
		mu.Lock()
		defer mu.Unlock()
		return VerifyProgress{Phase: prog.Phase, Canaries: slices.Clone(prog.Canaries)}
	}
	// Every second, so the canary list is the newest detail even though the
	// agent's keep-alive also heartbeats.
	stop := heartbeat.While(ctx, time.Second, snapshot)
	defer stop()
	defer func() {
		mu.Lock()
		list := slices.Clone(prog.Canaries)
		mu.Unlock()
		removeCanaryFiles(root, list)
		_, _ = m1verify.RemoveCanaries(root)
	}()

	res, err := m1verify.Verify(ctx, m1verify.Options{
		BaseURL: base, Host: hostHeader, StagingHosts: staging, AdminFrontName: in.Target.AdminFrontName,
		Signatures: sigs, AllowedScriptHosts: hc.AllowedScriptHosts, Pages: hc.Pages,
		Concurrency: hc.Concurrency, Timeout: hc.Timeout.Duration,
		Canaries: true, WebRoot: root,
		OnCanary: func(path string) {
			mu.Lock()
			prog.Canaries = append(prog.Canaries, path)
			mu.Unlock()
			activity.RecordHeartbeat(ctx, snapshot())
		},
	})
	if err != nil {
		return nil, fmt.Errorf("verify %s over HTTP: %w", base, err)
	}
	return res, nil
}

// verifyOrigin is where verification sends its requests: the origin's
// base URL, the store's Host header (configured, or the server name of the
// discovered vhost serving root) and the staging hosts (configured and
// discovered) whose protection it proves.
func verifyOrigin(c *hardenCtx, t m1audit.Target, root string) (base, hostHeader string, staging []string) {
	hc := c.cfg
	base = firstNonEmpty(hc.BaseURL, c.host.URL)
	if base == "" {
		base = "http://127.0.0.1"
	}
	hostHeader = hc.ServerName
	if hostHeader == "" {
		for _, v := range t.Vhosts {
			if !v.Staging && len(v.ServerNames) > 0 && v.Root == root {
				hostHeader = v.ServerNames[0]
				break
			}
		}
	}
	staging = slices.Clone(hc.StagingHosts)
	for _, v := range t.Vhosts {
		if v.Staging {
			for _, n := range v.ServerNames {
				if !slices.Contains(staging, n) && n != "_" && n != "" {
					staging = append(staging, n)
				}
			}
		}
	}
	return base, hostHeader, staging
}

// removeCanaryFiles deletes the listed canaries, but only below root: the
// list comes from heartbeat details, which are not trusted to name other
// files.
func removeCanaryFiles(root string, paths []string) {
	for _, p := range paths {
		if !filepath.IsAbs(p) {
			p = filepath.Join(root, p)
		}
		p = filepath.Clean(p)
		if !strings.HasPrefix(p, filepath.Clean(root)+string(filepath.Separator)) {
			continue
		}
		_ = os.Remove(p)
	}
}

// HardenRemoveCanaries deletes every verification canary under the web
// root. The workflow runs it in a disconnected context after verification,
// whether the run succeeded, failed or was cancelled.
func (h *HardenActivities) HardenRemoveCanaries(ctx context.Context, in HardenCleanupInput) ([]string, error) {
	c, err := h.hardenResolve(in.HardenRequest)
	if err != nil {
		return nil, err
	}
	root := firstNonEmpty(in.WebRoot, c.cfg.Root)
	if root == "" {
		return nil, nil // discovery never found a root: verification never ran
	}
	if !filepath.IsAbs(root) {
		return nil, nonRetryable(ErrInvalidInput, "web root %q is not absolute", root)
	}
	removed, err := m1verify.RemoveCanaries(root)
	if err != nil {
		return removed, fmt.Errorf("remove canaries under %s: %w", root, err)
	}
	if len(removed) > 0 {
		activity.GetLogger(ctx).Info("removed verification canaries", "root", root, "files", removed)
	}
	return removed, nil
}

// HardenReport merges the steps' results, adds the summary and (on signs
// of compromise) the forensic appendix with the files' mtime and ctime —
// which is why it runs on the host — and stores JSON and Markdown beside
// the artifacts (catalog.HardenReportKey) as the host's latest report.
func (h *HardenActivities) HardenReport(ctx context.Context, in HardenReportInput) (*HardenStored, error) {
	if _, err := h.hardenResolve(in.HardenRequest); err != nil {
		return nil, err
	}
	rep := &m1audit.Report{
		Host: in.Host, App: in.App, Apply: in.Apply, Started: in.Started.UTC(), Finished: h.now().UTC(),
		Target: in.Target, Results: MergeHardenResults(in.Audit, in.After, in.Applied, in.Verified),
	}
	for _, n := range in.Notes {
		rep.Results = append(rep.Results, m1audit.CheckResult{
			ID: "mageflow.step." + n.Step, Title: "step " + n.Step + " ran", Severity: m1audit.Severity("high"),
			Status: m1audit.StatusError, Evidence: m1audit.Evidence{Detail: n.Error},
			Fix: "look at the workflow's history for the failed activity, fix the cause and run `mageflow harden` again",
		})
	}
	m1audit.Finalize(rep)
	rep.Summary.Changed = changed(in.Applied)
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return nil, err
	}
	jk, mk, err := catalog.PutHardenReport(ctx, h.Store, in.Host, rep.Started, append(js, '\n'), []byte(rep.Markdown()))
	if err != nil {
		return nil, err
	}
	return &HardenStored{Report: rep, JSONKey: jk, MarkdownKey: mk}, nil
}

// changed is true when remediation changed anything on the host.
func changed(applied []m1audit.CheckResult) bool {
	for _, r := range applied {
		if r.Status == m1audit.StatusFixed {
			return true
		}
	}
	return false
}

// statusRank orders statuses for merging the same check's results from
// different steps: the worse one wins, so a fix that verification
// disproves is reported as failed, never as fixed.
func statusRank(s m1audit.Status) int {
	switch s {
	case m1audit.StatusFail:
		return 6
	case m1audit.StatusNeedsPerson:
		return 5
	case m1audit.StatusError:
		return 4
	case m1audit.StatusFixed:
		return 3
	case m1audit.StatusPass:
		return 2
	case m1audit.StatusNotApplicable:
		return 1
	}
	return 0
}

// MergeHardenResults folds the steps' results into one line per check id,
// in first-seen order:
//   - audit is the state found; after (the audit re-run after remediation,
//     nil without Apply) replaces it, and a check that failed before and
//     passes after becomes "fixed" with Before/After saying so;
//   - applied (remediation's own results, ids m1.fix.*) are added as they
//     are;
//   - verified confirms or overrules over HTTP: the worse status wins, but a
//     verified pass keeps "fixed". Evidence is combined.
func MergeHardenResults(audit, after, applied, verified []m1audit.CheckResult) []m1audit.CheckResult {
	var out []m1audit.CheckResult
	idx := map[string]int{}
	add := func(r m1audit.CheckResult) {
		idx[r.ID] = len(out)
		out = append(out, r)
	}
	for _, r := range audit {
		if _, dup := idx[r.ID]; !dup {
			add(r)
		}
	}
	for _, r := range after {
		i, ok := idx[r.ID]
		if !ok {
			add(r)
			continue
		}
		pre := out[i]
		bad := pre.Status == m1audit.StatusFail || pre.Status == m1audit.StatusNeedsPerson || pre.Status == m1audit.StatusError
		if bad && r.Status == m1audit.StatusPass {
			r.Status = m1audit.StatusFixed
		}
		if pre.Status != r.Status {
			r.Before = firstNonEmpty(r.Before, describeResult(pre))
			r.After = firstNonEmpty(r.After, describeResult(r))
		}
		// A compromise found before remediation stays reported: fixing
		// permissions does not undo what an attacker did.
		r.Compromise = r.Compromise || pre.Compromise
		out[i] = r
	}
	for _, r := range applied {
		if i, ok := idx[r.ID]; ok {
			r.Evidence = mergeEvidence(out[i].Evidence, r.Evidence)
			out[i] = r
			continue
		}
		add(r)
	}
	for _, r := range verified {
		i, ok := idx[r.ID]
		if !ok {
			add(r)
			continue
		}
		cur := &out[i]
		if statusRank(r.Status) > statusRank(cur.Status) && !(cur.Status == m1audit.StatusFixed && r.Status == m1audit.StatusPass) {
			cur.Status = r.Status
			if r.Fix != "" {
				cur.Fix = r.Fix
			}
		}
		cur.Evidence = mergeEvidence(cur.Evidence, r.Evidence)
		cur.Compromise = cur.Compromise || r.Compromise
	}
	return out
}

// describeResult is a one-line state for Before/After.
func describeResult(r m1audit.CheckResult) string {
	d, _, _ := strings.Cut(strings.TrimSpace(r.Evidence.Detail), "\n")
	if len(d) > 160 {
		d = d[:157] + "..."
	}
	if d == "" {
		return string(r.Status)
	}
	return string(r.Status) + ": " + d
}

func mergeEvidence(a, b m1audit.Evidence) m1audit.Evidence {
	out := a
	if b.Command != "" {
		if out.Command == "" {
			out.Command = b.Command
		} else if out.Command != b.Command {
			out.Command += "; " + b.Command
		}
	}
	if b.Detail != "" {
		if out.Detail == "" {
			out.Detail = b.Detail
		} else if out.Detail != b.Detail {
			out.Detail += "\n" + b.Detail
		}
	}
	out.Files = append(slices.Clone(out.Files), b.Files...)
	out.HTTP = append(slices.Clone(out.HTTP), b.HTTP...)
	out.Findings = append(slices.Clone(out.Findings), b.Findings...)
	return out
}
