package edge

import (
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsedge/wsedge/chat"
	"github.com/wsedge/wsedge/chat/history"
	"github.com/wsedge/wsedge/chat/model"
	"github.com/wsedge/wsedge/internal/jointoken"
)

// mirrorTo publishes chat mirrors through the server's broker, as main does;
// the server exists only after the chat service, hence the pointer.
type mirrorTo struct{ ts *atomic.Pointer[testServer] }

func (m mirrorTo) Mirror(thread string, payload []byte) {
	if ts := m.ts.Load(); ts != nil {
		_ = ts.srv.broker.Publish(thread, payload)
	}
}

// startChatServer serves /ws/chat/ with the real chat service, the local
// model and in-memory history.
func startChatServer(t *testing.T) *testServer {
	t.Helper()
	return startChatServerWith(t, nil, nil)
}

// startChatServerWith also takes a config change and join tokens.
func startChatServerWith(t *testing.T, mutate func(*Config), tokens *jointoken.Verifier) *testServer {
	t.Helper()
	var ptr atomic.Pointer[testServer]
	svc, err := chat.New(chat.Config{}, model.Local{Delay: time.Millisecond}, history.NewMemory(0, 0),
		mirrorTo{&ptr}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ts := startServerWith(t, mutate, Deps{Tokens: tokens, OpenChat: func(id string, sink ChatSink) ChatConn { return svc.Open(id, sink) }})
	ptr.Store(ts)
	return ts
}

// A chat turn through the edge: frames in order, mirrored to the thread's
// session listeners; an escalation ends with close 1000 "escalation".
func TestChatThroughEdge(t *testing.T) {
	t.Parallel()
	ts := startChatServer(t)
	watcher, _ := ts.session(t, "th-1", "agent", "web")
	c := ts.dial(t, "/ws/chat/", nil)
	c.send(`{"type":"chat","message":"Hello","thread_id":"th-1","channel":"web","data":[]}`)
	m := c.expectType("session_started")
	if m["thread_id"] != "th-1" || m["session_id"] != "th-1" || !hex32.MatchString(m["connection_id"].(string)) {
		t.Fatalf("session_started %v", m)
	}
	tokens := 0
	for {
		m := c.next()
		if m["type"] == "end" {
			break
		}
		if m["type"] != "token" {
			t.Fatalf("want token or end, got %v", m)
		}
		tokens++
	}
	if tokens == 0 {
		t.Fatal("no token before end")
	}
	if m := watcher.expectType("session_message"); m["client_type"] != "chat" {
		t.Fatalf("mirror %v", m)
	}

	c.send(`{"type":"chat","message":"I want a human","thread_id":"th-1"}`)
	c.expectType("session_started")
	for {
		m := c.next()
		if m["type"] == "escalation" {
			if m["should_escalate"] != true {
				t.Fatalf("escalation %v", m)
			}
			break
		}
	}
	c.expectType("end")
	h, p, err := c.frame(5 * time.Second)
	if err != nil || h.OpCode != ws.OpClose {
		t.Fatalf("want close after escalation, got %v %v", h.OpCode, err)
	}
	if code, reason := ws.ParseCloseFrameData(p); code != 1000 || reason != "escalation" {
		t.Fatalf("close %d %q, want 1000 escalation", code, reason)
	}
}
