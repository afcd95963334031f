// Package console holds wsedge's built-in browser console (/console/): a
// page, a script and a style sheet, embedded at build time and answered
// from memory. The edge serves them on its event loops only when CONSOLE=1;
// the files need no build step and load nothing from other origins.
package console

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"strings"
)

//go:embed assets
var assets embed.FS

// Prefix is the route the console owns on the public port.
const Prefix = "/console/"

// CSP keeps the page to its own origin: scripts, styles and WebSocket
// connections to the server that served it, nothing else.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// File is one precomputed answer.
type File struct {
	Body        []byte
	ContentType string
	// ETag is a strong validator (quoted), so browsers revalidate cheaply.
	ETag string
}

// Files maps request paths to their answers.
type Files struct {
	byPath map[string]File
}

var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
}

// Load reads the embedded assets once; the result is read-only and safe to
// share between event loops.
func Load() (*Files, error) {
	f := &Files{byPath: map[string]File{}}
	err := fs.WalkDir(assets, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ct, ok := contentTypes[path.Ext(p)]
		if !ok {
			return fmt.Errorf("console asset %s: unknown content type", p)
		}
		body, err := assets.ReadFile(p)
		if err != nil {
			return fmt.Errorf("console asset %s: %w", p, err)
		}
		sum := sha256.Sum256(body)
		name := strings.TrimPrefix(p, "assets/")
		f.byPath[Prefix+name] = File{Body: body, ContentType: ct, ETag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	if err != nil {
		return nil, err
	}
	index, ok := f.byPath[Prefix+"index.html"]
	if !ok {
		return nil, fmt.Errorf("console: assets/index.html missing")
	}
	f.byPath[Prefix] = index
	return f, nil
}

// Owns reports whether path belongs to the console's route, so that unknown
// files under it get a 404 from the console rather than from the router.
func Owns(p string) bool {
	return p == strings.TrimSuffix(Prefix, "/") || strings.HasPrefix(p, Prefix)
}

// Lookup returns the answer for path. "/console" (no slash) is not a file:
// the caller redirects it to Prefix so that relative URLs resolve.
func (f *Files) Lookup(p string) (File, bool) {
	file, ok := f.byPath[p]
	return file, ok
}
