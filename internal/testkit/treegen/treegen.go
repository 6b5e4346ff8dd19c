// Package treegen generates Magento-shaped release trees for benchmarks
// (test/benchpackage, test/benchdelta): tens of thousands of PHP, XML, JS,
// CSS, template and image files, deterministic from a seed, reused when a
// tree with the same parameters exists.
package treegen

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// Params identifies a generated tree; the tree is reused when the marker
// file in its directory holds the same parameters.
type Params struct {
	Version int    `json:"version"`
	Seed    uint64 `json:"seed"`
	Files   int    `json:"files"`
	Bytes   int64  `json:"bytes"`
}

const genVersion = 1

// MarkerName is the file in a generated tree that records its Params:
// leave it out of what is measured.
const MarkerName = ".bench-tree.json"

// Ensure generates (or reuses) a Magento-like tree under dir.
func Ensure(dir string, p Params) (reused bool, err error) {
	p.Version = genVersion
	want, _ := json.Marshal(p)
	if have, err := os.ReadFile(filepath.Join(dir, MarkerName)); err == nil && string(have) == string(want) {
		return true, nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return false, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, err
	}
	g := newGenerator(p)
	// Two workers: generation is CPU-bound (string building) and the
	// machine has two cores. Each file's content depends only on its
	// index, so the tree is the same whatever the scheduling.
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for w := range 2 {
		wg.Go(func() {
			for i := w; i < p.Files; i += 2 {
				rel, data := g.file(i)
				full := filepath.Join(dir, rel)
				if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
					errs <- err
					return
				}
				if err := os.WriteFile(full, data, 0o644); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return false, err
	}
	return false, os.WriteFile(filepath.Join(dir, MarkerName), want, 0o644)
}

type kind struct {
	ext    string
	share  float64 // of file count
	binary bool
}

// Mix of a Magento 2 build (vendor + generated + pub/static): mostly PHP,
// then static JS/CSS/templates/XML, and a minority of image files that
// carry about 30% of the bytes.
var kinds = []kind{
	{".php", 0.52, false},
	{".js", 0.16, false},
	{".xml", 0.08, false},
	{".phtml", 0.06, false},
	{".css", 0.05, false},
	{".html", 0.03, false},
	{".json", 0.02, false},
	{".png", 0.05, true},
	{".jpg", 0.03, true},
}

type generator struct {
	p         Params
	words     []string
	vendors   []string
	textMean  float64
	imageMean float64
}

func newGenerator(p Params) *generator {
	r := rand.New(rand.NewPCG(p.Seed, 0x6d616765))
	syll := []string{"ca", "ta", "log", "pro", "duct", "quo", "te", "or", "der", "cus", "tom", "er", "sal", "es", "rule", "in", "ven", "to", "ry", "pay", "ment", "ship", "ping", "tax", "price", "in", "dex", "mo", "del", "re", "so", "ur", "ce", "fac", "to", "ry", "con", "fig", "man", "ag", "er", "store", "view", "lay", "out", "block", "tem", "plate", "cache", "ses", "sion", "wish", "list", "cart", "item", "op", "tion", "at", "tri", "bute", "set", "grid", "col", "lec", "tion"}
	words := make([]string, 4000)
	for i := range words {
		var b strings.Builder
		n := 1 + r.IntN(3)
		for j := range n {
			s := syll[r.IntN(len(syll))]
			if j > 0 {
				s = strings.ToUpper(s[:1]) + s[1:]
			}
			b.WriteString(s)
		}
		words[i] = b.String()
	}
	vendors := make([]string, 60)
	for i := range vendors {
		vendors[i] = strings.ToLower(words[r.IntN(200)]) + fmt.Sprint(i)
	}
	var textShare, binShare float64
	for _, k := range kinds {
		if k.binary {
			binShare += k.share
		} else {
			textShare += k.share
		}
	}
	// 30% of the bytes are images.
	files := float64(p.Files)
	return &generator{
		p:         p,
		words:     words,
		vendors:   vendors,
		textMean:  0.70 * float64(p.Bytes) / (files * textShare),
		imageMean: 0.30 * float64(p.Bytes) / (files * binShare),
	}
}

// file returns the relative path and content of file i.
func (g *generator) file(i int) (string, []byte) {
	r := rand.New(rand.NewPCG(g.p.Seed, uint64(i)+1))
	u := r.Float64()
	k := kinds[len(kinds)-1]
	for _, kk := range kinds {
		if u < kk.share {
			k = kk
			break
		}
		u -= kk.share
	}
	mean := g.textMean
	if k.binary {
		mean = g.imageMean
	}
	// Log-normal sizes with the requested mean (σ=1: many small files,
	// a few large ones), capped at 4 MiB.
	const sigma = 1.0
	size := int(min(mean*math.Exp(sigma*r.NormFloat64()-sigma*sigma/2), 4<<20)) + 16
	w := func() string { return g.words[int(math.Min(float64(len(g.words)-1), r.ExpFloat64()*300))] }
	vendor := g.vendors[(i/400)%len(g.vendors)]
	module := g.words[(i/40)%len(g.words)]
	var dir string
	switch k.ext {
	case ".php":
		dir = filepath.Join("vendor", vendor, "module-"+strings.ToLower(module), []string{"Model", "Controller", "Block", "Api", "Plugin", "Observer", "Setup", "Test/Unit"}[i%8])
	case ".js", ".css", ".html":
		dir = filepath.Join("pub/static/frontend/Vendor/theme/en_US", vendor+"_"+module, []string{"js", "css", "template", "web"}[i%4])
	case ".png", ".jpg":
		dir = filepath.Join("pub/static/frontend/Vendor/theme/en_US", vendor+"_"+module, "images")
	default:
		dir = filepath.Join("vendor", vendor, "module-"+strings.ToLower(module), []string{"etc", "view/frontend/layout", "view/frontend/templates", "i18n"}[i%4])
	}
	rel := filepath.Join(dir, fmt.Sprintf("%s%s%d%s", w(), w(), i, k.ext))
	if k.binary {
		return rel, image(r, k.ext, size)
	}
	return rel, g.text(r, k.ext, size, w)
}

// image returns incompressible bytes framed like a PNG or JPEG, which is
// what already-compressed images look like to a compressor.
func image(r *rand.Rand, ext string, size int) []byte {
	b := make([]byte, size)
	for i := 0; i+8 <= len(b); i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	if ext == ".png" && size > 16 {
		copy(b, "\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR")
	} else if size > 4 {
		copy(b, "\xff\xd8\xff\xe0")
	}
	return b
}

const license = `/**
 * Copyright © Magento, Inc. All rights reserved.
 * See COPYING.txt for license details.
 */
`

var templates = map[string][]string{
	".php": {
		"    /**\n     * @param %s $%s\n     * @return %s\n     */\n",
		"    public function %s(%s $%s): %s\n    {\n",
		"        $%s = $this->%s->%s($%s);\n",
		"        if ($%s === null) {\n            throw new \\Magento\\Framework\\Exception\\LocalizedException(__('%s %s'));\n        }\n",
		"        return $this->%s;\n    }\n\n",
		"use Magento\\Framework\\%s\\%s;\n",
		"    private $%s;\n",
		"        foreach ($%s as $%s => $%s) {\n            $result[$%s] = $%s;\n        }\n",
	},
	".js": {
		"define(['jquery', 'Magento_%s/js/%s'], function ($, %s) {\n    'use strict';\n",
		"    var %s = function (%s) {\n        return %s.%s(%s);\n    };\n",
		"        this.%s = ko.observable(%s);\n",
		"    $.widget('mage.%s', {\n        options: { %s: '%s' },\n",
		"        if (!this.options.%s) {\n            return false;\n        }\n",
	},
	".xml": {
		"    <type name=\"Magento\\%s\\Model\\%s\">\n        <arguments>\n            <argument name=\"%s\" xsi:type=\"object\">%s</argument>\n        </arguments>\n    </type>\n",
		"    <preference for=\"Magento\\%s\\Api\\%sInterface\" type=\"Magento\\%s\\Model\\%s\"/>\n",
		"        <block class=\"Magento\\%s\\Block\\%s\" name=\"%s\" template=\"Magento_%s::%s.phtml\"/>\n",
	},
	".phtml": {
		"<?php /** @var $block \\Magento\\%s\\Block\\%s */ ?>\n",
		"<div class=\"%s-%s\">\n    <?= $block->escapeHtml(__('%s')) ?>\n</div>\n",
		"<?php foreach ($block->get%s() as $%s): ?>\n    <li><?= $escaper->escapeHtml($%s->get%s()) ?></li>\n<?php endforeach; ?>\n",
	},
	".css": {
		".%s-%s {\n    margin: 0 0 %spx;\n    color: #%s;\n}\n",
		".%s .%s > .%s {\n    display: block;\n    font-weight: 600;\n}\n",
	},
	".html": {
		"<div class=\"%s\" data-bind=\"visible: %s, text: %s\"></div>\n",
		"<!-- ko foreach: %s -->\n<span data-bind=\"text: %s\"></span>\n<!-- /ko -->\n",
	},
	".json": {
		"    \"%s\": \"%s\",\n",
		"    \"%s\": {\"%s\": \"%s\", \"%s\": %s},\n",
	},
}

// text fills size bytes with code-like lines: a shared license header,
// templates per language and identifiers drawn with a skewed
// distribution, so the content compresses like source code rather than
// like zeros or random data.
func (g *generator) text(r *rand.Rand, ext string, size int, w func() string) []byte {
	var b strings.Builder
	b.Grow(size + 256)
	if ext == ".php" {
		b.WriteString("<?php\n" + license + "declare(strict_types=1);\n\nnamespace Magento\\" + w() + "\\Model;\n\n")
	} else if ext == ".js" || ext == ".css" {
		b.WriteString(license)
	}
	ts := templates[ext]
	for b.Len() < size {
		t := ts[r.IntN(len(ts))]
		for {
			i := strings.Index(t, "%s")
			if i < 0 {
				b.WriteString(t)
				break
			}
			b.WriteString(t[:i])
			if r.IntN(12) == 0 {
				fmt.Fprintf(&b, "%d", r.IntN(1000))
			} else {
				b.WriteString(w())
			}
			t = t[i+2:]
		}
	}
	return []byte(b.String()[:size])
}
