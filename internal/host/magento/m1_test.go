package magento

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func writeModule(t *testing.T, root, pool, vendor, mod, version string) {
	t.Helper()
	dir := filepath.Join(root, "app", "code", pool, vendor, mod, "etc")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	xml := `<?xml version="1.0"?><config><modules><` + vendor + "_" + mod + `><version>` + version + `</version></` + vendor + "_" + mod + `></modules><global/></config>`
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.xml"), []byte(xml), 0o644))
}

func TestM1ModuleVersionChanges(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	writeModule(t, a, "core", "Mage", "Catalog", "1.6.0.0.19")
	writeModule(t, a, "local", "Acme", "Shop", "0.1.0")
	writeModule(t, b, "core", "Mage", "Catalog", "1.6.0.0.19")
	writeModule(t, b, "local", "Acme", "Shop", "0.2.0")
	writeModule(t, b, "community", "Acme", "Promo", "1.0.0")
	va, err := M1ModuleVersions(a)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"Mage_Catalog": "1.6.0.0.19", "Acme_Shop": "0.1.0"}, va)
	vb, err := M1ModuleVersions(b)
	require.NoError(t, err)
	require.Equal(t, []string{
		"Acme_Promo: new module at 1.0.0, setup scripts pending",
		"Acme_Shop: 0.1.0 -> 0.2.0, setup scripts pending",
	}, M1VersionChanges(va, vb))
	require.Empty(t, M1VersionChanges(va, va))

	require.NoError(t, os.WriteFile(filepath.Join(a, "app", "code", "local", "Acme", "Shop", "etc", "config.xml"), []byte("<config><modules>"), 0o644))
	_, err = M1ModuleVersions(a)
	require.ErrorContains(t, err, "not valid XML")
}
