package m1audit

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// forensicInstructions follow Sansec's "an issue was found, what next"
// checklist: preserve evidence first, then rotate everything an attacker
// with code execution could have read.
var forensicInstructions = []string{
	"Preserve evidence before cleaning: copy the flagged files with their times (cp -a), and the logs listed, to a host the store cannot write to.",
	"Rotate every credential: all admin passwords (and end admin sessions), the database password in local.xml, SSH keys and passwords of every user on the host, the crypt key in local.xml, and API/payment-provider keys.",
	"Restrict the admin to known IPs and basic auth until the entry point is found.",
	"Find how the attacker got in (access logs around the ctime of the first flagged file; admin logins) and look for copies of the code elsewhere: caches, backups, staging copies.",
	"Redeploy code from a trusted release instead of editing files in place, then run this audit again.",
}

// Finalize fills r.Summary from r.Results and, when any result marks a
// compromise, r.Forensics (times of flagged files, log locations from the
// target, instructions). It is safe to call again after results change.
func Finalize(r *Report) {
	s := Summary{Requests: r.Summary.Requests}
	compromised := false
	for _, c := range r.Results {
		s.Checks++
		switch c.Status {
		case StatusPass:
			s.Pass++
		case StatusFail:
			s.Fail++
		case StatusFixed:
			s.Fixed++
		case StatusNeedsPerson:
			s.NeedsPerson++
		case StatusNotApplicable:
			s.NotApplicable++
		case StatusError:
			s.Errors++
		}
		if c.Compromise {
			compromised = true
		}
	}
	s.Changed = s.Fixed > 0
	s.Compromised = compromised
	// Verification may have counted requests that left no evidence line
	// (canary clean-ups); keep the larger number.
	n := 0
	for _, c := range r.Results {
		n += len(c.Evidence.HTTP)
	}
	s.Requests = max(s.Requests, n)
	r.Summary = s
	if !compromised {
		r.Forensics = nil
		return
	}
	f := &Forensics{Instructions: append([]string{}, forensicInstructions...)}
	f.Files = forensicFiles(r)
	sort.SliceStable(f.Files, func(i, j int) bool { return f.Files[i].ChangeTime.After(f.Files[j].ChangeTime) })
	f.Logs = append([]string{}, r.Target.Logs...)
	if len(f.Logs) == 0 {
		f.Logs = []string{"/var/log/nginx/access.log", "/var/log/nginx/error.log"}
	}
	if r.Target.WebRoot != "" {
		f.Logs = append(f.Logs, filepath.Join(r.Target.WebRoot, "var/log/system.log"), filepath.Join(r.Target.WebRoot, "var/log/exception.log"))
	}
	r.Forensics = f
}

// mdEscape keeps hostile text (file names, excerpts) from breaking the
// Markdown table or injecting links.
func mdEscape(s string) string {
	r := strings.NewReplacer("|", `\|`, "`", "'", "<", "&lt;", ">", "&gt;", "[", `\[`, "]", `\]`, "\n", " ", "\r", " ")
	return r.Replace(s)
}

// Markdown renders the report for people: summary, a table of results,
// details of every result that is not pass or not_applicable, and the
// forensic appendix.
func (r *Report) Markdown() string {
	var b strings.Builder
	r.mdHeader(&b)
	r.mdSummary(&b)
	details := false
	for _, c := range r.Results {
		if c.Status == StatusPass || c.Status == StatusNotApplicable {
			continue
		}
		if !details {
			b.WriteString("\n## Findings\n")
			details = true
		}
		mdFinding(&b, c)
	}
	if f := r.Forensics; f != nil {
		mdForensics(&b, f)
	}
	if t := r.Target; len(t.Notes) > 0 {
		b.WriteString("\n## Discovery notes\n\n")
		for _, n := range t.Notes {
			fmt.Fprintf(&b, "- %s\n", mdEscape(n))
		}
	}
	return b.String()
}

// mdHeader writes the title and what the run was about: app, times,
// store, version.
func (r *Report) mdHeader(b *strings.Builder) {
	title := "Magento 1 hardening report"
	if r.Apply {
		title += " (apply)"
	}
	fmt.Fprintf(b, "# %s: %s\n\n", title, mdEscape(r.Host))
	if r.App != "" {
		fmt.Fprintf(b, "App: %s  \n", mdEscape(r.App))
	}
	if !r.Started.IsZero() {
		fmt.Fprintf(b, "Run: %s – %s  \n", r.Started.UTC().Format(time.RFC3339), r.Finished.UTC().Format(time.RFC3339))
	}
	t := r.Target
	fmt.Fprintf(b, "Store: %s (doc root %s), server name %s  \n", mdEscape(t.WebRoot), mdEscape(t.DocRoot), mdEscape(t.ServerName))
	ver := t.Version
	if t.OpenMage {
		ver = "OpenMage " + ver
	} else if ver != "" {
		ver = "Magento " + strings.TrimSpace(t.Edition+" "+ver)
	}
	fmt.Fprintf(b, "Version: %s; PHP %s; pool %s (user %s)\n\n", mdEscape(orUnknown(ver)), mdEscape(orUnknown(t.PHPVersion)), mdEscape(orUnknown(t.FPMPoolFile)), mdEscape(orUnknown(t.PHPUser)))
}

