// Package m1core checks the core files of a Magento 1 / OpenMage store
// against manifests of pristine releases, the only way to catch a card
// stealer appended to a core file (Mage_Payment models, the Onepage
// controller, AccountController) that no signature knows.
//
// The manifests are data, not code: for every shipped release (CE
// 1.9.0.0–1.9.4.5, OpenMage LTS 19.x and 20.x) the SHA-256 of every file in
// the core areas (see InScope), stored as one deduplicated, gzipped index
// (data/manifests.gz, embedded): a table of distinct content hashes, a table
// of paths, and each version as the difference from an earlier one. For core
// code files the index also holds, per path, the set of 32-bit hashes of
// every (trimmed) line any release had, so Check can show which lines of a
// modified file are foreign, read from the store's own copy: there is no
// pristine content in the repository, only hashes.
//
// A file whose content no mirror had (one Zend .phar of CE 1.9.x and
// OpenMage 19.x) is recorded as "content unknown": present in the release,
// reported as unverified, never as added.
//
// The generator is test/m1manifest (Builder). Check identifies the release
// (app/Mage.php, confirmed by the manifest the files match best), then
// reports modified, added and missing core files. A file that equals the
// same path in any known release is "known" (a SUPEE patch or an OpenMage
// upgrade applied in place), not modified. With no manifest that matches
// (Enterprise, 1.8 and older, heavily changed trees) Check says so with
// StatusUnknownVersion and lists nothing, so the caller falls back to
// signatures.
package m1core
