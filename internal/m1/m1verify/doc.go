// Package m1verify proves a Magento 1 / OpenMage store's hardening over real
// HTTP, the way an attacker sees it: every request goes to the origin
// (Options.BaseURL, bypassing any CDN or WAF in front) with the live vhost's
// Host header, and only what comes back counts. Configuration files and
// remediation claims are not trusted; a rule is proven when the request it
// exists to stop is refused and nothing it hides is in the body.
//
// What Verify checks (IDs are stable; see Paths for the path catalogue):
//
//   - m1.http.path.*: every path of the hardening reference (§3: downloader,
//     local.xml, .git, cache leaks, RSS, shell scripts, …) and its bypass
//     Variants answer 403 or 404 (400, 405 and 410 also count as refused;
//     401 only for admin paths) and no body holds a leak marker.
//   - m1.http.admin.*: the admin frontName without credentials answers
//     401/403 (or 404 when the admin lives on another vhost); /admin/ on
//     the frontend host answers 404 when the frontName differs.
//   - m1.http.staging_auth: staging vhosts answer 401/403 without credentials.
//   - m1.http.misc_scripts_post: the synthetic "misc scripts" injection POST
//     is refused before PHP runs.
//   - m1.http.php_exec.*: nonce-echoing canary files in media/, skin/, js/
//     and a PHP-bearing JPEG never execute (only with Options.Canaries).
//   - m1.http.pages.signatures, m1.http.pages.script_hosts: the rendered
//     home, cart and checkout pages and their same-origin scripts match no
//     frontend signature and load scripts only from allowed hosts.
//   - m1.http.no_route: how the store answers an unknown URL, the baseline
//     for judging 200 answers (see below).
//
// # Judging a 200
//
// Magento 1 sends unknown URLs through index.php, which normally answers
// with its themed 404 page and status 404; some stores answer the CMS
// no-route page with 200. A 200 for a denied path is therefore not proof of
// a leak, and a 404 is not proof of safety (nginx could serve a file's bytes
// under any status). The rule, per request:
//
//  1. Any leak marker in the body (`<connection>`, `<?php`, `Mage::`,
//     `Magento Connect`, `Index of /`, git's `ref: refs/` and
//     `repositoryformatversion`, plus the probe's own markers such as
//     `<rss` or `[core]`) fails the variant, whatever the status.
//  2. 403, 404 (and 400, 405, 410) pass.
//  3. A redirect is followed (at most 3 hops) while it stays on the same
//     host and scheme; each hop is one piece of evidence. A redirect to
//     another scheme or host cannot be verified here: the check reports
//     an error asking for the right BaseURL.
//  4. A 2xx passes only if it is the store's own no-route page: before the
//     checks, Verify requests a random path that exists nowhere
//     (m1.http.no_route); a 2xx whose HTML <title> equals that page's title
//     is the catch-all page, not the file. Any other 2xx fails: a denied
//     path must not serve anything else (cron.php runs with an empty body,
//     which no marker could catch).
//  5. 401 fails for non-admin paths (credentials only hide what must be
//     denied outright); 5xx fails (the request reached a handler).
//
// # Canaries
//
// With Options.Canaries, Verify writes mageflow-canary-<16 hex>.php into
// media/, skin/ and js/ and mageflow-canary-<16 hex>.jpg (a JPEG header plus
// PHP) into media/, requests them and /media/<name>.jpg/x.php (the
// PATH_INFO trick), and fails a check when the body holds the nonce. The
// canary source builds the nonce from two halves, so the nonce appears only
// if PHP ran. Source shown as text is not execution: it passes, with a note
// (no secret leaks from our own canary, and any real PHP file in those
// directories is a finding of the file scan, m1.files.php_in_static).
// Canaries are removed before Verify returns, also when ctx is cancelled;
// RemoveCanaries removes leftovers of a crashed run by name.
package m1verify
