package config

import (
	"path"
	"path/filepath"
)

// SharedPaths are kept out of the app's artifacts: they live in each host's
// shared folder and are linked into every release. The app type brings its
// own (Magento's media, var and the environment file); apps.<n>.shared adds
// more.
func (a *App) SharedPaths() []string {
	var p []string
	switch a.Type {
	case "magento2":
		p = []string{"pub/media", "var", "app/etc/env.php"}
	case "magento1":
		p = []string{"media", "var", "app/etc/local.xml"}
	}
	for _, s := range a.Shared {
		p = append(p, path.Clean(filepath.ToSlash(s)))
	}
	return p
}
