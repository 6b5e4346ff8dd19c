package server

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"html/template"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/mageflow/mageflow/internal/build/release"
	"github.com/mageflow/mageflow/internal/front/tclient"
	"github.com/mageflow/mageflow/internal/platform/units"
)

//go:embed templates/*.html
var templateFS embed.FS

var indexTemplate = template.Must(template.ParseFS(templateFS, "templates/base.html", "templates/index.html"))

// maxDashboardReleases keeps the page small for apps with long histories;
// the JSON API returns everything.
const maxDashboardReleases = 50

const listTimeout = 10 * time.Second

type dashboard struct {
	opt  Options
	log  *slog.Logger
	auth *authenticator
}

func newDashboard(opt Options) *dashboard {
	return &dashboard{opt: opt, log: opt.Logger, auth: newAuthenticator(opt.Auth, opt.Logger, opt.clock)}
}

type appView struct {
	Name, RepoURL, Provider string
	Branches                []branchView
	Releases                []releaseView
	Total                   int
	Error                   string
	// Deploy side, when Options.Deploys is set.
	Envs         []envView
	Deploys      []deployView
	DeploysError string
}

type branchView struct{ Branch, Environment string }

type releaseView struct {
	ID, Branch, ShortCommit, Message, Author, Time, Size, WorkflowID, WorkflowURL string
	BuildNumber                                                                   int
	// RunningOn names the environments running this release; Targets those
	// it can be deployed to.
	RunningOn, Targets []string
}

type indexView struct {
	chrome
	Apps        []appView
	HasReleases bool
	HasDeploys  bool
	EnvsError   string
	Generated   string
}

// chrome is what every page shows around its content: who is logged in,
// the CSRF token for its forms, the flash message of the last action.
type chrome struct {
	Title string
	User  string
	// CSRF is the hidden field every form carries.
	CSRF string
	// CanAct shows the action forms: the viewer is authenticated.
	CanAct, AuthConfigured bool
	Flash                  *flash
}

func (d *dashboard) chrome(w http.ResponseWriter, r *http.Request, p *principal, title string) chrome {
	c := chrome{Title: title, AuthConfigured: d.opt.Auth.configured()}
	if p != nil {
		c.User, c.CanAct, c.CSRF = p.User, true, d.auth.csrfToken(p)
	}
	if c.AuthConfigured {
		c.Flash = d.takeFlash(w, r)
	}
	return c
}

// render executes a page into memory first, so a template error becomes a
// clean 500 rather than half a page.
func (d *dashboard) render(w http.ResponseWriter, status int, t *template.Template, v any) {
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "base", v); err != nil {
		d.log.Error("dashboard: rendering failed", slog.String("error", err.Error()))
		http.Error(w, "the page could not be rendered; see the server log", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	// The pages have no script at all; forbid any that an escaping bug
	// might let through, keep forms posting only here, and refuse framing
	// so the action buttons cannot be clickjacked.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	// same-origin keeps the Origin header on our own form posts (the CSRF
	// check relies on it) and sends nothing to the Web UI links.
	h.Set("Referrer-Policy", "same-origin")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (d *dashboard) serveIndex(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), listTimeout)
	defer cancel()
	view := indexView{HasReleases: d.opt.Releases != nil, HasDeploys: d.opt.Deploys != nil, Generated: time.Now().UTC().Format(time.RFC3339)}
	view.chrome = d.chrome(w, r, d.viewer(r), "mageflow")
	var byApp map[string][]EnvView
	apps := slices.Clone(d.opt.Apps)
	if d.opt.Deploys != nil {
		envs, err := d.opt.Deploys.Environments(ctx)
		if err != nil {
			d.log.Error("dashboard: listing environments failed", slog.String("error", err.Error()))
			view.EnvsError = "could not read the environments; see the server log"
		}
		byApp = envsByApp(envs)
		// Apps with environments but no webhook config still get a section.
		for _, e := range envs {
			if !slices.ContainsFunc(apps, func(a App) bool { return a.Name == e.App }) {
				apps = append(apps, App{Name: e.App})
			}
		}
	}
	for _, app := range apps {
		av := appView{Name: app.Name, RepoURL: app.RepoURL, Provider: string(app.Provider)}
		for _, b := range slices.Sorted(maps.Keys(app.Branches)) {
			av.Branches = append(av.Branches, branchView{Branch: b, Environment: app.Branches[b]})
		}
		var metas []release.Meta
		if d.opt.Releases != nil {
			var err error
			metas, err = d.opt.Releases.List(ctx, app.Name)
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
		if d.opt.Deploys != nil {
			d.fillDeploys(ctx, &av, byApp[app.Name], metas)
		}
		view.Apps = append(view.Apps, av)
	}
	d.render(w, http.StatusOK, indexTemplate, view)
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
		Message: units.FirstLine(m.Message, 0), Author: m.Author, Size: units.Bytes(m.Artifact.Size),
		WorkflowID: m.WorkflowID,
	}
	if !when.IsZero() {
		v.Time = when.UTC().Format("2006-01-02 15:04 UTC")
	}
	if m.WorkflowID != "" && d.opt.UIBaseURL != "" {
		v.WorkflowURL = tclient.WorkflowURL(d.opt.UIBaseURL, d.opt.Namespace, m.WorkflowID, "")
	}
	return v
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
