package magento

import (
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// M1ModuleVersions reads the declared version of every Magento 1 module in
// a release (app/code/<pool>/<Vendor>/<Module>/etc/config.xml,
// <config><modules><Vendor_Module><version>). Magento 1 runs a module's
// pending setup scripts when the declared version is above the one its
// core_resource table records, so a version change between the running
// release and the new one is what makes an upgrade (and maintenance)
// necessary — decided from files alone, without database access.
func M1ModuleVersions(releaseDir string) (map[string]string, error) {
	files, err := filepath.Glob(filepath.Join(releaseDir, "app", "code", "*", "*", "*", "etc", "config.xml"))
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var doc struct {
			Modules struct {
				Any []struct {
					XMLName xml.Name
					Version string `xml:"version"`
				} `xml:",any"`
			} `xml:"modules"`
		}
		if err := xml.Unmarshal(b, &doc); err != nil {
			return nil, fmt.Errorf("%s is not valid XML: %w", f, err)
		}
		for _, m := range doc.Modules.Any {
			if m.Version != "" {
				out[m.XMLName.Local] = m.Version
			}
		}
	}
	return out, nil
}

// M1VersionChanges lists modules whose declared version differs between
// the running and the new release (new modules included), sorted.
func M1VersionChanges(running, next map[string]string) []string {
	var changes []string
	for name, v := range next {
		if old, ok := running[name]; !ok {
			changes = append(changes, fmt.Sprintf("%s: new module at %s, setup scripts pending", name, v))
		} else if old != v {
			changes = append(changes, fmt.Sprintf("%s: %s -> %s, setup scripts pending", name, old, v))
		}
	}
	sort.Strings(changes)
	return changes
}
