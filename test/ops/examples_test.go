package ops

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gobwas/ws/wsutil"

	"github.com/wsedge/wsedge/internal/testenv"
)

// python is Debian's interpreter, where python3-websockets is installed.
const python = "/usr/bin/python3"

// exampleClient starts one client of examples/ on a session URL and returns
// a function that reads everything it has printed so far.
type exampleClient func(t *testing.T, url, origin string) (output func() string)

// TestExamples runs each client in examples/ against production-mode
// servers with session history in one Redis: the client says hello (the Go
// and Python ones also see their greeting come back), prints the broadcasts
// a sender on another instance keeps making, follows the drain's reconnect
// hint to a new server on the same address, resumes with since/epoch, and
// ends up having printed every broadcast exactly once, in order — including
// those sent while it had no server to talk to.
func TestExamples(t *testing.T) {
	rd := testenv.StartRedis(t)
	env := func(id, addr string) map[string]string {
		e := map[string]string{"REDIS_URL": rd.URL(), "SESSION_HISTORY_SIZE": "1000", "INSTANCE_ID": id}
		if addr != "" {
			e["ADDR"] = addr
		}
		return e
	}
	senders := startServer(t, env("ops-senders", ""))
	for _, c := range []struct {
		name     string
		greeting string // the client's own broadcast, once it is a member
		start    exampleClient
	}{
		{"go", "hello from go", startGoExample},
		{"python", "hello from python", startPythonExample},
		{"browser", "", startBrowserExample},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := "/ws/session/ex-" + c.name + "/"
			a := startServer(t, env("ops-"+c.name+"-1", ""))
			out := c.start(t, a.WS(path), "http://"+a.Addr)
			// Membership starts at the hello; the greeting comes after it.
			member := `"type":"connected"`
			if c.greeting != "" {
				member = `"msg":"` + c.greeting + `"`
			}
			testenv.WaitFor(t, c.name+" example joined", 60*time.Second, func() bool { return strings.Contains(out(), member) })

			sent, stop := startSender(t, senders, path)
			defer stop()
			waitSent := func(n int64) {
				testenv.WaitFor(t, fmt.Sprintf("broadcast m-%d", n), 30*time.Second, func() bool { return sent.Load() >= n })
			}
			testenv.WaitFor(t, c.name+" example receives broadcasts", 30*time.Second, func() bool { return strings.Contains(out(), `"msg":"m-3"`) })

			a.Terminate() // drain: reconnect hint, close 1001
			a.Wait()
			waitSent(sent.Load() + 5) // the client has no server while these are broadcast
			startServer(t, env("ops-"+c.name+"-2", a.Addr))
			testenv.WaitFor(t, c.name+" example reconnected", 30*time.Second, func() bool { return strings.Count(out(), `"type":"connected"`) >= 2 })
			waitSent(sent.Load() + 5) // and these after it resumed
			stop()
			last := sent.Load()
			testenv.WaitFor(t, c.name+" example receives the last broadcast", 30*time.Second, func() bool {
				return strings.Contains(out(), fmt.Sprintf(`"msg":"m-%d"`, last))
			})

			text := out()
			if !strings.Contains(text, `"type":"reconnect"`) {
				t.Errorf("no reconnect hint printed:\n%s", text)
			}
			if strings.Contains(text, `"type":"recovery_failed"`) {
				t.Errorf("recovery_failed on a resume that should have recovered:\n%s", text)
			}
			got := broadcastsPrinted(t, text)
			want := make([]int64, last)
			for i := range want {
				want[i] = int64(i + 1)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("printed broadcasts %v, want m-1 … m-%d exactly once, in order; output:\n%s", got, last, text)
			}
		})
	}
}

// startSender joins path on s and broadcasts m-1, m-2, … until stop is
// called (stop returns once the sender has stopped; it may be called again);
// sent is the number broadcast so far.
func startSender(t *testing.T, s *server, path string) (sent *atomic.Int64, stop func()) {
	c := dialWS(t, s, path)
	c.until("connected")
	c.send(`{"type":"hello","user_type":"agent","client_type":"test"}`)
	go func() { _, _ = io.Copy(io.Discard, c.conn) }() // its own broadcasts come back: keep reading
	sent, quit, done := &atomic.Int64{}, make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for i := int64(1); ; i++ {
			select {
			case <-quit:
				return
			case <-time.After(20 * time.Millisecond): // a steady stream, not a burst
			}
			if err := wsutil.WriteClientText(c.conn, fmt.Appendf(nil, `{"type":"broadcast","msg":"m-%d"}`, i)); err != nil {
				t.Errorf("sender: %v", err)
				return
			}
			sent.Store(i)
		}
	}()
	return sent, sync.OnceFunc(func() { close(quit); <-done })
}

// broadcastsPrinted returns n for every session_message "m-n" in text, in
// the order printed (one JSON frame per line; other lines are ignored).
func broadcastsPrinted(t *testing.T, text string) []int64 {
	var got []int64
	for _, line := range strings.Split(text, "\n") {
		var f struct{ Type, Msg string }
		if json.Unmarshal([]byte(line), &f) != nil || f.Type != "session_message" || !strings.HasPrefix(f.Msg, "m-") {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimPrefix(f.Msg, "m-"), 10, 64)
		if err != nil {
			t.Fatalf("printed %q", line)
		}
		got = append(got, n)
	}
	return got
}

// startProcess runs cmd in the repository, its output captured, and kills it
// when the test ends (the examples listen until stopped).
func startProcess(t *testing.T, cmd *exec.Cmd) func() string {
	out := &testenv.Buffer{}
	cmd.Dir, cmd.Stdout, cmd.Stderr = repoRoot, out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s", cmd.Path, out.String())
		}
	})
	return out.String
}

func startGoExample(t *testing.T, url, origin string) func() string {
	bin := filepath.Join(binDir, "example-go")
	build := exec.Command("go", "build", "-o", bin, "./examples/go")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./examples/go: %v\n%s", err, out)
	}
	return startProcess(t, exec.Command(bin, "-url", url, "-origin", origin))
}

func startPythonExample(t *testing.T, url, origin string) func() string {
	if err := exec.Command(python, "-c", "import websockets").Run(); err != nil {
		t.Fatalf("%s cannot import websockets (%v); run as root: apt-get install -y python3-websockets (or bash .ci/deps)", python, err)
	}
	return startProcess(t, exec.Command(python, "-u", "examples/python/client.py", url, origin))
}

// startBrowserExample opens index.html in headless Chromium. The page comes
// from another port of 127.0.0.1, as a separate web app would;
// ALLOWED_HOSTS=127.0.0.1 admits its Origin.
func startBrowserExample(t *testing.T, url, _ string) func() string {
	pages := httptest.NewServer(http.FileServer(http.Dir(filepath.Join(repoRoot, "examples", "browser"))))
	t.Cleanup(pages.Close)
	ctx := browser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(pages.URL+"/index.html?url="+url), chromedp.WaitReady(chromedp.CSS("#log"))); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The page must have waited the hinted after_ms before reconnecting.
		txt, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS("#log")))
		if err != nil {
			t.Error(err)
			return
		}
		hint := regexp.MustCompile(`"after_ms":(\d+)`).FindStringSubmatch(txt)
		wait := regexp.MustCompile(`closed 1001; reconnecting in (\d+) ms`).FindStringSubmatch(txt)
		if hint == nil || wait == nil || hint[1] != wait[1] {
			t.Errorf("the page must wait the hinted after_ms; log:\n%s", txt)
		}
	})
	return func() string {
		txt, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS("#log")))
		if err != nil {
			t.Fatal(err)
		}
		return txt
	}
}
