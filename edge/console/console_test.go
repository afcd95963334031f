package console

import (
	"strings"
	"testing"
)

func TestLoad(t *testing.T) {
	f, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path, ctype string
		ok          bool
	}{
		{"/console/", "text/html; charset=utf-8", true},
		{"/console/index.html", "text/html; charset=utf-8", true},
		{"/console/console.js", "text/javascript; charset=utf-8", true},
		{"/console/console.css", "text/css; charset=utf-8", true},
		{"/console/missing.js", "", false},
		{"/console", "", false},
		{"/console/../go.mod", "", false},
	}
	for _, tt := range tests {
		got, ok := f.Lookup(tt.path)
		if ok != tt.ok || got.ContentType != tt.ctype {
			t.Errorf("Lookup(%q) = %q, %v; want %q, %v", tt.path, got.ContentType, ok, tt.ctype, tt.ok)
		}
		if ok && (len(got.Body) == 0 || !strings.HasPrefix(got.ETag, `"`)) {
			t.Errorf("Lookup(%q): empty body or bad ETag %q", tt.path, got.ETag)
		}
	}
}

func TestOwns(t *testing.T) {
	for p, want := range map[string]bool{
		"/console": true, "/console/": true, "/console/x.js": true,
		"/consoles": false, "/ws/console/": false, "/": false,
	} {
		if got := Owns(p); got != want {
			t.Errorf("Owns(%q) = %v, want %v", p, got, want)
		}
	}
}

// TestNoExternalURLs keeps the console self-contained: no CDN, no fonts or
// scripts from another origin.
func TestNoExternalURLs(t *testing.T) {
	f, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	for p, file := range f.byPath {
		for _, bad := range []string{"http://", "https://", "//cdn", "@import"} {
			if strings.Contains(string(file.Body), bad) {
				t.Errorf("%s contains %q", p, bad)
			}
		}
	}
}
