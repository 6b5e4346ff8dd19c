package m1audit

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// phpUID is the PHP user of the fixtures: Debian's www-data, which exists
// on every Debian host the tests run on.
const phpUID = 33

const mageCE = `<?php
final class Mage
{
    static private $_currentEdition = self::EDITION_COMMUNITY;
    public static function getVersionInfo()
    {
        return array(
            'major'     => '1',
            'minor'     => '9',
            'revision'  => '4',
            'patch'     => '%s',
            'stability' => '',
            'number'    => '',
        );
    }
}
`

const mageOM = `<?php
final class Mage
{
    public static function getVersionInfo(): array
    {
        return [
            'major'     => '1',
            'minor'     => '9',
            'revision'  => '4',
            'patch'     => '5',
            'stability' => '',
            'number'    => '',
        ];
    }
    public static function getOpenMageVersionInfo(): array
    {
        return [
            'major'     => '20',
            'minor'     => '10',
            'patch'     => '2',
            'stability' => '', // beta,alpha,rc
            'number'    => '', // 1,2,3,0.3.7,x.7.z.92 @see https://semver.org/#spec-item-9
        ];
    }
}
`

func localXMLFixture(frontName, dbHost, prefix string) string {
	return fmt.Sprintf(`<?xml version="1.0"?>
<config>
    <global>
        <install><date><![CDATA[Tue, 01 Jan 2019 00:00:00 +0000]]></date></install>
        <crypt><key><![CDATA[0123456789abcdef]]></key></crypt>
        <resources>
            <db><table_prefix><![CDATA[%s]]></table_prefix></db>
            <default_setup>
                <connection>
                    <host><![CDATA[%s]]></host>
                    <username><![CDATA[shop]]></username>
                    <password><![CDATA[s3cret-Pa55]]></password>
                    <dbname><![CDATA[shop]]></dbname>
                    <initStatements><![CDATA[SET NAMES utf8]]></initStatements>
                    <model><![CDATA[mysql4]]></model>
                    <type><![CDATA[pdo_mysql]]></type>
                    <active>1</active>
                </connection>
            </default_setup>
        </resources>
    </global>
    <admin><routers><adminhtml><args><frontName><![CDATA[%s]]></frontName></args></adminhtml></routers></admin>
</config>
`, prefix, dbHost, frontName)
}

// goodStore writes a hardened Magento 1 tree: code owned by root and
// read-only for others, var/ and media/ owned by the PHP user, no
// Connect, no VCS, no dev files.
func goodStore(t *testing.T, root string) {
	t.Helper()
	files := map[string]string{
		"index.php":                                 phpHead + "require 'app/Mage.php';\n",
		"get.php":                                   phpHead + "// media\n",
		"app/Mage.php":                              fmt.Sprintf(mageCE, "5"),
		"app/etc/local.xml":                         localXMLFixture("shop_backend", "localhost", ""),
		"app/etc/applied.patches.list":              "",
		"app/code/core/Mage/Core/A.php":             phpHead + "class Mage_Core_A {}\n",
		"lib/Varien/Object.php":                     phpHead + "class Varien_Object {}\n",
		"skin/frontend/base/default/css/styles.css": "body{}\n",
		"js/varien/form.js":                         "var VarienForm = Class.create();\n",
		"media/catalog/product/a.jpg":               "\xFF\xD8\xFF\xE0 pixels",
		"var/log/system.log":                        "",
	}
	for p, c := range files {
		writeFile(t, filepath.Join(root, p), c)
	}
	for _, d := range []string{"var", "media"} {
		chownTree(t, filepath.Join(root, d), phpUID, phpUID)
	}
}

func chownTree(t *testing.T, dir string, uid, gid int) {
	t.Helper()
	err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func targetFor(root string) *Target {
	return &Target{WebRoot: root, DocRoot: root, PHPUser: "www-data", PHPGroup: "www-data",
		FPMPoolFile: "/etc/php/8.2/fpm/pool.d/shop.conf", FPMListen: "unix:/run/php/shop.sock",
		LimitExt: []string{".php"}, AdminFrontName: "shop_backend", Version: "1.9.4.5", Edition: "Community",
		PHPVersion: "8.3.14", ServerName: "shop.example.com"}
}

var fixedNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func resultByID(t *testing.T, rs []CheckResult, id string) CheckResult {
	t.Helper()
	for _, r := range rs {
		if r.ID == id {
			return r
		}
	}
	t.Fatalf("no result %s among %d results", id, len(rs))
	return CheckResult{}
}

func findingPaths(r CheckResult) string {
	var ps []string
	for _, f := range r.Evidence.Findings {
		ps = append(ps, f.Path)
	}
	return strings.Join(ps, ",")
}
