package m1audit

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"regexp"
	"strings"
)

// DefaultAdminFrontName is the admin path Magento 1 uses when local.xml does
// not set one. Bots probe /admin on every Magento 1 store, so keeping it is a
// finding.
const DefaultAdminFrontName = "admin"

type localXML struct {
	XMLName   xml.Name `xml:"config"`
	FrontName *string  `xml:"admin>routers>adminhtml>args>frontName"`
}

// frontNameRe is what Magento's router accepts as a path segment; anything
// else in local.xml is a typo or tampering and would make every derived
// nginx rule wrong.
var frontNameRe = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// AdminFrontName returns the admin URL path segment configured in
// app/etc/local.xml (<config><admin><routers><adminhtml><args><frontName>),
// or DefaultAdminFrontName when local.xml does not set it. CDATA and
// surrounding whitespace are handled as Magento does.
//
// The database setting admin/url/use_custom_path can move the admin again;
// that is a database check and is not seen here.
func AdminFrontName(local []byte) (string, error) {
	var c localXML
	dec := xml.NewDecoder(bytes.NewReader(local))
	if err := dec.Decode(&c); err != nil {
		return "", fmt.Errorf("parse app/etc/local.xml: %w (is it the Magento 1 local.xml with a <config> root?)", err)
	}
	if c.FrontName == nil {
		return DefaultAdminFrontName, nil
	}
	name := strings.TrimSpace(*c.FrontName)
	if name == "" {
		return DefaultAdminFrontName, nil
	}
	if !frontNameRe.MatchString(name) {
		return "", fmt.Errorf("app/etc/local.xml admin frontName %q is not a plain path segment ([A-Za-z0-9_-]); fix local.xml before deriving admin rules from it", name)
	}
	return name, nil
}

// IsDefaultAdmin reports whether name is the guessable default admin path.
// The comparison ignores case: scanners try /Admin and /ADMIN as well, so
// a case variant hides nothing. An empty name means "not set", which is the
// default.
func IsDefaultAdmin(name string) bool {
	name = strings.TrimSpace(name)
	return name == "" || strings.EqualFold(name, DefaultAdminFrontName)
}
