package ops

import (
	"net/http"
	"strings"
	"testing"
)

// TestConsoleHTTP checks the console's route over real sockets: off by
// default, on with CONSOLE=1, with the headers a static page needs.
func TestConsoleHTTP(t *testing.T) {
	off := startServer(t, map[string]string{"CONSOLE": "0"})
	if code, _, _ := get(t, off.HTTP("/console/")); code != http.StatusNotFound {
		t.Errorf("CONSOLE=0: /console/ = %d, want 404", code)
	}
	s := startServer(t, nil)
	tests := []struct {
		path   string
		code   int
		ctype  string
		substr string
	}{
		{"/console/", 200, "text/html; charset=utf-8", "<title>wsedge console</title>"},
		{"/console/console.js", 200, "text/javascript; charset=utf-8", "reconnect"},
		{"/console/console.css", 200, "text/css; charset=utf-8", ".entry"},
		{"/console/nope.js", 404, "application/json", "not_found"},
	}
	for _, tt := range tests {
		code, h, body := get(t, s.HTTP(tt.path))
		if code != tt.code || h.Get("Content-Type") != tt.ctype || !strings.Contains(string(body), tt.substr) {
			t.Errorf("GET %s = %d %q (%d bytes); want %d %q containing %q", tt.path, code, h.Get("Content-Type"), len(body), tt.code, tt.ctype, tt.substr)
		}
		if code == 200 && (h.Get("Content-Security-Policy") == "" || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("ETag") == "") {
			t.Errorf("GET %s: missing CSP, nosniff or ETag: %v", tt.path, h)
		}
	}
	// Revalidation and the slash redirect.
	_, h, _ := get(t, s.HTTP("/console/console.js"))
	req, _ := http.NewRequest(http.MethodGet, s.HTTP("/console/console.js"), nil)
	req.Header.Set("If-None-Match", h.Get("ETag"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: %d, want 304", resp.StatusCode)
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err = noFollow.Get(s.HTTP("/console"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/console/" {
		t.Errorf("/console = %d Location %q, want 301 /console/", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, err = http.Post(s.HTTP("/console/"), "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /console/ = %d, want 405", resp.StatusCode)
	}
}
