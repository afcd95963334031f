package ops

import (
	"testing"

	"github.com/chromedp/chromedp"
)

// With session history on, the console resumes: after a disconnect, its
// next hello carries since and epoch, and the broadcasts sent while it was
// away arrive, with no recovery_failed.
func TestConsoleResumesInBrowser(t *testing.T) {
	s := startServer(t, map[string]string{"SESSION_HISTORY_SIZE": "100"})
	b := browser(t)
	a := tab(t, b)
	err := chromedp.Do(a,
		chromedp.Navigate(s.HTTP("/console/?session=ops-resume")),
		chromedp.WaitVisible(chromedp.CSS("#connect")),
		chromedp.SetValue(chromedp.CSS("#user-type"), "admin"),
		chromedp.Click(chromedp.CSS("#connect")),
		poll("console open", `document.querySelector('#state').dataset.state === 'open'`),
		poll("hello sent", `document.querySelector('#log .entry[data-dir=out][data-type=hello]')`),
		poll("connected with an epoch", `[...document.querySelectorAll('#log .entry[data-type=connected]')].some(e => e.textContent.includes('"epoch"'))`),
	)
	if err != nil {
		t.Fatal(err)
	}
	sender := dialWS(t, s, "/ws/session/ops-resume/")
	sender.until("connected")
	sender.send(`{"type":"hello","user_type":"agent"}`)
	sender.send(`{"type":"broadcast","msg":"resume-1"}`)
	sender.until("session_message")
	err = chromedp.Do(a,
		poll("first broadcast seen", `[...document.querySelectorAll('#log .entry[data-type=session_message]')].some(e => e.textContent.includes('resume-1'))`),
		chromedp.Click(chromedp.CSS("#disconnect")),
		poll("console closed", `document.querySelector('#state').dataset.state === 'closed'`),
	)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"resume-2", "resume-3"} {
		sender.send(`{"type":"broadcast","msg":"` + m + `"}`)
		sender.until("session_message")
	}
	err = chromedp.Do(a,
		chromedp.Click(chromedp.CSS("#connect")),
		poll("hello with since", `[...document.querySelectorAll('#log .entry[data-dir=out][data-type=hello]')].some(e => e.textContent.includes('"since": 1'))`),
		poll("missed broadcasts replayed", `['resume-2', 'resume-3'].every(m => [...document.querySelectorAll('#log .entry[data-type=session_message]')].some(e => e.textContent.includes(m)))`),
		poll("resume in the history table", `document.querySelector('#history tr[data-event=resume]')`),
	)
	if err != nil {
		t.Fatal(err)
	}
	failed, err := chromedp.Run(a, chromedp.Evaluate[bool](`!!document.querySelector('#log .entry[data-type=recovery_failed]')`))
	if err != nil {
		t.Fatal(err)
	}
	if failed {
		t.Fatal("the console got recovery_failed on a resume it should have recovered")
	}
}
