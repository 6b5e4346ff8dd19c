package m1audit

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// AuditOptions configures Audit. The zero value audits the local host with
// its own sshd, passwd and the database named in local.xml, but Signatures
// must be given.
type AuditOptions struct {
	Signatures *Signatures
	// SSHDBinary is run as `sshd -T -C user=...` (default "sshd"; when it
	// is not installed the SSH daemon check is not_applicable).
	SSHDBinary string
	// SSHDConfig is passed as -f (tests); SSHDHostKeys as -h each (sshd -T
	// refuses to run without host keys).
	SSHDConfig   string
	SSHDHostKeys []string
	// DB overrides the connection from local.xml. The password never
	// appears in results.
	DB *DBConfig
	// RecentAdminDays (default 30) and KnownAdmins: active admin users not
	// listed fail; ones created or first logged in within the window need a
	// person's confirmation.
	RecentAdminDays int
	KnownAdmins     []string
	// ScriptHosts are extra hosts <script src> in the database may load
	// from (the store's base URL hosts are always allowed); "*.example.com"
	// allows subdomains.
	ScriptHosts []string
	// PHPSupport overrides PHPSupportEnds (branch "8.2" -> end of support).
	PHPSupport map[string]time.Time
	Now        func() time.Time
	// WritableExceptions are extra paths relative to the web root the PHP
	// user may write besides var/ and media/ (e.g. "includes" for the
	// compiler). skin/ is never accepted.
	WritableExceptions []string
	// PHPIdentity overrides the uid/gids looked up for the pool's user.
	PHPIdentity *Identity
	// PasswdFile overrides `getent passwd` (a file in /etc/passwd format).
	PasswdFile string
	// GroupFile is the /etc/group used for the PHP user's groups in the
	// sshd decision (default /etc/group).
	GroupFile string
	// Scan bounds the malware scan.
	Scan ScanOptions
}

func (o AuditOptions) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// Audit runs every read-only check that needs no HTTP request and returns
// one result per catalog entry, in catalog order. Checks that could not run
// say so with StatusError; Audit itself fails only without signatures or a
// web root.
func Audit(ctx context.Context, t *Target, o AuditOptions) ([]CheckResult, error) {
	if o.Signatures == nil {
		return nil, fmt.Errorf("no signatures given: load them with LoadSignaturesFS(Shipped()) plus the operator's directories")
	}
	if t == nil || t.WebRoot == "" {
		return nil, fmt.Errorf("no web root: run Discover first or set Target.WebRoot")
	}
	var out []CheckResult
	out = append(out, fileChecks(ctx, t, o)...)
	out = append(out, coreIntegrityCheck(ctx, t))
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out = append(out, configChecks(t, o)...)
	out = append(out, sshChecks(ctx, t, o)...)
	out = append(out, dbChecks(ctx, t, o)...)
	order := map[string]int{}
	for i, c := range catalog {
		order[c.ID] = i
	}
	sort.SliceStable(out, func(i, j int) bool { return order[out[i].ID] < order[out[j].ID] })
	return out, ctx.Err()
}

// maxListed caps the findings one result carries; the detail says how many
// there were.
const maxListed = 200

func capFindings(r *CheckResult, fs []Finding) {
	if len(fs) > maxListed {
		r.Evidence.Detail = strings.TrimPrefix(r.Evidence.Detail+fmt.Sprintf("; %d findings, first %d listed", len(fs), maxListed), "; ")
		fs = fs[:maxListed]
	}
	r.Evidence.Findings = fs
}

// fileChecks runs the checks that read the web root's files: the scan,
// Magento Connect, version control, world-writable paths, writable code
// and developer files, in that order.
func fileChecks(ctx context.Context, t *Target, o AuditOptions) []CheckResult {
	root := t.WebRoot
	out := scanChecks(ctx, root, o)
	out = append(out, downloaderCheck(root))
	w := walkTree(ctx, t)
	out = append(out, vcsCheck(w.vcs), worldWritableCheck(root, w))
	out = append(out, writableChecks(ctx, t, o)...)
	out = append(out, devFilesCheck(t))
	return out
}

