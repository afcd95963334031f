package chat

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsedge/wsedge/chat/history"
	"github.com/wsedge/wsedge/chat/model"
)

// FuzzOnText: any text frame gets exactly one immediate answer (an error or
// session_started) and never panics.
func FuzzOnText(f *testing.F) {
	for _, s := range []string{
		`{"type":"chat","message":"Hello","thread_id":"t","channel":"web","data":[]}`,
		`{"type":"cancel"}`, `{"type":"chat","message":""}`, `[`, `null`, `{"type":"chat","message":"x","thread_id":"\u00e9"}`,
	} {
		f.Add([]byte(s))
	}
	svc, err := New(Config{Workers: 1, Queue: 1}, model.Local{}, history.NewMemory(10, 10), nil, nil, prometheus.NewRegistry())
	if err != nil {
		f.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = svc.Shutdown(ctx)
	}()
	f.Fuzz(func(t *testing.T, payload []byte) {
		sink := newSink()
		c := svc.Open(connID, sink)
		c.OnText(payload)
		c.OnClose()
		got := sink.types()
		if len(got) == 0 {
			// Only cancel, which has nothing to stop here, is silent.
			return
		}
		if got[0] != "session_started" && got[0][:6] != "error:" {
			t.Fatalf("first frame %v", got)
		}
	})
}

// FuzzConversation: whatever the stored history, the model gets roles that
// alternate starting with the user, no blank text, and the new message last.
func FuzzConversation(f *testing.F) {
	f.Add([]byte("u:hi|a:hello|u:more"), 3, 100)
	f.Add([]byte("a:|a:x|u:|u:y"), 0, 0)
	f.Add([]byte("u:q|a:|u:q2|e:"), 2, 5)
	f.Fuzz(func(t *testing.T, spec []byte, maxMsgs, maxChars int) {
		var stored []history.Message
		for _, part := range strings.Split(string(spec), "|") {
			if len(part) < 2 {
				continue
			}
			m := history.Message{Role: model.RoleUser, Content: part[2:]}
			switch part[0] {
			case 'a':
				m.Role = model.RoleAssistant
			case 'e':
				m.Role, m.Escalated = model.RoleAssistant, true
			}
			stored = append(stored, m)
		}
		out := conversation(stored, "NEW", maxMsgs%50, maxChars%500)
		if len(out) == 0 || out[0].Role != model.RoleUser || !strings.HasSuffix(out[len(out)-1].Content, "NEW") {
			t.Fatalf("bad conversation %+v", out)
		}
		for i, m := range out {
			if strings.TrimSpace(m.Content) == "" {
				t.Fatalf("blank message %d: %+v", i, out)
			}
			if i > 0 && out[i-1].Role == m.Role {
				t.Fatalf("roles do not alternate at %d: %+v", i, out)
			}
		}
	})
}
