package model_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/wsedge/wsedge/chat/model"
)

func TestLocal(t *testing.T) {
	tests := []struct {
		name     string
		req      model.Request
		contains []string
		escalate bool
	}{
		{name: "echo", req: model.Request{Tools: true, Messages: []model.Message{{Role: "user", Content: "Hello, how can you help?"}}},
			contains: []string{"local demo model", `"Hello, how can you help?"`}},
		{name: "context", req: model.Request{Messages: []model.Message{{Role: "user", Content: "a"}, {Role: "assistant", Content: "b"}, {Role: "user", Content: "c"}}},
			contains: []string{"2 earlier messages"}},
		{name: "escalates", req: model.Request{Tools: true, Messages: []model.Message{{Role: "user", Content: "I want a HUMAN"}}},
			contains: []string{"human agent"}, escalate: true},
		{name: "no tools no escalation", req: model.Request{Messages: []model.Message{{Role: "user", Content: "human"}}}},
		{name: "summary", req: model.Request{Summary: true, Messages: []model.Message{{Role: "user", Content: "q"}, {Role: "assistant", Content: "a"}, {Role: "user", Content: "Summarize"}}},
			contains: []string{"Summary by the local demo model", "2 messages, 1 from the user"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var deltas []string
			res, err := model.Local{}.Stream(context.Background(), tc.req, func(d string) error { deltas = append(deltas, d); return nil })
			if err != nil {
				t.Fatal(err)
			}
			text := strings.Join(deltas, "")
			for _, c := range tc.contains {
				if !strings.Contains(text, c) {
					t.Errorf("answer %q lacks %q", text, c)
				}
			}
			if len(deltas) < 5 || res.Escalate != tc.escalate || res.OutputTokens != len(deltas) {
				t.Errorf("%d deltas, result %+v", len(deltas), res)
			}
			again, _, _ := collect(model.Local{}, context.Background(), tc.req)
			if again != text {
				t.Error("not deterministic")
			}
		})
	}
}

func TestLocalCancel(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	cause := errors.New("bye")
	n := 0
	_, err := model.Local{Delay: time.Millisecond}.Stream(ctx, model.Request{Messages: []model.Message{{Role: "user", Content: "x"}}},
		func(string) error { n++; cancel(cause); return nil })
	if !errors.Is(err, cause) || n != 1 {
		t.Fatalf("err %v after %d deltas", err, n)
	}
}