// scanChecks reports malware, PHP in images and static dirs, and oversized
// files from one scan of root.
func scanChecks(ctx context.Context, root string, o AuditOptions) []CheckResult {
	var out []CheckResult
	scanIDs := []string{CheckSignature, CheckPHPInImage, CheckPHPInStatic, CheckUnscanned}
	findings, scanErr := ScanFiles(ctx, root, o.Signatures, o.Scan)
	byID := map[string][]Finding{}
	for _, f := range findings {
		byID[f.CheckID] = append(byID[f.CheckID], f)
	}
	for _, id := range scanIDs {
		out = append(out, scanCheck(id, root, byID[id], scanErr, o))
	}
	return out
}

// scanCheck is the result of check id from its findings fs.
func scanCheck(id, root string, fs []Finding, scanErr error, o AuditOptions) CheckResult {
	r := newResult(id)
	r.Evidence.Command = "scan " + root
	capFindings(&r, fs)
	allPerson := true
	for _, f := range fs {
		if !f.NeedsPerson {
			allPerson = false
		}
	}
	switch {
	case len(fs) == 0 && scanErr != nil:
		r = errResult(r, scanErr) // nothing found, but not everything was read
	case len(fs) == 0:
		r.Status = StatusPass
		r.Evidence.Detail = fmt.Sprintf("%d signatures over %s", o.Signatures.Len(), root)
	case allPerson:
		r.Status = StatusNeedsPerson
		r.Fix = "Review the files listed: remove them if nothing uses them."
	default:
		r.Status = StatusFail
		r.Compromise = id != CheckUnscanned
		r.Fix = "Treat the store as compromised: keep copies of the files listed with their times (forensic appendix), remove them, restore code from a trusted release, and rotate every credential."
	}
	if scanErr != nil && len(fs) > 0 {
		r.Evidence.Detail = strings.TrimPrefix(r.Evidence.Detail+"; "+scanErr.Error(), "; ")
	}
	return r
}

// downloaderCheck reports downloader/ and var/connect under root.
func downloaderCheck(root string) CheckResult {
	r := newResult(CheckDownloader)
	var present []string
	for _, p := range []string{"downloader", "var/connect", "var/package", "downloader/pearlib"} {
		if fileExists(filepath.Join(root, p)) {
			present = append(present, p)
		}
	}
	r.Evidence.Files = present
	if len(present) > 0 {
		r.Status = StatusFail
		r.Evidence.Detail = "Magento Connect is on disk (the 2020 mass hack's entry point; OpenMage removed it)"
		r.Fix = "Delete downloader/ and var/connect (and var/package) from the web root and from the release; install extensions by deploying code instead."
	} else {
		r.Status = StatusPass
		r.Evidence.Detail = "no downloader/ or var/connect under " + root
	}
	return r
}

// treeWalk is one walk for world-writable paths and version-control
// directories, over the web root and the document roots outside it.
type treeWalk struct {
	ctx      context.Context
	root     string
	docroots map[string]bool
	worldW   []Finding
	vcs      []string
	walkErrs []string
	walked   map[string]bool
}

// walkTree walks the web root, then each document root elsewhere (a
// staging copy: only version control matters there); vcs comes sorted.
func walkTree(ctx context.Context, t *Target) *treeWalk {
	root := t.WebRoot
	docroots := map[string]bool{t.DocRoot: true}
	if t.DocRoot == "" {
		docroots[root] = true
	}
	for _, v := range t.Vhosts {
		if v.Root != "" {
			docroots[v.Root] = true
		}
	}
	w := &treeWalk{ctx: ctx, root: root, docroots: docroots, walkErrs: []string{}, walked: map[string]bool{}}
	w.walk(root, false)
	for dr := range docroots {
		if dr != "" && !w.walked[dr] && !strings.HasPrefix(dr, root+"/") && fileExists(dr) {
			w.walk(dr, true) // a staging copy elsewhere: only version control matters here
		}
	}
	sort.Strings(w.vcs)
	return w
}

