package webstack

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/mageflow/mageflow/internal/host/hostops"
)

// secretFilePrefix starts the line SecretFile renders; StartNginx and
// Reload take such lines out of the config and write their content to a
// file of its own.
const secretFilePrefix = "#mageflow-secret-file "

var secretNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// SecretFile returns a config line that carries a secret file's content
// (base64) to StartNginx and Proc.Reload: they write the content to
// <dir>/<name> with mode 0600, owned by the user nginx's master runs as
// (nginx reads includes as that user, before it starts workers), and drop
// the line from nginx.conf, which stays world-readable and secret-free. The
// config refers to the file with a relative `include name;` (nginx resolves
// it against the directory of nginx.conf).
//
// An operator who copies a rendered site into their own nginx writes the
// file themselves (decode the line's base64; mode 0600 root, or 0640 with
// nginx's group) and deletes the line.
func SecretFile(name string, content []byte) string {
	return secretFilePrefix + name + " " + base64.StdEncoding.EncodeToString(content)
}

// splitSecrets takes SecretFile lines out of confs: it returns the confs
// without them and the files they carry, by name.
func splitSecrets(confs []string) ([]string, map[string][]byte, error) {
	files := map[string][]byte{}
	out := make([]string, 0, len(confs))
	for _, c := range confs {
		if !strings.Contains(c, secretFilePrefix) {
			out = append(out, c)
			continue
		}
		var b strings.Builder
		sc := bufio.NewScanner(strings.NewReader(c))
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			line := sc.Text()
			rest, ok := strings.CutPrefix(strings.TrimSpace(line), secretFilePrefix)
			if !ok {
				b.WriteString(line + "\n")
				continue
			}
			name, enc, _ := strings.Cut(rest, " ")
			data, err := base64.StdEncoding.DecodeString(enc)
			if err != nil || !secretNameRE.MatchString(name) {
				return nil, nil, fmt.Errorf("webstack: a %q line is malformed (want a plain file name and base64 content, as SecretFile renders it)", strings.TrimSpace(secretFilePrefix))
			}
			files[name] = data
		}
		out = append(out, b.String())
	}
	return out, files, nil
}

// writeSecrets writes each file into dir, mode 0600, through a temporary
// file created 0600, so the content is never readable by anybody else.
func writeSecrets(dir string, files map[string][]byte) error {
	for name, data := range files {
		if err := hostops.WriteFileAtomic(filepath.Join(dir, name), data, 0o600, hostops.NoChange); err != nil {
			return fmt.Errorf("webstack: write secret file %s: %w", name, err)
		}
	}
	return nil
}
