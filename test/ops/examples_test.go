package ops

import (
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// python is Debian's interpreter, where python3-websockets is installed.
const python = "/usr/bin/python3"

// TestExamples runs each client in examples/ against a production-mode
// server: each says hello, and the Go and Python clients see their own
// broadcast come back; the browser client follows a drain's reconnect hint
// to a new server on the same address.
func TestExamples(t *testing.T) {
	s := startServer(t, nil)
	origin := "http://" + s.Addr

	t.Run("go", func(t *testing.T) {
		cmd := exec.Command("go", "run", "./examples/go", "-url", s.WS("/ws/session/ex-go/"), "-origin", origin)
		cmd.Dir = repoRoot
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), `"msg":"hello from go"`) {
			t.Errorf("go example: %v\n%s", err, out)
		}
	})
	t.Run("python", func(t *testing.T) {
		if err := exec.Command(python, "-c", "import websockets").Run(); err != nil {
			t.Fatalf("%s cannot import websockets (%v); run as root: apt-get install -y python3-websockets (or bash .ci/deps)", python, err)
		}
		cmd := exec.Command(python, "examples/python/client.py", s.WS("/ws/session/ex-python/"), origin)
		cmd.Dir = repoRoot
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), `"msg":"hello from python"`) {
			t.Errorf("python example: %v\n%s", err, out)
		}
	})
	t.Run("browser", func(t *testing.T) {
		// The page comes from another port of 127.0.0.1, as a separate web
		// app would; ALLOWED_HOSTS=127.0.0.1 admits its Origin.
		pages := httptest.NewServer(http.FileServer(http.Dir(filepath.Join(repoRoot, "examples", "browser"))))
		defer pages.Close()
		ctx := browser(t)
		logText := func() string {
			txt, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS("#log")))
			if err != nil {
				t.Fatal(err)
			}
			return txt
		}
		err := chromedp.Do(ctx,
			chromedp.Navigate(pages.URL+"/index.html?url="+s.WS("/ws/session/ex-browser/")),
			chromedp.WaitReady(chromedp.CSS("#log")),
			poll("connected", `document.getElementById('log').textContent.includes('"type":"connected"')`),
		)
		if err != nil {
			t.Fatal(err)
		}
		g := dialWS(t, s, "/ws/session/ex-browser/")
		g.until("connected")
		g.send(`{"type":"hello","user_type":"admin","client_type":"test"}`)
		g.send(`{"type":"broadcast","msg":"to the browser"}`)
		if err := chromedp.Do(ctx, poll("broadcast", `document.getElementById('log').textContent.includes('to the browser')`)); err != nil {
			t.Fatal(err)
		}
		// Drain: the page waits the hinted delay, then finds a new server
		// on the same address.
		s.Terminate()
		if err := chromedp.Do(ctx, poll("reconnect scheduled", `document.getElementById('log').textContent.includes('reconnecting in')`)); err != nil {
			t.Fatal(err)
		}
		txt := logText()
		hint := regexp.MustCompile(`"after_ms":(\d+)`).FindStringSubmatch(txt)
		wait := regexp.MustCompile(`closed 1001; reconnecting in (\d+) ms`).FindStringSubmatch(txt)
		if hint == nil || wait == nil || hint[1] != wait[1] {
			t.Fatalf("the page must wait the hinted after_ms; log:\n%s", txt)
		}
		s.Wait()
		startServer(t, map[string]string{"ADDR": s.Addr})
		if err := chromedp.Do(ctx, poll("reconnected", `document.getElementById('log').textContent.split('"type":"connected"').length === 3`)); err != nil {
			t.Fatalf("%v; log:\n%s", err, logText())
		}
	})
}
