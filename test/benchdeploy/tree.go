package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// treeParams identify a generated tree; it is reused while the marker in
// its directory holds the same parameters.
type treeParams struct {
	Version int   `json:"version"`
	Files   int   `json:"files"`
	Bytes   int64 `json:"bytes"`
}

const (
	treeVersion = 1
	treeMarker  = ".bench-deploy-tree.json"
)

// ensureTree generates (or reuses) a tree shaped like what a Magento 2
// build adds to a release: vendor/ modules of PHP, XML and templates,
// generated/ code and pub/static assets, with a fifth of the bytes in
// incompressible images. The content of file i depends only on i, so the
// tree is the same on every machine. (The packaging benchmark has its own
// generator in a main package this command cannot import.)
func ensureTree(dir string, p treeParams) (reused bool, err error) {
	p.Version = treeVersion
	want, _ := json.Marshal(p)
	if have, err := os.ReadFile(filepath.Join(dir, treeMarker)); err == nil && string(have) == string(want) {
		return true, nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return false, err
	}
	mean := int(p.Bytes / int64(p.Files))
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for w := range 2 {
		wg.Go(func() {
			for i := w; i < p.Files; i += 2 {
				rel, data := treeFile(i, mean)
				full := filepath.Join(dir, rel)
				if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
					errs[w] = err
					return
				}
				if err := os.WriteFile(full, data, 0o644); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return false, err
		}
	}
	return false, os.WriteFile(filepath.Join(dir, treeMarker), want, 0o644)
}

var words = strings.Fields("catalog product quote order customer sales rule inventory payment shipping tax price index model resource factory config manager store view layout block template cache session wishlist cart item option attribute set grid collection repository interface plugin observer")

func treeFile(i, mean int) (string, []byte) {
	r := rand.New(rand.NewPCG(uint64(i)+1, 0x6465706c6f79))
	w := func() string { return words[r.IntN(len(words))] }
	title := func(s string) string { return strings.ToUpper(s[:1]) + s[1:] }
	vendor := fmt.Sprintf("vendor%02d", i%40)
	module := fmt.Sprintf("module-%s-%d", w(), (i/40)%30)
	size := mean/2 + r.IntN(mean+1)
	var rel string
	switch k := i % 20; {
	case k < 10:
		rel = fmt.Sprintf("vendor/%s/%s/%s/%s%d.php", vendor, module, title(w()), title(w()), i)
	case k < 12:
		rel = fmt.Sprintf("generated/code/%s/%s/%s%dInterceptor.php", title(vendor), title(w()), title(w()), i)
	case k < 14:
		rel = fmt.Sprintf("vendor/%s/%s/etc/%s%d.xml", vendor, module, w(), i)
	case k < 16:
		rel = fmt.Sprintf("pub/static/frontend/Vendor/theme/en_US/%s_%s/js/%s%d.js", title(vendor), title(w()), w(), i)
	case k < 17:
		rel = fmt.Sprintf("vendor/%s/%s/view/frontend/templates/%s%d.phtml", vendor, module, w(), i)
	default:
		rel = fmt.Sprintf("pub/static/frontend/Vendor/theme/en_US/images/%s%d.png", w(), i)
		b := make([]byte, size*2)
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		return rel, b
	}
	var b strings.Builder
	b.WriteString("<?php\n// generated for the deploy benchmark\n")
	for b.Len() < size {
		fmt.Fprintf(&b, "    public function %s%s($%s) { return $this->%s->%s($%s); }\n", w(), title(w()), w(), w(), w(), w())
	}
	return rel, []byte(b.String())
}
