package m1audit

import (
	"strings"
	"testing"
)

func TestAdminFrontName(t *testing.T) {
	wrap := func(inner string) string {
		return `<?xml version="1.0"?>
<config>
  <global><resources><default_setup><connection><host>db</host></connection></default_setup></resources></global>
  <admin>` + inner + `</admin>
</config>`
	}
	cases := []struct {
		name, xml, want, wantErr string
	}{
		{"cdata with whitespace", wrap("<routers><adminhtml><args><frontName>\n  <![CDATA[shop_backend]]>\n</frontName></args></adminhtml></routers>"), "shop_backend", ""},
		{"plain text", wrap("<routers><adminhtml><args><frontName>Mgmt-42</frontName></args></adminhtml></routers>"), "Mgmt-42", ""},
		{"stock admin", wrap("<routers><adminhtml><args><frontName><![CDATA[admin]]></frontName></args></adminhtml></routers>"), "admin", ""},
		{"not set falls back to Magento default", wrap(""), "admin", ""},
		{"empty falls back to Magento default", wrap("<routers><adminhtml><args><frontName><![CDATA[]]></frontName></args></adminhtml></routers>"), "admin", ""},
		{"other router ignored", wrap("<routers><other><args><frontName>x</frontName></args></other></routers>"), "admin", ""},
		{"path traversal rejected", wrap("<routers><adminhtml><args><frontName>a/../b</frontName></args></adminhtml></routers>"), "", "not a plain path segment"},
		{"not xml", "this is not xml", "", "parse app/etc/local.xml"},
		{"wrong root", "<layout><admin/></layout>", "", "parse app/etc/local.xml"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := AdminFrontName([]byte(c.xml))
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("got %q, %v; want %q", got, err, c.want)
			}
		})
	}
}

func TestIsDefaultAdmin(t *testing.T) {
	for name, want := range map[string]bool{
		"admin": true, "ADMIN": true, " Admin ": true, "": true,
		"shop_backend": false, "admin2": false, "adminhtml": false,
	} {
		if got := IsDefaultAdmin(name); got != want {
			t.Errorf("IsDefaultAdmin(%q) = %v, want %v", name, got, want)
		}
	}
}
