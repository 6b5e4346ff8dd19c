package catalog

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/mageflow/mageflow/internal/build/store"
)

// Hardening reports (MagentoM1EOLHardening) are stored beside the
// artifacts, one JSON and one Markdown file per run plus a "latest" copy of
// each, so the dashboard and operators read them without Temporal:
//
//	reports/harden/<host>/<20060102T150405.000Z>.json|.md
//	reports/harden/<host>/latest.json|.md

// HardenReportPrefix is the folder of a host's reports.
func HardenReportPrefix(host string) string { return "reports/harden/" + host + "/" }

// HardenReportKey is where one run's report is stored; ext is "json" or "md".
func HardenReportKey(host string, started time.Time, ext string) string {
	return HardenReportPrefix(host) + started.UTC().Format("20060102T150405.000Z") + "." + ext
}

// HardenLatestKey is the copy of the host's newest report.
func HardenLatestKey(host, ext string) string { return HardenReportPrefix(host) + "latest." + ext }

// PutHardenReport stores one run's JSON and Markdown and makes them the
// latest. Rewriting the same run (a retried activity) is harmless.
func PutHardenReport(ctx context.Context, s store.Store, host string, started time.Time, jsonDoc, markdown []byte) (jsonKey, mdKey string, err error) {
	jsonKey, mdKey = HardenReportKey(host, started, "json"), HardenReportKey(host, started, "md")
	for _, p := range []struct {
		key, ctype string
		data       []byte
	}{
		{jsonKey, "application/json", jsonDoc}, {mdKey, "text/markdown; charset=utf-8", markdown},
		{HardenLatestKey(host, "json"), "application/json", jsonDoc}, {HardenLatestKey(host, "md"), "text/markdown; charset=utf-8", markdown},
	} {
		if _, err := s.PutBytes(ctx, p.key, p.data, store.PutOptions{Overwrite: true, ContentType: p.ctype}); err != nil {
			return "", "", fmt.Errorf("store hardening report %s: %w", p.key, err)
		}
	}
	return jsonKey, mdKey, nil
}

// LatestHardenReport reads the host's newest report; ext is "json" or "md".
// errors.Is(err, store.ErrNotFound) when the host was never hardened.
func LatestHardenReport(ctx context.Context, s store.Store, host, ext string) ([]byte, error) {
	if ext != "json" && ext != "md" {
		return nil, fmt.Errorf("hardening report format %q: use json or md", ext)
	}
	if host == "" || strings.ContainsAny(host, "/\\") || strings.HasPrefix(host, ".") {
		return nil, fmt.Errorf("host %q is not a host name", host)
	}
	rc, err := s.Get(ctx, HardenLatestKey(host, ext))
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(io.LimitReader(rc, 16<<20))
}
