package broker

import (
	"errors"
	"testing"
)

// The memory broker hands every publish to its Handler, which alone knows
// whether the session has members here (the edge's hub); it reports false
// for the sessions it dropped.
func TestMemory(t *testing.T) {
	type step struct {
		op      string // sub, unsub, pub, close
		session string
		want    []string // deliveries expected after a pub
		err     error
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"no subscriber", []step{{op: "pub", session: "a"}}},
		{"subscribed", []step{{op: "sub", session: "a"}, {op: "pub", session: "a", want: []string{"a"}}}},
		{"other session", []step{{op: "sub", session: "a"}, {op: "pub", session: "b"}}},
		{"unsubscribed", []step{{op: "sub", session: "a"}, {op: "unsub", session: "a"}, {op: "pub", session: "a"}}},
		{"closed", []step{{op: "sub", session: "a"}, {op: "close"}, {op: "pub", session: "a", err: ErrClosed}, {op: "sub", session: "a", err: ErrClosed}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			subs := map[string]bool{}
			m := NewMemory()
			_ = m.Start(func(s string, _ uint64, p []byte) bool {
				if subs[s] {
					got = append(got, s)
				}
				return subs[s]
			})
			for i, s := range tt.steps {
				got = nil
				var err error
				switch s.op {
				case "sub":
					if err = m.Subscribe(s.session); err == nil {
						subs[s.session] = true
					}
				case "unsub":
					delete(subs, s.session)
					err = m.Unsubscribe(s.session)
				case "pub":
					err = m.Publish(s.session, []byte("x"))
				case "close":
					err = m.Close()
				}
				if !errors.Is(err, s.err) {
					t.Fatalf("step %d %s: err %v, want %v", i, s.op, err, s.err)
				}
				if len(got) != len(s.want) {
					t.Fatalf("step %d %s: delivered %v, want %v", i, s.op, got, s.want)
				}
			}
		})
	}
}

func TestMemoryOrder(t *testing.T) {
	var got []string
	m := NewMemory()
	_ = m.Start(func(_ string, _ uint64, p []byte) bool { got = append(got, string(p)); return true })
	_ = m.Subscribe("s")
	for _, p := range []string{"1", "2", "3"} {
		_ = m.Publish("s", []byte(p))
	}
	if len(got) != 3 || got[0] != "1" || got[1] != "2" || got[2] != "3" {
		t.Fatalf("got %v, want [1 2 3]", got)
	}
}
