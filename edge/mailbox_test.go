package edge

import (
	"fmt"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/wsedge/wsedge/edge/broker"
	"github.com/wsedge/wsedge/internal/wire"
)

// A loop that falls behind refuses broadcasts at its mailbox cap instead of
// queueing without limit. The members of the refused session on that loop
// get everything up to the cap, a reconnect hint and close 1013, and resume
// from history without a gap; a member of another session on the same
// loops stays connected and keeps receiving.
func TestMailboxCap(t *testing.T) {
	const (
		capItems = 32
		sent     = 100
	)
	b := broker.NewMemoryHistory(broker.HistoryOptions{Size: 256, TTL: time.Minute})
	t.Cleanup(func() { _ = b.Close() })
	ts := startServerWith(t, func(c *Config) {
		c.MailboxCap = capItems
		c.ReconnectJitter = 50 * time.Millisecond
	}, Deps{Broker: b, History: b.History()})

	l, epoch := connectHist(t, ts, "flood")
	member(t, l, -1, "")
	joined(t, l)
	k, _ := connectHist(t, ts, "calm")
	member(t, k, -1, "")
	joined(t, k)

	// Stall every loop, as a loop starved of CPU would be, and publish
	// through the broker (as Redis deliveries arrive) meanwhile.
	release := make(chan struct{})
	for _, ls := range ts.srv.allLoops() {
		started := make(chan struct{})
		ls.run(func() { close(started); <-release })
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			t.Fatal("loop did not run the stall")
		}
	}
	msgOf := map[uint64]string{}
	for i := range sent {
		msg := fmt.Sprintf("m%d", i)
		msgOf[uint64(i+1)] = msg
		payload := wire.AppendSessionMessage(nil, `"u"`, `"web"`, []byte(fmt.Sprintf("%q", msg)), nil)
		if err := b.Publish("flood", payload); err != nil {
			close(release)
			t.Fatal(err)
		}
	}
	close(release)

	// Everything the mailbox took, in order, then the hint and 1013.
	var last uint64
	for {
		m := l.next()
		if m["type"] == "reconnect" {
			break
		}
		if m["type"] != "session_message" {
			t.Fatalf("flood member got %v before the reconnect hint", m)
		}
		seq := uint64(m["seq"].(float64))
		if seq != last+1 || m["msg"] != msgOf[seq] {
			t.Fatalf("got seq %d msg %v after %d", seq, m["msg"], last)
		}
		last = seq
	}
	if last == 0 || last > capItems {
		t.Fatalf("delivered %d broadcasts before the hint, want 1..%d", last, capItems)
	}
	l.expectClose(ws.StatusCode(1013))
	if n := counterValue(t, ts.reg, "wsedge_loop_mailbox_overflow_total"); n < sent-capItems {
		t.Fatalf("overflow counter %v, want at least %d", n, sent-capItems)
	}

	// The other session's member was not touched and still receives.
	k.send(`{"type":"broadcast","msg":"still here"}`)
	if seq, msg := sm(t, k); msg != "still here" || seq == 0 {
		t.Fatalf("calm member got seq %d %q", seq, msg)
	}

	// The flood member resumes from history: nothing is missing.
	l2, e2 := connectHist(t, ts, "flood")
	if e2 != epoch {
		t.Fatalf("epoch changed: %q → %q", epoch, e2)
	}
	member(t, l2, int64(last), epoch)
	expectSeqs(t, l2, last+1, sent-int(last), msgOf)
	l2.quiet(200 * time.Millisecond)
}

// A chat turn whose tokens do not fit in a stalled loop's mailbox ends its
// socket with a reconnect hint and 1013 instead of queueing without limit;
// a new chat socket is served normally afterwards.
func TestMailboxCapChat(t *testing.T) {
	ts := startChatServerWith(t, func(c *Config) { c.MailboxCap = 4 }, nil)
	c := ts.dial(t, "/ws/chat/", nil)
	c.send(`{"type":"chat","message":"Tell me a long story about the sea","thread_id":"th-cap"}`)
	c.expectType("session_started")

	release := make(chan struct{})
	for _, ls := range ts.srv.allLoops() {
		started := make(chan struct{})
		ls.run(func() { close(started); <-release })
		<-started
	}
	time.Sleep(300 * time.Millisecond) // the local model streams a token per millisecond
	close(release)

	for {
		m := c.next()
		if m["type"] == "reconnect" {
			break
		}
		if m["type"] != "token" {
			t.Fatalf("want tokens then reconnect, got %v", m)
		}
	}
	c.expectClose(ws.StatusCode(1013))
	if n := counterValue(t, ts.reg, "wsedge_loop_mailbox_overflow_total"); n < 1 {
		t.Fatalf("overflow counter %v", n)
	}

	c2 := ts.dial(t, "/ws/chat/", nil)
	c2.send(`{"type":"chat","message":"Hello","thread_id":"th-ok"}`)
	c2.expectType("session_started")
	for m := c2.next(); m["type"] != "end"; m = c2.next() {
		if m["type"] != "token" {
			t.Fatalf("want token or end, got %v", m)
		}
	}
}