// mdSummary writes the counts, the compromise warning and the table of
// results.
func (r *Report) mdSummary(b *strings.Builder) {
	s := r.Summary
	fmt.Fprintf(b, "**%d checks: %d pass, %d fail, %d fixed, %d need a person, %d not applicable, %d errors.**", s.Checks, s.Pass, s.Fail, s.Fixed, s.NeedsPerson, s.NotApplicable, s.Errors)
	if s.Requests > 0 {
		fmt.Fprintf(b, " %d HTTP requests.", s.Requests)
	}
	if s.Compromised {
		b.WriteString("\n\n> **Signs of compromise found.** See the forensic appendix before changing anything.")
	}
	b.WriteString("\n\n| Status | Severity | Check | ID |\n|---|---|---|---|\n")
	for _, c := range r.Results {
		fmt.Fprintf(b, "| %s | %s | %s | `%s` |\n", statusMark(c.Status), c.Severity, mdEscape(c.Title), mdEscape(c.ID))
	}
}

// mdFinding writes the details of one result that is not pass or
// not_applicable.
func mdFinding(b *strings.Builder, c CheckResult) {
	fmt.Fprintf(b, "\n### %s: %s\n\n", statusMark(c.Status), mdEscape(c.Title))
	fmt.Fprintf(b, "`%s`, severity %s", mdEscape(c.ID), c.Severity)
	if info, ok := catalogEntry(c.ID); ok && info.Row != "" {
		fmt.Fprintf(b, ", reference row \"%s\"", mdEscape(info.Row))
	}
	b.WriteString("\n\n")
	if c.Evidence.Command != "" {
		fmt.Fprintf(b, "- Command: `%s`\n", mdEscape(c.Evidence.Command))
	}
	if c.Evidence.Detail != "" {
		fmt.Fprintf(b, "- Detail: %s\n", mdEscape(c.Evidence.Detail))
	}
	for _, f := range c.Evidence.Files {
		fmt.Fprintf(b, "- File: `%s`\n", mdEscape(f))
	}
	for _, f := range c.Evidence.Findings {
		loc := f.Path
		if f.Line > 0 {
			loc = fmt.Sprintf("%s:%d", f.Path, f.Line)
		}
		sig := ""
		if f.SignatureID != "" {
			sig = " [" + f.SignatureID + "]"
		}
		fmt.Fprintf(b, "- `%s`%s %s\n", mdEscape(loc), mdEscape(sig), mdEscape(f.Evidence))
	}
	for _, h := range c.Evidence.HTTP {
		fmt.Fprintf(b, "- HTTP %s %s (Host %s) → %d%s %s\n", h.Method, mdEscape(h.URL), mdEscape(h.Host), h.Status, map[bool]string{true: " LEAKED", false: ""}[h.Leaked], mdEscape(h.Note))
	}
	if c.Before != "" || c.After != "" {
		fmt.Fprintf(b, "- Before: %s; after: %s\n", mdEscape(c.Before), mdEscape(c.After))
	}
	if c.Fix != "" {
		fmt.Fprintf(b, "\n**What to do:** %s\n", mdEscape(c.Fix))
	}
}

// mdForensics writes the forensic appendix: files, logs, next steps.
func mdForensics(b *strings.Builder, f *Forensics) {
	b.WriteString("\n## Forensic appendix\n\n")
	if len(f.Files) > 0 {
		b.WriteString("| File | Changed (ctime) | Modified (mtime) | Size | Mode | Owner | SHA-256 | Recorded | Check |\n|---|---|---|---|---|---|---|---|---|\n")
		for _, x := range f.Files {
			fmt.Fprintf(b, "| `%s` | %s | %s | %d | %s | %d:%d | %s | %s | `%s` |\n", mdEscape(x.Path), x.ChangeTime.Format(time.RFC3339), x.ModTime.Format(time.RFC3339), x.Size,
				mdEscape(x.Mode), x.UID, x.GID, mdEscape(x.SHA256), x.RecordedAt.Format(time.RFC3339), mdEscape(x.CheckID))
		}
		b.WriteString("\n")
	}
	b.WriteString("Logs to keep and read:\n\n")
	for _, l := range f.Logs {
		fmt.Fprintf(b, "- `%s`\n", mdEscape(l))
	}
	b.WriteString("\nNext steps:\n\n")
	for i, in := range f.Instructions {
		fmt.Fprintf(b, "%d. %s\n", i+1, mdEscape(in))
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func statusMark(s Status) string {
	switch s {
	case StatusPass:
		return "✅ pass"
	case StatusFail:
		return "❌ fail"
	case StatusFixed:
		return "🔧 fixed"
	case StatusNeedsPerson:
		return "👤 needs person"
	case StatusNotApplicable:
		return "– n/a"
	case StatusError:
		return "⚠️ error"
	}
	return string(s)
}