// walk walks base, noting version-control directories under a document
// root and, unless vcsOnly, world-writable paths.
func (w *treeWalk) walk(base string, vcsOnly bool) {
	_ = filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			w.walkErrs = append(w.walkErrs, err.Error())
			return nil
		}
		if w.ctx.Err() != nil {
			return w.ctx.Err()
		}
		name := d.Name()
		if name == ".git" || name == ".svn" || name == ".hg" || name == ".bzr" {
			w.noteVCS(p)
			if d.IsDir() {
				return filepath.SkipDir
			}
		}
		if vcsOnly || d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		if fi.Mode().Perm()&0o002 != 0 {
			rel, _ := filepath.Rel(w.root, p)
			w.worldW = append(w.worldW, Finding{CheckID: CheckWorldWritable, Severity: SeverityHigh, Path: filepath.ToSlash(rel),
				Evidence: fmt.Sprintf("mode %v", fi.Mode())})
		}
		return nil
	})
	w.walked[base] = true
}

// noteVCS records version-control metadata at p when p is under a
// document root.
func (w *treeWalk) noteVCS(p string) {
	for dr := range w.docroots {
		if dr != "" && (p == dr || strings.HasPrefix(p, dr+"/")) {
			w.vcs = append(w.vcs, p)
			break
		}
	}
}

// vcsCheck reports version-control metadata under a document root.
func vcsCheck(vcs []string) CheckResult {
	r := newResult(CheckVCS)
	r.Evidence.Files = vcs
	if len(vcs) > 0 {
		r.Status = StatusFail
		r.Evidence.Detail = "version-control metadata under a document root exposes the whole source history"
		r.Fix = "Remove the listed directories from the document root; deploy release artifacts without .git (mageflow's releases do)."
	} else {
		r.Status = StatusPass
	}
	return r
}

// worldWritableCheck reports the world-writable paths the walk found, and
// what it could not read.
func worldWritableCheck(root string, w *treeWalk) CheckResult {
	r := newResult(CheckWorldWritable)
	r.Evidence.Command = "find " + root + " -perm -o+w"
	capFindings(&r, w.worldW)
	if len(w.worldW) > 0 {
		r.Status = StatusFail
		r.Fix = "Remove the world-write bit (chmod -R o-w) from the paths listed, and the umask(0) call old Magento 1 index.php files make; any local user or compromised service can plant code there."
	} else {
		r.Status = StatusPass
	}
	if len(w.walkErrs) > 0 {
		r.Evidence.Detail = "unreadable: " + strings.Join(firstN(w.walkErrs, 5), "; ")
		if r.Status == StatusPass {
			r.Status = StatusError
		}
	}
	return r
}

// devFilesCheck reports developer and installer files in the document root.
func devFilesCheck(t *Target) CheckResult {
	r := newResult(CheckDevFiles)
	for _, p := range []string{"install.php", "RELEASE_NOTES.txt", "dev/tests", "phpinfo.php", "adminer.php", "magmi"} {
		base := t.DocRoot
		if base == "" {
			base = t.WebRoot
		}
		if fileExists(filepath.Join(base, p)) {
			r.Evidence.Files = append(r.Evidence.Files, p)
		}
	}
	if len(r.Evidence.Files) > 0 {
		r.Status = StatusNeedsPerson
		r.Evidence.Detail = "present in the document root: they must be unreachable over HTTP (verification requests each)"
		r.Fix = "Delete them from the release, or make sure nginx denies them (the hardening include does; verification proves it)."
	} else {
		r.Status = StatusPass
	}
	return r
}

