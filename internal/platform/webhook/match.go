package webhook

import (
	"net/url"
	"path"
	"strings"
)

// MatchRepo reports whether the repository URL from the configuration names
// the same repository as any URL in the delivery. Operators write whichever
// form they clone with (https, ssh://, scp-like git@host:owner/name, with or
// without .git), while providers send several forms, so both sides are
// reduced to "host/path" before comparing. Ports and credentials are
// dropped: an SSH port and an HTTPS port of the same host name one
// repository. Hosted paths compare case-insensitively, as GitHub, GitLab and
// Bitbucket route them; local paths (file:// or absolute) compare exactly.
func MatchRepo(configURL string, push *Push) bool {
	if push == nil {
		return false
	}
	want, ok := NormalizeRepoURL(configURL)
	if !ok {
		return false
	}
	for _, u := range push.RepoURLs {
		if got, ok := NormalizeRepoURL(u); ok && got == want {
			return true
		}
	}
	return false
}

// NormalizeRepoURL reduces a repository URL to a comparable key: "host/path"
// in lower case for network URLs, "file://" + cleaned path for local ones.
// ok is false for strings that name no repository.
func NormalizeRepoURL(raw string) (key string, ok bool) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return "", false
	}
	if strings.HasPrefix(s, "/") {
		return localKey(s)
	}
	if i := strings.Index(s, "://"); i >= 0 {
		scheme := strings.ToLower(s[:i])
		if scheme == "file" {
			u, err := url.Parse(s)
			if err != nil || (u.Host != "" && u.Host != "localhost") {
				return "", false
			}
			return localKey(u.Path)
		}
		u, err := url.Parse(s)
		if err != nil || u.Hostname() == "" {
			return "", false
		}
		return remoteKey(u.Hostname(), u.Path)
	}
	// scp-like syntax: [user@]host:path. Git only treats it so when no slash
	// precedes the first colon.
	colon := strings.Index(s, ":")
	if colon <= 0 || strings.Contains(s[:colon], "/") {
		return "", false
	}
	host := s[:colon]
	if at := strings.LastIndex(host, "@"); at >= 0 {
		host = host[at+1:]
	}
	if host == "" {
		return "", false
	}
	return remoteKey(host, s[colon+1:])
}

func remoteKey(host, p string) (string, bool) {
	p = trimRepoPath(p)
	if p == "" || p == "." || p == "/" {
		return "", false
	}
	return strings.ToLower(host) + "/" + strings.ToLower(strings.TrimPrefix(p, "/")), true
}

func localKey(p string) (string, bool) {
	p = trimRepoPath(p)
	if p == "" || p == "/" || p == "." {
		return "", false
	}
	return "file://" + path.Clean("/"+p), true
}

// trimRepoPath removes the decorations that do not change which repository
// is meant: trailing slashes and one ".git" suffix.
func trimRepoPath(p string) string {
	p = strings.TrimRight(p, "/")
	p = strings.TrimSuffix(p, ".git")
	return strings.TrimRight(p, "/")
}
