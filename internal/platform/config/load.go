package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/mageflow/mageflow/internal/platform/units"
	"gopkg.in/yaml.v3"
)

// Error is a configuration problem at a place in the file.
type Error struct {
	File string
	Line int
	Msg  string
	Hint string
}

func (e *Error) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	s := loc + ": " + e.Msg
	if e.Hint != "" {
		s += " (" + e.Hint + ")"
	}
	return s
}

// Errors collects every problem so an operator fixes them in one pass.
type Errors []*Error

func (es Errors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "\n")
}

// Load reads the file at path. A missing file is an error unless allowMissing
// is set, in which case the defaults are returned (so `mageflow` works in an
// empty directory and says which file it would read).
func Load(path string, allowMissing bool) (*Config, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && allowMissing {
		c := Default()
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf(msgReadConfig, err, EnvFile)
	}
	return Parse(path, data)
}

// Parse validates data as the content of file path.
func Parse(path string, data []byte) (*Config, error) {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			c := Default()
			c.File = path
			return c, nil
		}
		return nil, &Error{File: path, Line: yamlLine(err.Error()),
			Msg: "not valid YAML: " + stripYAMLPrefix(err.Error()), Hint: "check indentation and quoting"}
	}
	var errs Errors
	doc := &root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	checkKeys(path, doc, reflect.TypeOf(Config{}), "", &errs)
	if len(errs) > 0 {
		return nil, errs
	}
	c := &Config{}
	if err := doc.Decode(c); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			for _, m := range te.Errors {
				errs = append(errs, &Error{File: path, Line: yamlLine(m), Msg: stripYAMLPrefix(m), Hint: hintYAMLType})
			}
			return nil, errs
		}
		return nil, &Error{File: path, Line: yamlLine(err.Error()), Msg: strings.TrimPrefix(stripYAMLPrefix(err.Error()), ": ")}
	}
	c.File = path
	base, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	c.applyDefaults(base)
	if errs := c.validate(path, doc); len(errs) > 0 {
		return nil, errs
	}
	return c, nil
}

var lineRe = regexp.MustCompile(`line (\d+)`)

func yamlLine(msg string) int {
	m := lineRe.FindStringSubmatch(msg)
	if m == nil {
		return 0
	}
	var n int
	fmt.Sscanf(m[1], "%d", &n)
	return n
}

func stripYAMLPrefix(msg string) string {
	msg = strings.TrimPrefix(msg, "yaml: ")
	msg = lineRe.ReplaceAllString(strings.TrimPrefix(msg, "unmarshal errors:\n  "), "")
	return strings.TrimPrefix(strings.TrimSpace(msg), ": ")
}

// checkKeys walks the YAML tree against the struct type and reports every key
// the type does not know, with the closest known key as a hint.
func checkKeys(file string, n *yaml.Node, t reflect.Type, path string, errs *Errors) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		if t == reflect.TypeOf(Duration{}) {
			return
		}
		if n.Kind != yaml.MappingNode {
			if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
				return
			}
			*errs = append(*errs, &Error{File: file, Line: n.Line, Msg: fmt.Sprintf("%s must be a mapping of keys", orRoot(path)),
				Hint: "known keys: " + strings.Join(knownKeys(t), ", ")})
			return
		}
		fields := map[string]reflect.Type{}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
			if tag == "" || tag == "-" {
				continue
			}
			fields[tag] = f.Type
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			ft, ok := fields[k.Value]
			if !ok {
				hint := "known keys: " + strings.Join(knownKeys(t), ", ")
				if s := closest(k.Value, knownKeys(t)); s != "" {
					hint = fmt.Sprintf("did you mean %q?", s)
				}
				msg := fmt.Sprintf("unknown key %q in %s", k.Value, orRoot(path))
				*errs = append(*errs, &Error{File: file, Line: k.Line, Msg: msg, Hint: hint})
				continue
			}
			checkKeys(file, v, ft, join(path, k.Value), errs)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			checkKeys(file, n.Content[i+1], t.Elem(), join(path, n.Content[i].Value), errs)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i, c := range n.Content {
			checkKeys(file, c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), errs)
		}
	}
}

func orRoot(p string) string {
	if p == "" {
		return "the top level"
	}
	return p
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}

func knownKeys(t reflect.Type) []string {
	var ks []string
	for i := 0; i < t.NumField(); i++ {
		tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
		if tag != "" && tag != "-" {
			ks = append(ks, tag)
		}
	}
	sort.Strings(ks)
	return ks
}

// closest returns the known key within edit distance 2 of s, if any.
func closest(s string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := units.EditDistance(s, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// UnmarshalYAML reads a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration, write e.g. 90s, 20m or 2h", n.Line, n.Value)
	}
	d.Duration = v
	return nil
}

// MarshalYAML writes the duration back as a string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// CheckSecretRef validates a secret reference without reading it.
func CheckSecretRef(ref string) error {
	kind, name, ok := strings.Cut(ref, ":")
	if !ok || name == "" {
		return fmt.Errorf("secret reference %q has no kind", redact(ref))
	}
	switch kind {
	case "file":
		if strings.Contains(name, "..") || strings.HasPrefix(name, "/") {
			return fmt.Errorf("secret file %q must be a name inside secrets.dir", name)
		}
	case "env":
		if !envKeyRe.MatchString(name) {
			return fmt.Errorf("secret env %q is not a variable name", name)
		}
	default:
		return fmt.Errorf("secret reference kind %q is not known", kind)
	}
	return nil
}

// redact keeps an accidental inline secret out of error messages.
func redact(s string) string {
	if len(s) <= 4 {
		return "****"
	}
	return s[:2] + strings.Repeat("*", 6)
}

// lineOf returns the line of the node at a dotted path, or of its nearest
// existing parent.
func lineOf(doc *yaml.Node, path string) int {
	n := doc
	line := 0
	for _, part := range strings.Split(path, ".") {
		if n == nil || n.Kind != yaml.MappingNode {
			break
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == part {
				line = n.Content[i].Line
				next = n.Content[i+1]
				break
			}
		}
		if next == nil {
			break
		}
		n = next
	}
	return line
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
