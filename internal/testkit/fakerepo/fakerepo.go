// Package fakerepo generates large git histories quickly for tests and
// benchmarks of gitmeta. It streams `git fast-import`, which writes one
// packfile directly: 100,000 commits take seconds, where one `git commit`
// per commit would take many minutes.
//
// The history is shaped like a real project's: a main line, short feature
// branches merged back, criss-cross merges between two long-lived branches,
// occasional octopus merges and tags, so counting must handle every parent
// layout the commit-graph format has.
package fakerepo

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os/exec"
	"strings"
)

// Options shapes the generated history.
type Options struct {
	// Commits is the number of commits to create (merges included).
	Commits int
	// Seed makes the history reproducible.
	Seed uint64
	// Branch receives the main line; defaults to "main".
	Branch string
	// From, when set, is a commit-ish already in the repository that the
	// main line continues from (used to simulate a push of new commits).
	From string
	// StartTime is the committer time of the first commit (Unix seconds).
	StartTime int64
}

// CheckGit fails with an actionable message when the git CLI is missing.
func CheckGit() error {
	if _, err := exec.LookPath("git"); err != nil {
		return fmt.Errorf("the git CLI is required (install it, e.g. apt-get install git): %w", err)
	}
	return nil
}

// Init creates a bare repository at dir.
func Init(dir string) error {
	if err := CheckGit(); err != nil {
		return err
	}
	out, err := exec.Command("git", "init", "-q", "--bare", "-b", "main", dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("git init %s: %w: %s", dir, err, out)
	}
	return nil
}

// Generate appends a history to the repository at gitDir (bare or not) and
// returns the hash of the new branch tip.
func Generate(gitDir string, o Options) (string, error) {
	if err := CheckGit(); err != nil {
		return "", err
	}
	if o.Branch == "" {
		o.Branch = "main"
	}
	if o.StartTime == 0 {
		o.StartTime = 1_600_000_000
	}
	cmd := exec.Command("git", "--git-dir", gitDir, "fast-import", "--quiet", "--force")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	werr := write(in, o)
	cerr := in.Close()
	if err := cmd.Wait(); err != nil {
		return "", fmt.Errorf("git fast-import: %w: %s", err, stderr.String())
	}
	if werr != nil {
		return "", werr
	}
	if cerr != nil {
		return "", cerr
	}
	out, err := exec.Command("git", "--git-dir", gitDir, "rev-parse", "refs/heads/"+o.Branch).Output()
	if err != nil {
		return "", fmt.Errorf("rev-parse %s: %w", o.Branch, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// write emits the fast-import stream.
func write(dst io.Writer, o Options) error {
	w := bufio.NewWriterSize(dst, 1<<20)
	rng := rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15))
	mark := 0
	t := o.StartTime
	made := 0
	mainRef := "refs/heads/" + o.Branch
	var mainline []int // marks of main-line commits, for fork points

	// commit writes one commit to ref with the given parents ("" parent
	// means continue from o.From, or a root commit when that is empty too).
	commit := func(ref string, parents []string, msg string) int {
		mark++
		t += 1 + int64(rng.IntN(600))
		fmt.Fprintf(w, "commit %s\nmark :%d\n", ref, mark)
		fmt.Fprintf(w, "author Dev %d <dev%d@example.com> %d +0000\n", mark%7, mark%7, t)
		fmt.Fprintf(w, "committer Dev %d <dev%d@example.com> %d +0000\n", mark%7, mark%7, t)
		fmt.Fprintf(w, "data %d\n%s\n", len(msg), msg)
		for i, p := range parents {
			if i == 0 {
				fmt.Fprintf(w, "from %s\n", p)
			} else {
				fmt.Fprintf(w, "merge %s\n", p)
			}
		}
		content := fmt.Sprintf("change %d\n", mark)
		fmt.Fprintf(w, "M 100644 inline src/file%d.txt\ndata %d\n%s\n", mark%97, len(content), content)
		made++
		return mark
	}
	ref := func(m int) string { return fmt.Sprintf(":%d", m) }

	var tip []string
	if o.From != "" {
		tip = []string{o.From}
	}
	// "develop" is a long-lived branch merged both ways with main, which
	// produces criss-cross merges.
	developRef := "refs/heads/develop"
	develop := 0
	for made < o.Commits {
		left := o.Commits - made
		switch x := rng.IntN(100); {
		case x < 70 || left < 12:
			m := commit(mainRef, tip, fmt.Sprintf("main change %d", mark+1))
			tip = []string{ref(m)}
			mainline = append(mainline, m)
		case x < 88 && len(mainline) > 0:
			// Feature branch forked a little back, merged into main.
			fork := mainline[max(0, len(mainline)-1-rng.IntN(min(50, len(mainline))))]
			side := ref(fork)
			for k := 1 + rng.IntN(6); k > 0; k-- {
				side = ref(commit("refs/heads/feature", []string{side}, fmt.Sprintf("feature work %d", mark+1)))
			}
			m := commit(mainRef, append(tip, side), "Merge branch 'feature'")
			tip = []string{ref(m)}
			mainline = append(mainline, m)
		case x < 96 && len(mainline) > 0:
			// develop and main merge into each other: criss-cross.
			if develop == 0 {
				develop = mainline[0]
			}
			d := commit(developRef, []string{ref(develop)}, fmt.Sprintf("develop work %d", mark+1))
			before := tip
			m := commit(mainRef, append(tip, ref(d)), "Merge branch 'develop'")
			develop = commit(developRef, []string{ref(d), before[0]}, "Merge branch 'main' into develop")
			tip = []string{ref(m)}
			mainline = append(mainline, m)
		case len(mainline) > 2:
			// Octopus merge of two short branches.
			a := commit("refs/heads/octo-a", []string{ref(mainline[len(mainline)-2])}, "octo a")
			b := commit("refs/heads/octo-b", []string{ref(mainline[len(mainline)-3])}, "octo b")
			m := commit(mainRef, append(tip, ref(a), ref(b)), "Merge branches 'octo-a' and 'octo-b'")
			tip = []string{ref(m)}
			mainline = append(mainline, m)
		default:
			m := commit(mainRef, tip, "main change")
			tip = []string{ref(m)}
			mainline = append(mainline, m)
		}
		if len(mainline) > 0 && rng.IntN(500) == 0 {
			fmt.Fprintf(w, "reset refs/tags/v%d\nfrom :%d\n\n", mark, mainline[len(mainline)-1])
		}
	}
	return w.Flush()
}
