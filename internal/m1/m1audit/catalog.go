package m1audit

// Check IDs of Audit, besides the ScanFiles ones (CheckSignature,
// CheckPHPInImage, CheckPHPInStatic, CheckUnscanned). Stable: reports,
// dashboards and suppressions refer to them.
const (
	CheckDownloader      = "m1.files.downloader"
	CheckVCS             = "m1.files.vcs"
	CheckWorldWritable   = "m1.files.world_writable"
	CheckWritableTree    = "m1.files.php_writable"
	CheckCodeOwner       = "m1.files.code_owner"
	CheckDevFiles        = "m1.files.dev_files"
	CheckLimitExt        = "m1.fpm.limit_extensions"
	CheckAdminFrontName  = "m1.config.admin_frontname"
	CheckPHPVersion      = "m1.php.version"
	CheckMagentoVersion  = "m1.magento.version"
	CheckStagingAuth     = "m1.nginx.staging_auth"
	CheckPHPUserShell    = "m1.ssh.php_user_shell"
	CheckPHPUserKeys     = "m1.ssh.php_user_keys"
	CheckSSHDDenied      = "m1.ssh.sshd_denies_php_user"
	CheckDBConfigScripts = "m1.db.config_scripts"
	CheckDBCMSContent    = "m1.db.cms_content"
	CheckDBAdminUsers    = "m1.db.admin_users"
	CheckDBCompatMode    = "m1.db.extensions_compat_mode"
	CheckDBAllowSymlink  = "m1.db.allow_symlink"
	CheckDBAdminCaptcha  = "m1.db.admin_captcha"
	CheckDBFormKey       = "m1.db.use_form_key"

	// CheckContentForeignScript marks a <script src> from a host that is
	// not the store's (a finding id, used inside the content checks).
	CheckContentForeignScript = "m1.content.foreign_script"
)

// CheckInfo describes one check for documentation and the report.
type CheckInfo struct {
	ID       string   `json:"id"`
	Title    string   `json:"title"`
	Severity Severity `json:"severity"`
	// Row is the "Check" row of the reference table
	// (docs m1-hardening §2) the check belongs to.
	Row string `json:"row"`
	// Source is "audit" for the read-only checks of this package; the
	// remediation and verification packages add their own.
	Source string `json:"source"`
}

// Reference table rows (m1-hardening.md §2), quoted so the report can link
// each result to the state of the art it is measured against.
const (
	RowDownloader   = "/downloader unreachable, live + staging"
	RowAdminPath    = "Admin not at /admin; own host or IP allowlist"
	RowVCS          = "No reachable .git/VCS"
	RowPHPStatic    = "No PHP execution in media/skin/js"
	RowCompat       = "Compat mode off (SUPEE-6788)"
	RowPatchLevel   = "Patch level / OpenMage version"
	RowMalwareFiles = "Malware in files"
	RowSkimmerDB    = "Skimmer in DB (design/head/includes, design/footer/absolute_footer, cms_block, cms_page)"
	RowCodeOwner    = "Code owner ≠ PHP user; skin/ not writable"
	RowPHPUser      = "PHP user: nologin, no SSH; reset after temporary access"
	RowFPM          = "FPM limit_extensions, per-site pool"
	RowStaging      = "Staging/dev behind basic auth"
	RowPHPVersion   = "Supported PHP"
	RowBackdoors    = "Visbot/ransomware/backdoor indicators"
	RowCacheleak    = "Cacheleak: app/ var/ lib/ includes/ media/downloadable denied"
	RowFailedLogin  = "Failed-login limit per IP"
	RowDeploy       = "Deploy without .git, with rollback"
)

