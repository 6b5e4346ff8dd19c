package magento

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Setting is one config path and the value config:set stores for it.
type Setting struct {
	Path  string
	Value string
}

// ParseConfig reads the environment's config secret: a JSON object of
// config path to value ("web/secure/base_url": "https://…"). Strings are
// used as they are, numbers as written, booleans as 1/0 (how Magento stores
// yes/no fields). Settings come back sorted by path so every host applies
// them in the same order. Errors name the path, never the value.
func ParseConfig(data []byte) ([]Setting, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		// The JSON error may quote the secret's content: leave it out.
		return nil, fmt.Errorf("the config secret is not a JSON object of config path to value; check its syntax (e.g. with jq) — the parser's message is withheld because it can quote the secret")
	}
	out := make([]Setting, 0, len(m))
	for p, v := range m {
		if p == "" || strings.ContainsAny(p, " \t\n") || strings.HasPrefix(p, "-") {
			return nil, fmt.Errorf("config path %q is not a Magento config path like web/secure/base_url", p)
		}
		var s string
		switch x := v.(type) {
		case string:
			s = x
		case json.Number:
			s = x.String()
		case bool:
			s = "0"
			if x {
				s = "1"
			}
		default:
			return nil, fmt.Errorf("config path %s: the value must be a string, number or boolean (objects, arrays and null cannot be stored with config:set)", p)
		}
		out = append(out, Setting{Path: p, Value: s})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// argvScript is the PHP program ApplyConfig hands to php on standard
// input: it gives bin/magento the command line it would have had (the
// base64 JSON array replaces %s) and runs it in the same process. The
// value is thereby on no command line and in no environment: every local
// user can read /proc/<pid>/cmdline, and audit logs and process agents
// record it; a pipe is readable by nobody else.
const argvScript = `<?php
$argv = json_decode(base64_decode('%s'), true);
$argc = count($argv);
$_SERVER['argv'] = $argv;
$_SERVER['argc'] = $argc;
$_SERVER['SCRIPT_NAME'] = $_SERVER['PHP_SELF'] = 'bin/magento';
$_SERVER['SCRIPT_FILENAME'] = getcwd() . '/bin/magento';
require getcwd() . '/bin/magento';
`

// ApplyConfig stores every setting with config:set, or with
// config:sensitive:set for the paths listed in sensitive (which Magento
// keeps out of config dumps). The values never reach a command line: php
// runs with no arguments and reads a small program from its standard input
// that runs bin/magento in-process with the command line in $argv (see
// argvScript). Values never appear in errors either: they are redacted
// from the output tail and the arguments are not quoted.
func (c CLI) ApplyConfig(ctx context.Context, settings []Setting, sensitive []string) error {
	values := make([]string, len(settings))
	for i, s := range settings {
		values[i] = s.Value
	}
	for _, s := range settings {
		cmd := "config:set"
		if slices.Contains(sensitive, s.Path) {
			cmd = "config:sensitive:set"
		}
		// "--" stops option parsing: a value starting with "-" is data.
		argv, err := json.Marshal([]string{"bin/magento", cmd, "--", s.Path, s.Value})
		if err != nil {
			return fmt.Errorf("config path %s: %w", s.Path, err)
		}
		script := fmt.Sprintf(argvScript, base64.StdEncoding.EncodeToString(argv))
		r, err := c.run(ctx, cmd, strings.NewReader(script))
		if err != nil {
			return fmt.Errorf("config path %s: %w", s.Path, errors.New(Redact(err.Error(), values...)))
		}
		if r.ExitCode != 0 {
			return fmt.Errorf("config path %s: %w", s.Path, &CommandError{Command: cmd, ExitCode: r.ExitCode, Tail: Redact(r.Tail(15), values...)})
		}
	}
	return nil
}
