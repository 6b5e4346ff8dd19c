// Package m1audit is the read-only half of the Magento 1 / OpenMage
// end-of-life hardening: it finds the store (Discover: nginx -T, the PHP-FPM
// pool on the vhost's fastcgi_pass, app/Mage.php, local.xml) and checks it
// (Audit): malware signatures over PHP/JS/HTML, PHP hidden in images or
// dropped in media/, skin/, js/, writability and ownership as the PHP user,
// Connect and VCS leftovers, FPM limit_extensions, admin path, PHP and
// Magento versions, the PHP user's SSH access, and the database (injected
// scripts in core_config_data and CMS content, rogue admins, admin security
// settings). Finalize and Report.Markdown turn results into the report that
// remediation (internal/m1/m1fix) and HTTP verification (internal/m1/m1verify)
// add their results to.
//
// Nothing here changes the host. Checks never vanish from a report: one that
// cannot run says so (status error or not_applicable, with the reason), so
// "checked and fine" is never confused with "not looked at". CheckCatalog
// lists every check with the reference-table row it answers.
//
// Signatures are data, not code: the project ships a starter set in
// signatures/ (also embedded as Shipped) and operators add or override
// entries in their own directories, because malware changes faster than
// releases. See LoadSignatures for the file format.
//
// The database is read with github.com/go-sql-driver/mysql (pure Go, so the
// static host agent needs no client library, and the password never appears
// on a command line); m1test starts a throw-away MariaDB for tests.
package m1audit
