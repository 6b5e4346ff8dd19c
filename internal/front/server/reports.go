package server

import (
	"context"
	"errors"
	"html/template"
	"net/http"

	"github.com/mageflow/mageflow/internal/build/store"
)

// HardenReports reads the hardening reports MagentoM1EOLHardening stores
// beside the artifacts (reports/harden/<host>/latest.json|md).
type HardenReports interface {
	// Hosts are the hosts reports may exist for (the config's hosts).
	Hosts() []string
	// Latest returns the host's newest report, ext "json" or "md"; an error
	// wrapping store.ErrNotFound when the host was never hardened.
	Latest(ctx context.Context, host, ext string) ([]byte, error)
}

var reportsPage = template.Must(template.New("reports").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>mageflow · hardening reports</title></head>
<body><h1>Magento 1 hardening: latest report per host</h1>
<ul>{{range .}}<li>{{.Host}}: {{if .Found}}<a href="/reports/harden/{{.Host}}/latest.md">Markdown</a> · <a href="/reports/harden/{{.Host}}/latest.json">JSON</a>{{else}}never hardened — run <code>mageflow harden --host {{.Host}} --wait</code>{{end}}</li>
{{else}}<li>no hosts in the config</li>{{end}}</ul>
<p><a href="/">back to the dashboard</a></p></body></html>
`))

// serveHardenIndex lists the hosts with links to their latest reports.
func (p *dashboard) serveHardenIndex(w http.ResponseWriter, r *http.Request) {
	type row struct {
		Host  string
		Found bool
	}
	var rows []row
	for _, h := range p.opt.HardenReports.Hosts() {
		_, err := p.opt.HardenReports.Latest(r.Context(), h, "json")
		rows = append(rows, row{Host: h, Found: err == nil})
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := reportsPage.Execute(w, rows); err != nil {
		p.log.Error("render hardening reports", "error", err)
	}
}

// serveHardenReport serves reports/harden/<host>/latest.md or latest.json.
// Reports hold no secrets, but they do map a store's weaknesses, so the
// route is protected like the dashboard's views.
func (p *dashboard) serveHardenReport(w http.ResponseWriter, r *http.Request) {
	host, file := r.PathValue("host"), r.PathValue("file")
	ext, ctype := "", ""
	switch file {
	case "latest.md":
		ext, ctype = "md", "text/markdown; charset=utf-8"
	case "latest.json":
		ext, ctype = "json", "application/json"
	default:
		http.Error(w, "only latest.md and latest.json are served", http.StatusNotFound)
		return
	}
	known := false
	for _, h := range p.opt.HardenReports.Hosts() {
		known = known || h == host
	}
	if !known {
		http.Error(w, "no such host in the config", http.StatusNotFound)
		return
	}
	b, err := p.opt.HardenReports.Latest(r.Context(), host, ext)
	if errors.Is(err, store.ErrNotFound) {
		http.Error(w, "host "+host+" was never hardened: run mageflow harden --host "+host, http.StatusNotFound)
		return
	}
	if err != nil {
		p.log.Error("read hardening report", "host", host, "error", err)
		http.Error(w, "cannot read the report", http.StatusBadGateway)
		return
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(b)
}