// phpIdentity resolves the pool user to uid and gids.
func phpIdentity(t *Target, o AuditOptions) (Identity, error) {
	if o.PHPIdentity != nil {
		return *o.PHPIdentity, nil
	}
	if t.PHPUser == "" {
		return Identity{}, fmt.Errorf("PHP-FPM pool user unknown (%s); pass the php-fpm configuration to discovery", strings.Join(t.Notes, "; "))
	}
	u, err := user.Lookup(t.PHPUser)
	if err != nil {
		return Identity{}, fmt.Errorf("look up PHP user %q: %w", t.PHPUser, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	id := Identity{UID: uid}
	gids, _ := u.GroupIds()
	if len(gids) == 0 {
		gids = []string{u.Gid}
	}
	if t.PHPGroup != "" && t.PHPGroup != t.PHPUser {
		if g, err := user.LookupGroup(t.PHPGroup); err == nil {
			gids = append(gids, g.Gid)
		}
	}
	for _, g := range gids {
		if n, err := strconv.Atoi(g); err == nil {
			id.GIDs = append(id.GIDs, n)
		}
	}
	return id, nil
}

func writableChecks(ctx context.Context, t *Target, o AuditOptions) []CheckResult {
	w, o2 := newResult(CheckWritableTree), newResult(CheckCodeOwner)
	id, err := phpIdentity(t, o)
	if err != nil {
		return []CheckResult{errResult(w, err), errResult(o2, err)}
	}
	allow := []string{"var", "media"}
	if t.DocRoot != "" && t.DocRoot != t.WebRoot {
		if rel, err := filepath.Rel(t.WebRoot, t.DocRoot); err == nil && !strings.HasPrefix(rel, "..") {
			allow = append(allow, filepath.ToSlash(filepath.Join(rel, "media")))
		}
	}
	var ignored []string
	for _, e := range o.WritableExceptions {
		c := strings.Trim(filepath.ToSlash(filepath.Clean(e)), "/")
		if c == "skin" || strings.HasPrefix(c, "skin/") || c == "" || c == "." {
			ignored = append(ignored, e)
			continue
		}
		allow = append(allow, c)
	}
	cmd := fmt.Sprintf("writability as uid %d gids %v under %s (allowed: %s)", id.UID, id.GIDs, t.WebRoot, strings.Join(allow, ", "))
	w.Evidence.Command, o2.Evidence.Command = cmd, cmd
	list, err := WritableTree(ctx, t.WebRoot, id, allow)
	if err != nil {
		return []CheckResult{errResult(w, err), errResult(o2, err)}
	}
	var writable, owned []Finding
	for _, x := range list {
		if x.Why == "mode" {
			writable = append(writable, Finding{CheckID: CheckWritableTree, Severity: SeverityHigh, Path: x.Path, Evidence: "writable by the PHP user"})
		}
		isOwner := x.Why == "owner"
		if !isOwner {
			if fi, err := os.Lstat(filepath.Join(t.WebRoot, x.Path)); err == nil {
				if uid, _, err := ownerOf(fi); err == nil && id.UID >= 0 && uint32(id.UID) == uid {
					isOwner = true
				}
			}
		}
		if isOwner {
			owned = append(owned, Finding{CheckID: CheckCodeOwner, Severity: SeverityHigh, Path: x.Path, Evidence: "owned by the PHP user, who can chmod it writable"})
		}
	}
	note := ""
	if len(ignored) > 0 {
		note = fmt.Sprintf("exceptions ignored (skin/ may never be writable): %s", strings.Join(ignored, ", "))
	}
	w.Evidence.Detail, o2.Evidence.Detail = note, note
	capFindings(&w, writable)
	capFindings(&o2, owned)
	w.Status, o2.Status = StatusPass, StatusPass
	if len(writable) > 0 {
		w.Status = StatusFail
		w.Fix = "Make code read-only for the PHP user: owned by a deploy user, PHP group read-only; only var/ and media/ writable."
	}
	if len(owned) > 0 {
		o2.Status = StatusFail
		o2.Fix = "chown the code to a deploy user (or root) so the PHP user cannot chmod it back; keep var/ and media/ owned by the PHP user."
	}
	return []CheckResult{w, o2}
}

func configChecks(t *Target, o AuditOptions) []CheckResult {
	var out []CheckResult

	r := newResult(CheckLimitExt)
	r.Evidence.Files = nonEmpty(t.FPMPoolFile)
	switch {
	case t.FPMPoolFile == "":
		r = errResult(r, fmt.Errorf("PHP-FPM pool not found: %s", strings.Join(t.Notes, "; ")))
		r.Fix = "Pass the php-fpm configuration (the pool listening on the vhost's fastcgi_pass) to discovery."
	case t.LimitExtDefault:
		r.Status = StatusFail
		r.Evidence.Detail = "security.limit_extensions not set: PHP-FPM's default .php .phar applies"
		r.Fix = "Set security.limit_extensions = .php in " + t.FPMPoolFile + " and reload PHP-FPM."
	case len(t.LimitExt) == 1 && t.LimitExt[0] == ".php":
		r.Status = StatusPass
		r.Evidence.Detail = "security.limit_extensions = .php"
	default:
		r.Status = StatusFail
		r.Evidence.Detail = "security.limit_extensions = " + strings.Join(t.LimitExt, " ")
		r.Fix = "Set security.limit_extensions = .php in " + t.FPMPoolFile + " so images and other uploads can never run as PHP, and reload PHP-FPM."
	}
	out = append(out, r)

	r = newResult(CheckAdminFrontName)
	r.Evidence.Files = []string{filepath.Join(t.WebRoot, "app/etc/local.xml")}
	switch {
	case t.AdminFrontName == "":
		r = errResult(r, fmt.Errorf("admin frontName unknown: %s", strings.Join(t.Notes, "; ")))
	case IsDefaultAdmin(t.AdminFrontName):
		r.Status = StatusFail
		r.Evidence.Detail = "admin frontName is " + t.AdminFrontName
		r.Fix = "Set a non-guessable <admin><routers><adminhtml><args><frontName> in app/etc/local.xml, flush the cache, and tell the admins the new URL."
	default:
		r.Status = StatusPass
		r.Evidence.Detail = "admin frontName is not the default"
	}
	out = append(out, r)

	out = append(out, phpVersionCheck(t, o), magentoVersionCheck(t), stagingCheck(t))
	return out
}

func nonEmpty(s ...string) []string {
	var out []string
	for _, x := range s {
		if x != "" {
			out = append(out, x)
		}
	}
	return out
}

// phpSupportWarn is how long before the end of support a branch needs a
// person to plan the upgrade.
const phpSupportWarn = 90 * 24 * time.Hour

func phpVersionCheck(t *Target, o AuditOptions) CheckResult {
	r := newResult(CheckPHPVersion)
	r.Evidence.Command = t.FPMBinary + " -v"
	if t.PHPVersion == "" {
		return errResult(r, fmt.Errorf("PHP version unknown: %s", strings.Join(t.Notes, "; ")))
	}
	table := PHPSupportEnds
	if o.PHPSupport != nil {
		table = o.PHPSupport
	}
	branch := phpBranch(t.PHPVersion)
	end, ok := table[branch]
	now := o.now()
	switch {
	case !ok:
		r.Status = StatusNeedsPerson
		r.Evidence.Detail = fmt.Sprintf("PHP %s: branch %s is not in the support table (as of %s)", t.PHPVersion, branch, PHPSupportAsOf)
		r.Fix = "Check https://www.php.net/supported-versions.php for PHP " + branch + " and pass its end of support to the audit."
	case now.After(end):
		r.Status = StatusFail
		r.Evidence.Detail = fmt.Sprintf("PHP %s: security support for %s ended %s", t.PHPVersion, branch, end.Format("2006-01-02"))
		r.Fix = "Upgrade to a supported PHP branch (OpenMage 20.14+ runs on PHP 8.1-8.5, Maho needs 8.3+); an unsupported PHP gets no security fixes."
	case end.Sub(now) < phpSupportWarn:
		r.Status = StatusNeedsPerson
		r.Evidence.Detail = fmt.Sprintf("PHP %s: security support for %s ends %s", t.PHPVersion, branch, end.Format("2006-01-02"))
		r.Fix = "Plan the upgrade to a newer PHP branch before " + end.Format("2006-01-02") + "."
	default:
		r.Status = StatusPass
		r.Evidence.Detail = fmt.Sprintf("PHP %s: supported until %s", t.PHPVersion, end.Format("2006-01-02"))
	}
	return r
}

// finalCEPatch is the last Magento 1 security patch (June 2020); a CE below
// 1.9.4.5 without it misses fixes nobody will backport.
const finalCEPatch = "SUPEE-11346"

func magentoVersionCheck(t *Target) CheckResult {
	r := newResult(CheckMagentoVersion)
	r.Evidence.Files = []string{filepath.Join(t.WebRoot, "app/Mage.php"), filepath.Join(t.WebRoot, "app/etc/applied.patches.list")}
	patches := "none recorded"
	if len(t.Patches) > 0 {
		patches = strings.Join(t.Patches, ", ")
	}
	switch {
	case t.Version == "":
		r.Status = StatusNeedsPerson
		r.Evidence.Detail = "version unknown: " + strings.Join(t.Notes, "; ")
		r.Fix = "Find the Magento/OpenMage release from the deployment records and check it is current."
	case t.OpenMage:
		r.Status = StatusPass
		r.Evidence.Detail = "OpenMage " + t.Version + "; keep it on the newest release of its line"
	case compareVersions(t.Version, "1.9.4.5") >= 0 || hasPatch(t.Patches, finalCEPatch):
		r.Status = StatusNeedsPerson
		r.Evidence.Detail = fmt.Sprintf("Magento %s %s, patches: %s; Magento 1 is end-of-life since 2020-06-30", t.Edition, t.Version, patches)
		r.Fix = "Magento 1 gets no fixes: move to OpenMage (or Maho), or subscribe to third-party patches (Mage One) and record them."
	default:
		r.Status = StatusFail
		r.Evidence.Detail = fmt.Sprintf("Magento %s %s, patches: %s; missing the final patch %s", t.Edition, t.Version, patches, finalCEPatch)
		r.Fix = "Upgrade to OpenMage, or at least Magento 1.9.4.5 / apply every SUPEE patch through " + finalCEPatch + "."
	}
	return r
}

func hasPatch(ps []string, p string) bool {
	for _, x := range ps {
		if strings.EqualFold(x, p) {
			return true
		}
	}
	return false
}

func stagingCheck(t *Target) CheckResult {
	r := newResult(CheckStagingAuth)
	var open, staging []string
	for _, v := range t.Vhosts {
		if !v.Staging {
			continue
		}
		desc := fmt.Sprintf("%s (%s)", strings.Join(v.ServerNames, " "), v.File)
		staging = append(staging, desc)
		if !v.BasicAuth {
			open = append(open, desc)
		}
	}
	switch {
	case len(staging) == 0:
		r.Status = StatusNotApplicable
		r.Evidence.Detail = "no staging/dev vhost serves a Magento root"
	case len(open) > 0:
		r.Status = StatusFail
		r.Evidence.Detail = "staging vhosts without auth_basic: " + strings.Join(open, "; ")
		r.Fix = "Put basic auth (auth_basic + auth_basic_user_file) on every staging/dev vhost: they are copies of the store with the same flaws and often older code."
	default:
		r.Status = StatusPass
		r.Evidence.Detail = "auth_basic on: " + strings.Join(staging, "; ")
	}
	r.Evidence.Command = "nginx -T"
	return r
}
