package chat

import (
	"context"
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
