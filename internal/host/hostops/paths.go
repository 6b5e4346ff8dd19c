// Package hostops holds the file-system layout of an app on a host and the
// crash-safe operations the deploy agent performs on it:
//
//	<root>/<app>/releases/<id>/    one extracted release per directory
//	<root>/<app>/shared/           pub/media, var, app/etc/env.php, … linked into every release
//	<root>/<app>/current           symlink -> releases/<id>; nginx root is current/pub
//	<root>/<app>/maintenance.flag  present while the environment is in maintenance
//
// Every operation is written so that a SIGKILL at any instruction leaves the
// tree in a state the same operation, run again, completes: new content is
// written under a temporary name and renamed into place, and the rename is
// the only step that changes what nginx or PHP see.
//
// The path helpers are exported for the nginx config renderer
// (internal/host/webstack), which must agree with the agent on every path.
package hostops

import (
	"path/filepath"
	"strings"
)

const (
	// CompleteMarker is written last into a release directory by Prepare.
	// A release without it is never switched to and is not reported.
	CompleteMarker = ".mageflow-complete"
	// ReleaseMarker is served by nginx from the web root; health checks
	// compare it with the release they expect.
	ReleaseMarker = ".mageflow-release"
	// TmpPrefix starts the names of work directories under releases/
	// (extractions in progress, releases being deleted). Prune removes
	// those older than an hour; State never lists them.
	TmpPrefix = ".tmp-"
	// MaintenanceFlagName is the flag file nginx tests with `if (-f …)`.
	MaintenanceFlagName = "maintenance.flag"
	// SwitchStateName records the last switch, so a retried Switch returns
	// the same answer as the attempt that did the work.
	SwitchStateName = ".mageflow-switch.json"
)

// AppDir is <root>/<app>.
func AppDir(root, app string) string { return filepath.Join(root, app) }

// ReleasesDir is <root>/<app>/releases.
func ReleasesDir(root, app string) string { return filepath.Join(root, app, "releases") }

// SharedDir is <root>/<app>/shared.
func SharedDir(root, app string) string { return filepath.Join(root, app, "shared") }

// CurrentLink is the symlink <root>/<app>/current that points at the live
// release (relative target "releases/<id>").
func CurrentLink(root, app string) string { return filepath.Join(root, app, "current") }

// ReleaseDir is <root>/<app>/releases/<id>.
func ReleaseDir(root, app, id string) string { return filepath.Join(root, app, "releases", id) }

// MaintenanceFlag is the file whose presence puts the environment's nginx
// into maintenance (503 for everyone without the bypass header).
func MaintenanceFlag(root, app string) string {
	return filepath.Join(root, app, MaintenanceFlagName)
}

// WebRoot is the directory of a release nginx serves: pub/ for Magento 2
// and the JavaScript front ends built into pub/, the release root for
// Magento 1 (which has no pub/ directory).
func WebRoot(appType string) string {
	if appType == "magento1" {
		return ""
	}
	return "pub"
}

// ReleaseMarkerPath is the release-relative path of the marker file nginx
// serves as /.mageflow-release.
func ReleaseMarkerPath(appType string) string {
	return filepath.Join(WebRoot(appType), ReleaseMarker)
}

// IsTemp reports whether a name under releases/ is a work directory rather
// than a release.
func IsTemp(name string) bool { return strings.HasPrefix(name, ".") }
