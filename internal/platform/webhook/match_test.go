package webhook

import "testing"

func TestNormalizeRepoURL(t *testing.T) {
	cases := []struct {
		in, want string
		ok       bool
	}{
		{"https://github.com/acme/shop.git", "github.com/acme/shop", true},
		{"https://github.com/Acme/Shop", "github.com/acme/shop", true},
		{"HTTPS://GitHub.com/acme/shop/", "github.com/acme/shop", true},
		{"https://token:x@github.com/acme/shop.git", "github.com/acme/shop", true},
		{"git@github.com:acme/shop.git", "github.com/acme/shop", true},
		{"github.com:acme/shop", "github.com/acme/shop", true},
		{"ssh://git@github.com:22/acme/shop.git", "github.com/acme/shop", true},
		{"git://github.com/acme/shop.git", "github.com/acme/shop", true},
		{"https://gitlab.example.com:8443/group/sub/shop.git/", "gitlab.example.com/group/sub/shop", true},
		{"file:///srv/git/Shop.git", "file:///srv/git/Shop", true},
		{"file://localhost/srv/git/shop", "file:///srv/git/shop", true},
		{"/srv/git/shop.git/", "file:///srv/git/shop", true},
		{"/srv/git/../git/shop", "file:///srv/git/shop", true},
		{"file://otherhost/srv/git/shop", "", false},
		{"", "", false},
		{"   ", "", false},
		{"https://github.com/", "", false},
		{"https:///acme/shop", "", false},
		{"relative/path:x", "", false},
		{":acme/shop", "", false},
		{"/", "", false},
	}
	for _, tc := range cases {
		got, ok := NormalizeRepoURL(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("NormalizeRepoURL(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestMatchRepo(t *testing.T) {
	gh := &Push{RepoURLs: []string{"https://github.com/acme/shop.git", "git@github.com:acme/shop.git", "https://github.com/acme/shop"}}
	bb := &Push{RepoURLs: bitbucketURLs("acme/shop", "https://bitbucket.org/acme/shop")}
	cases := []struct {
		config string
		push   *Push
		want   bool
	}{
		{"git@github.com:acme/shop.git", gh, true},
		{"ssh://git@github.com/acme/shop", gh, true},
		{"https://github.com/ACME/shop/", gh, true},
		{"https://github.com/acme/shop-theme.git", gh, false},
		{"https://github.com/acme/sho", gh, false},
		{"https://gitlab.com/acme/shop.git", gh, false},
		{"git@bitbucket.org:acme/shop.git", bb, true},
		{"https://bob@bitbucket.org/acme/shop.git", bb, true},
		{"", gh, false},
		{"https://github.com/acme/shop", nil, false},
		{"https://github.com/acme/shop", &Push{}, false},
		{"file:///srv/git/shop", &Push{RepoURLs: []string{"/srv/git/shop.git"}}, true},
		{"file:///srv/git/Shop", &Push{RepoURLs: []string{"/srv/git/shop.git"}}, false},
	}
	for _, tc := range cases {
		if got := MatchRepo(tc.config, tc.push); got != tc.want {
			var urls []string
			if tc.push != nil {
				urls = tc.push.RepoURLs
			}
			t.Errorf("MatchRepo(%q, %v) = %v, want %v", tc.config, urls, got, tc.want)
		}
	}
}
