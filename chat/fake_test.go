package chat

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeSink records frames; refuseAfter > 0 makes Send fail from that frame on.
type fakeSink struct {
	mu          sync.Mutex
	frames      []map[string]any
	raw         []string
	closeCode   uint16
	closeReason string
	closes      int
	refuseAfter int
	notify      chan struct{}
}

func newSink() *fakeSink { return &fakeSink{notify: make(chan struct{}, 1)} }

func (f *fakeSink) Send(p []byte) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refuseAfter > 0 && len(f.raw) >= f.refuseAfter {
		return false
	}
	var m map[string]any
	if err := json.Unmarshal(p, &m); err != nil {
		panic("sink got invalid JSON: " + string(p))
	}
	f.frames = append(f.frames, m)
	f.raw = append(f.raw, string(p))
	select {
	case f.notify <- struct{}{}:
	default:
	}
	return true
}

func (f *fakeSink) Close(code uint16, reason string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closeCode, f.closeReason = code, reason
	f.closes++
}

func (f *fakeSink) snapshot() []map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]map[string]any(nil), f.frames...)
}

func (f *fakeSink) types() []string {
	var ts []string
	for _, fr := range f.snapshot() {
		t, _ := fr["type"].(string)
		if t == "error" {
			t += ":" + fr["error"].(string)
		}
		ts = append(ts, t)
	}
	return ts
}

// wait returns once a frame with the given type (or "error:<code>") has
// arrived n times in total.
func (f *fakeSink) wait(t *testing.T, typ string, n int) []map[string]any {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		count := 0
		for _, ty := range f.types() {
			if ty == typ {
				count++
			}
		}
		if count >= n {
			return f.snapshot()
		}
		select {
		case <-f.notify:
		case <-time.After(5 * time.Millisecond):
		case <-deadline:
			t.Fatalf("no %d× %q; frames: %v", n, typ, f.types())
		}
	}
}

// text concatenates the token frames.
func (f *fakeSink) text() string {
	var b strings.Builder
	for _, fr := range f.snapshot() {
		if fr["type"] == "token" {
			b.WriteString(fr["content"].(string))
		}
	}
	return b.String()
}

type fakeMirror struct {
	mu     sync.Mutex
	frames map[string][]map[string]any
}

func (m *fakeMirror) Mirror(thread string, p []byte) {
	var fr map[string]any
	if err := json.Unmarshal(p, &fr); err != nil {
		panic(err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.frames == nil {
		m.frames = map[string][]map[string]any{}
	}
	m.frames[thread] = append(m.frames[thread], fr)
}

func (m *fakeMirror) get(thread string) []map[string]any {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]map[string]any(nil), m.frames[thread]...)
}

// visible is what a client shows: the tokens after the last rewrite frame.
func (f *fakeSink) visible() string {
	var b strings.Builder
	for _, fr := range f.snapshot() {
		switch fr["type"] {
		case "rewrite":
			b.Reset()
		case "token":
			b.WriteString(fr["content"].(string))
		}
	}
	return b.String()
}
