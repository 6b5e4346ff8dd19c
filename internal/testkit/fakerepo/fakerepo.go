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
	h := &history{
		w:       bufio.NewWriterSize(dst, 1<<20),
		rng:     rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15)),
		t:       o.StartTime,
		mainRef: "refs/heads/" + o.Branch,
	}
	if o.From != "" {
		h.tip = []string{o.From}
	}
	for h.made < o.Commits {
		left := o.Commits - h.made
		switch x := h.rng.IntN(100); {
		case x < 70 || left < 12:
			h.mainCommit(fmt.Sprintf("main change %d", h.mark+1))
		case x < 88 && len(h.mainline) > 0:
			h.featureMerge()
		case x < 96 && len(h.mainline) > 0:
			h.crissCross()
		case len(h.mainline) > 2:
			h.octopus()
		default:
			h.mainCommit("main change")
		}
		if len(h.mainline) > 0 && h.rng.IntN(500) == 0 {
			fmt.Fprintf(h.w, "reset refs/tags/v%d\nfrom :%d\n\n", h.mark, h.mainline[len(h.mainline)-1])
		}
	}
	return h.w.Flush()
}

// history is the fast-import stream write is producing and where its
// branches stand.
type history struct {
	w        *bufio.Writer
	rng      *rand.Rand
	mark     int
	t        int64
	made     int
	mainRef  string
	mainline []int    // marks of main-line commits, for fork points
	tip      []string // main's parent for the next commit ("" at the start: o.From or a root)
	// develop is the tip of "develop", a long-lived branch merged both ways
	// with main, which produces criss-cross merges (0: not forked yet).
	develop int
}

// developRef is the long-lived branch merged both ways with main.
const developRef = "refs/heads/develop"

// commit writes one commit to branch with the given parents (no parents
// means continue from o.From, or a root commit when that is empty too).
func (h *history) commit(branch string, parents []string, msg string) int {
	h.mark++
	h.t += 1 + int64(h.rng.IntN(600))
	fmt.Fprintf(h.w, "commit %s\nmark :%d\n", branch, h.mark)
	fmt.Fprintf(h.w, "author Dev %d <dev%d@example.com> %d +0000\n", h.mark%7, h.mark%7, h.t)
	fmt.Fprintf(h.w, "committer Dev %d <dev%d@example.com> %d +0000\n", h.mark%7, h.mark%7, h.t)
	fmt.Fprintf(h.w, "data %d\n%s\n", len(msg), msg)
	for i, p := range parents {
		if i == 0 {
			fmt.Fprintf(h.w, "from %s\n", p)
		} else {
			fmt.Fprintf(h.w, "merge %s\n", p)
		}
	}
	content := fmt.Sprintf("change %d\n", h.mark)
	fmt.Fprintf(h.w, "M 100644 inline src/file%d.txt\ndata %d\n%s\n", h.mark%97, len(content), content)
	h.made++
	return h.mark
}

// ref names the commit with mark m.
func ref(m int) string { return fmt.Sprintf(":%d", m) }

// mainCommit commits to main with the given extra parents and advances it.
func (h *history) mainCommit(msg string, merged ...string) {
	m := h.commit(h.mainRef, append(h.tip, merged...), msg)
	h.tip = []string{ref(m)}
	h.mainline = append(h.mainline, m)
}

// featureMerge makes a feature branch forked a little back and merges it
// into main.
func (h *history) featureMerge() {
	fork := h.mainline[max(0, len(h.mainline)-1-h.rng.IntN(min(50, len(h.mainline))))]
	side := ref(fork)
	for k := 1 + h.rng.IntN(6); k > 0; k-- {
		side = ref(h.commit("refs/heads/feature", []string{side}, fmt.Sprintf("feature work %d", h.mark+1)))
	}
	h.mainCommit("Merge branch 'feature'", side)
}

// crissCross merges develop and main into each other.
func (h *history) crissCross() {
	if h.develop == 0 {
		h.develop = h.mainline[0]
	}
	d := h.commit(developRef, []string{ref(h.develop)}, fmt.Sprintf("develop work %d", h.mark+1))
	before := h.tip
	m := h.commit(h.mainRef, append(h.tip, ref(d)), "Merge branch 'develop'")
	h.develop = h.commit(developRef, []string{ref(d), before[0]}, "Merge branch 'main' into develop")
	h.tip = []string{ref(m)}
	h.mainline = append(h.mainline, m)
}

// octopus merges two short branches into main at once.
func (h *history) octopus() {
	a := h.commit("refs/heads/octo-a", []string{ref(h.mainline[len(h.mainline)-2])}, "octo a")
	b := h.commit("refs/heads/octo-b", []string{ref(h.mainline[len(h.mainline)-3])}, "octo b")
	h.mainCommit("Merge branches 'octo-a' and 'octo-b'", ref(a), ref(b))
}
