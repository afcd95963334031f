package ops

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestConsoleInBrowser drives two consoles in headless Chromium against a
// production-mode server (DEBUG=0, Origin checked): both say hello, one
// broadcasts and the other sees it, a chat turn streams token by token, a
// second turn is cancelled, and on SIGTERM the session console receives the
// reconnect hint and schedules its retry with exactly that delay.
func TestConsoleInBrowser(t *testing.T) {
	// A slow local model keeps each turn streaming long enough to be seen
	// (and cancelled) mid-way whatever the machine's load.
	s := startServer(t, map[string]string{"LOCAL_MODEL_DELAY": "150ms", "RECONNECT_JITTER": "3s"})
	b := browser(t)
	a, c := tab(t, b), tab(t, b)
	page := s.HTTP("/console/?session=ops-console")

	err := chromedp.Do(a,
		chromedp.Navigate(page),
		chromedp.WaitVisible(chromedp.CSS("#connect")),
		chromedp.SetValue(chromedp.CSS("#user-type"), "admin"),
		chromedp.Click(chromedp.CSS("#connect")),
		poll("console A open", `document.querySelector('#state').dataset.state === 'open'`),
		poll("hello sent by A", `document.querySelector('#log .entry[data-dir=out][data-type=hello]')`),
	)
	if err != nil {
		t.Fatal(err)
	}
	err = chromedp.Do(c,
		chromedp.Navigate(page),
		chromedp.WaitVisible(chromedp.CSS("#connect")),
		chromedp.SetValue(chromedp.CSS("#user-type"), "agent"),
		chromedp.SetValue(chromedp.CSS("#client-type"), "ios"),
		chromedp.Click(chromedp.CSS("#connect")),
		poll("console B open", `document.querySelector('#state').dataset.state === 'open'`),
		poll("hello sent by B", `document.querySelector('#log .entry[data-dir=out][data-type=hello]')`),
		poll("round-trip time measured", `document.querySelector('#rtt').dataset.ms`),
	)
	if err != nil {
		t.Fatal(err)
	}

	// Presence in A lists both; a broadcast from A reaches B.
	err = chromedp.Do(a,
		chromedp.Click(chromedp.CSS("#presence")),
		poll("presence table with two members", `document.querySelectorAll('#presence-table tbody tr').length === 2`),
		chromedp.SetValue(chromedp.CSS("#broadcast-msg"), `"console-broadcast-7f3a"`),
		chromedp.Click(chromedp.CSS("#broadcast")),
	)
	if err != nil {
		t.Fatal(err)
	}
	err = chromedp.Do(c, poll("broadcast in B", `[...document.querySelectorAll('#log .entry[data-dir=in][data-type=session_message]')].some(e => e.textContent.includes('console-broadcast-7f3a'))`))
	if err != nil {
		t.Fatal(err)
	}
	text, err := chromedp.Run(c, chromedp.Text(chromedp.CSS("#log .entry[data-type=session_message] pre")))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"user_type": "admin"`, `"client_type": "web"`, `"msg": "console-broadcast-7f3a"`} {
		if !strings.Contains(text, want) {
			t.Errorf("B's frame log entry %q lacks %q", text, want)
		}
	}

	// A chat turn in A: seen mid-stream (some tokens, not ended), then ended.
	err = chromedp.Do(a,
		chromedp.Navigate(s.HTTP("/console/?route=chat")),
		chromedp.WaitVisible(chromedp.CSS("#chat-send")),
		chromedp.Click(chromedp.CSS("#connect")),
		poll("chat socket open", `document.querySelector('#state').dataset.state === 'open'`),
		chromedp.SetValue(chromedp.CSS("#chat-message"), "Hello from the browser test"),
		chromedp.Click(chromedp.CSS("#chat-send")),
		poll("tokens streaming", `(() => { const t = document.querySelector('.turn'); return t && t.dataset.state === 'streaming' && +t.dataset.tokens >= 2 && t.querySelector('.answer').textContent.length > 0; })()`),
		poll("turn ended", `document.querySelector('.turn').dataset.state === 'done'`),
	)
	if err != nil {
		t.Fatal(err)
	}
	answer, err := chromedp.Run(a, chromedp.Text(chromedp.CSS(".turn .answer")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(answer, "local demo model") || !strings.Contains(answer, "Hello from the browser test") {
		t.Errorf("streamed answer = %q", answer)
	}
	// A second turn, cancelled while it streams, ends as cancelled.
	err = chromedp.Do(a,
		chromedp.SetValue(chromedp.CSS("#chat-message"), "Tell me more"),
		chromedp.Click(chromedp.CSS("#chat-send")),
		poll("second turn streaming", `(() => { const t = document.querySelectorAll('.turn')[1]; return t && t.dataset.state === 'streaming' && +t.dataset.tokens >= 1; })()`),
		chromedp.Click(chromedp.CSS("#chat-cancel")),
		poll("second turn cancelled", `document.querySelectorAll('.turn')[1].dataset.state === 'cancelled'`),
	)
	if err != nil {
		t.Fatal(err)
	}

	// A left the session when its page navigated to chat: B is alone.
	err = chromedp.Do(c,
		chromedp.Click(chromedp.CSS("#presence")),
		poll("presence table in B with B alone", `document.querySelectorAll('#presence-table tbody tr').length === 1`),
	)
	if err != nil {
		t.Fatal(err)
	}
	shot, err := chromedp.Run(c, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	shotA, err := chromedp.Run(a, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	dir := artifactDir(t)
	for name, png := range map[string][]byte{"console-session.png": shot, "console-chat.png": shotA} {
		if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("screenshots in %s", dir)

	// Drain: B gets {"type":"reconnect","after_ms":N} and waits N ms.
	s.Terminate()
	err = chromedp.Do(c, poll("reconnect hint and retry", `document.querySelector('#history tr[data-event=retry]')`))
	if err != nil {
		t.Fatal(err)
	}
	hint, err := chromedp.Run(c, chromedp.Text(chromedp.CSS(`#history tr[data-event="reconnect hint"] td:nth-child(3)`)))
	if err != nil {
		t.Fatal(err)
	}
	retry, err := chromedp.Run(c, chromedp.Text(chromedp.CSS(`#history tr[data-event=retry] td:nth-child(3)`)))
	if err != nil {
		t.Fatal(err)
	}
	ms := strings.TrimPrefix(hint, "after_ms ")
	if ms == hint || !strings.HasPrefix(retry, "in "+ms+" ms") {
		t.Errorf("reconnect hint %q, retry %q: the retry must wait the hinted delay", hint, retry)
	}
}
