// Package searchattr names the custom search attributes every mageflow
// workflow carries, so an operator can find "the production deploy of build
// 1234" in the Web UI with a query such as
//
//	App = "shop" AND Environment = "production" AND BuildNumber = 1234
//
// The dev server, the compose bootstrap and the tests register exactly this
// list; upserting an unregistered attribute fails the workflow task forever.
package searchattr

import (
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
)

var (
	App         = temporal.NewSearchAttributeKeyKeyword("App")
	Environment = temporal.NewSearchAttributeKeyKeyword("Environment")
	Branch      = temporal.NewSearchAttributeKeyKeyword("Branch")
	CommitID    = temporal.NewSearchAttributeKeyKeyword("CommitID")
	ReleaseID   = temporal.NewSearchAttributeKeyKeyword("ReleaseID")
	BuildNumber = temporal.NewSearchAttributeKeyInt64("BuildNumber")
)

// Definition is one attribute with its type, for registration.
type Definition struct {
	Name string
	Type enums.IndexedValueType
	// CLI is the type name `temporal server start-dev --search-attribute`
	// and `temporal operator search-attribute create` expect.
	CLI string
}

// All lists every custom attribute, in a fixed order.
func All() []Definition {
	return []Definition{
		{"App", enums.INDEXED_VALUE_TYPE_KEYWORD, "Keyword"},
		{"Environment", enums.INDEXED_VALUE_TYPE_KEYWORD, "Keyword"},
		{"Branch", enums.INDEXED_VALUE_TYPE_KEYWORD, "Keyword"},
		{"CommitID", enums.INDEXED_VALUE_TYPE_KEYWORD, "Keyword"},
		{"ReleaseID", enums.INDEXED_VALUE_TYPE_KEYWORD, "Keyword"},
		{"BuildNumber", enums.INDEXED_VALUE_TYPE_INT, "Int"},
	}
}

// DevServerFlags returns the start-dev flags registering All.
func DevServerFlags() []string {
	var args []string
	for _, d := range All() {
		args = append(args, "--search-attribute", d.Name+"="+d.CLI)
	}
	return args
}

// DevServerAttributes is All in the shape testsuite.DevServerOptions wants
// (only the keys and their types matter).
func DevServerAttributes() temporal.SearchAttributes {
	return temporal.NewSearchAttributes(
		App.ValueSet(""), Environment.ValueSet(""), Branch.ValueSet(""),
		CommitID.ValueSet(""), ReleaseID.ValueSet(""), BuildNumber.ValueSet(0),
	)
}
