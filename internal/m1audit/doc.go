// Package m1audit holds the file-level checks of the Magento 1 / OpenMage
// end-of-life hardening audit: malware signatures over PHP/JS/HTML, PHP code
// hidden in images, PHP files where a stock store has none, the admin
// frontName from app/etc/local.xml, and writability as the PHP user.
//
// Everything here is read-only and works on a local directory tree, so the
// host agent can run it against a live web root and the tests can run it
// against trees they generate. Nothing here talks to nginx, PHP-FPM or the
// database; those checks live elsewhere and feed the same report.
//
// Signatures are data, not code: the project ships a starter set in
// signatures/ (also embedded as Shipped) and operators add or override
// entries in their own directories, because malware changes faster than
// releases. See LoadSignatures for the file format.
package m1audit