var catalog = []CheckInfo{
	{CheckSignature, "No malware signature matches in code, templates or static files", SeverityCritical, RowMalwareFiles, "audit"},
	{CheckPHPInImage, "No PHP code hidden in images under media/, skin/, js/", SeverityCritical, RowPHPStatic, "audit"},
	{CheckPHPInStatic, "No PHP files under media/, skin/, js/", SeverityCritical, RowPHPStatic, "audit"},
	{CheckUnscanned, "Every code file was small enough to scan", SeverityLow, RowMalwareFiles, "audit"},
	{CheckDownloader, "Magento Connect (downloader/, var/connect) removed from disk", SeverityHigh, RowDownloader, "audit"},
	{CheckVCS, "No .git/.svn/.hg under the document root", SeverityHigh, RowVCS, "audit"},
	{CheckWorldWritable, "Nothing under the web root is world-writable", SeverityHigh, RowCodeOwner, "audit"},
	{CheckWritableTree, "PHP user can write only var/, media/ and listed exceptions (never skin/)", SeverityHigh, RowCodeOwner, "audit"},
	{CheckCodeOwner, "PHP user owns no code (even read-only: an owner can chmod)", SeverityHigh, RowCodeOwner, "audit"},
	{CheckDevFiles, "install.php, RELEASE_NOTES.txt, dev/tests: present files must be unreachable", SeverityInfo, RowCacheleak, "audit"},
	{CheckLimitExt, "PHP-FPM pool security.limit_extensions is exactly .php", SeverityHigh, RowFPM, "audit"},
	{CheckAdminFrontName, "Admin frontName is not the guessable \"admin\"", SeverityMedium, RowAdminPath, "audit"},
	{CheckPHPVersion, "PHP branch still gets security fixes", SeverityHigh, RowPHPVersion, "audit"},
	{CheckMagentoVersion, "Magento / OpenMage version and patch level known and current", SeverityInfo, RowPatchLevel, "audit"},
	{CheckStagingAuth, "Staging/dev vhosts require basic auth", SeverityHigh, RowStaging, "audit"},
	{CheckPHPUserShell, "PHP user has a nologin/false shell", SeverityHigh, RowPHPUser, "audit"},
	{CheckPHPUserKeys, "PHP user has no SSH authorized_keys", SeverityHigh, RowPHPUser, "audit"},
	{CheckSSHDDenied, "sshd refuses the PHP user (DenyUsers/AllowUsers/DenyGroups/AllowGroups)", SeverityHigh, RowPHPUser, "audit"},
	{CheckDBConfigScripts, "No injected script in core_config_data (every design/* value: head includes, title, description, footer; script/html paths; all scopes)", SeverityCritical, RowSkimmerDB, "audit"},
	{CheckDBCMSContent, "No injected script in cms_block / cms_page content and page layout updates", SeverityCritical, RowSkimmerDB, "audit"},
	{CheckDBAdminUsers, "Only known admin users, none created or first used recently", SeverityCritical, RowBackdoors, "audit"},
	{CheckDBCompatMode, "Admin routing compatibility mode for extensions is off", SeverityHigh, RowCompat, "audit"},
	{CheckDBAllowSymlink, "Template symlinks are not allowed (dev/template/allow_symlink=0)", SeverityHigh, RowPatchLevel, "audit"},
	{CheckDBAdminCaptcha, "Admin login CAPTCHA is enabled", SeverityMedium, RowFailedLogin, "audit"},
	{CheckDBFormKey, "Admin form keys are on (admin/security/use_form_key=1)", SeverityHigh, RowPatchLevel, "audit"},
}

// CheckCatalog returns every check Audit can produce, in report order.
func CheckCatalog() []CheckInfo {
	return append([]CheckInfo(nil), catalog...)
}

func catalogEntry(id string) (CheckInfo, bool) {
	for _, c := range catalog {
		if c.ID == id {
			return c, true
		}
	}
	return CheckInfo{}, false
}

// newResult starts a result with the catalog's title and severity.
func newResult(id string) CheckResult {
	c, ok := catalogEntry(id)
	if !ok {
		panic("m1audit: check " + id + " missing from the catalog") // a build defect caught by TestCatalogCoversResults
	}
	return CheckResult{ID: id, Title: c.Title, Severity: c.Severity}
}

func errResult(r CheckResult, err error) CheckResult {
	r.Status = StatusError
	if r.Evidence.Detail != "" {
		r.Evidence.Detail += "; "
	}
	r.Evidence.Detail += err.Error()
	return r
}
