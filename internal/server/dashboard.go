package server

import (
	"context"
	"embed"
	"fmt"
	"html/template"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/mageflow/mageflow/internal/release"
	"github.com/mageflow/mageflow/internal/units"
)

//go:embed templates/index.html
var templateFS embed.FS

var indexTemplate = template.Must(template.ParseFS(templateFS, "templates/index.html"))

// maxDashboardReleases keeps the page small for apps with long histories;
// the JSON API returns everything.
const maxDashboardReleases = 50

const listTimeout = 10 * time.Second

type dashboard struct {
	opt Options
	log *slog.Logger
}

func newDashboard(opt Options) *dashboard { return &dashboard{opt: opt, log: opt.Logger} }

type appView struct {
	Name, RepoURL, Provider string
	Branches                []branchView
	Releases                []releaseView
	Total                   int
	Error                   string
}

type branchView struct{ Branch, Environment string }

type releaseView struct {
	ID, Branch, ShortCommit, Message, Author, Time, Size, WorkflowID, WorkflowURL string
	BuildNumber                                                                   int
}

type indexView struct {
	Apps        []appView
	HasReleases bool
	Generated   string
}

func (d *dashboard) serveIndex(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), listTimeout)
	defer cancel()
	view := indexView{HasReleases: d.opt.Releases != nil, Generated: time.Now().UTC().Format(time.RFC3339)}
	for _, app := range d.opt.Apps {
		av := appView{Name: app.Name, RepoURL: app.RepoURL, Provider: string(app.Provider)}
		for _, b := range slices.Sorted(maps.Keys(app.Branches)) {
			av.Branches = append(av.Branches, branchView{Branch: b, Environment: app.Branches[b]})
		}
		if d.opt.Releases != nil {
			metas, err := d.opt.Releases.List(ctx, app.Name)
			if err != nil {
				d.log.Error("dashboard: listing releases failed", slog.String("app", app.Name), slog.String("error", err.Error()))
				av.Error = "could not list releases; see the server log"
			}
			av.Total = len(metas)
			for i, m := range metas {
				if i == maxDashboardReleases {
					break
				}
				av.Releases = append(av.Releases, d.releaseView(m))
			}
		}
		view.Apps = append(view.Apps, av)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	// The page has no script at all; forbid any that an escaping bug might
	// let through.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	if err := indexTemplate.Execute(w, view); err != nil {
		d.log.Error("dashboard: rendering failed", slog.String("error", err.Error()))
	}
}

func (d *dashboard) releaseView(m release.Meta) releaseView {
	short := m.ShortCommit
	if short == "" {
		short = m.Commit[:min(7, len(m.Commit))]
	}
	when := m.BuiltAt
	if when.IsZero() {
		when = m.CommittedAt
	}
	v := releaseView{
		ID: m.ID, BuildNumber: m.BuildNumber, Branch: m.Branch, ShortCommit: short,
		Message: firstLine(m.Message), Author: m.Author, Size: units.Bytes(m.Artifact.Size),
		WorkflowID: m.WorkflowID,
	}
	if !when.IsZero() {
		v.Time = when.UTC().Format("2006-01-02 15:04 UTC")
	}
	if m.WorkflowID != "" && d.opt.UIBaseURL != "" {
		v.WorkflowURL = workflowURL(d.opt.UIBaseURL, d.opt.Namespace, m.WorkflowID)
	}
	return v
}

// workflowURL links to a workflow in the Temporal Web UI. Both segments are
// path-escaped: workflow ids may contain slashes.
func workflowURL(base, namespace, workflowID string) string {
	return strings.TrimRight(base, "/") + "/namespaces/" + url.PathEscape(namespace) + "/workflows/" + url.PathEscape(workflowID)
}

func (d *dashboard) serveAPI(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("app")
	if name == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "add ?app=NAME; configured apps: " + appNames(d.opt.Apps)})
		return
	}
	if !slices.ContainsFunc(d.opt.Apps, func(a App) bool { return a.Name == name }) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no app %q; configured apps: %s", name, appNames(d.opt.Apps))})
		return
	}
	if d.opt.Releases == nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "release listing is not configured on this server"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), listTimeout)
	defer cancel()
	metas, err := d.opt.Releases.List(ctx, name)
	if err != nil {
		d.log.Error("api: listing releases failed", slog.String("app", name), slog.String("error", err.Error()))
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "could not list releases; see the server log"})
		return
	}
	if metas == nil {
		metas = []release.Meta{} // an empty list, not null, for scripts
	}
	writeJSON(w, http.StatusOK, metas)
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		return s[:i]
	}
	return s
}

