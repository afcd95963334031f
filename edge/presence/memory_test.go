package presence

import (
	"context"
	"testing"
)

func TestMemoryStore(t *testing.T) {
	type op struct {
		join  *Member
		leave *Ref
	}
	m := func(s, c string, at int64) *Member {
		return &Member{SessionID: s, ConnectionID: c, UserType: "u", ClientType: "web", ConnectedAt: at}
	}
	tests := []struct {
		name    string
		ops     []op
		session string
		want    []string
	}{
		{"empty", nil, "s", nil},
		{"join order", []op{{join: m("s", "b", 2)}, {join: m("s", "c", 1)}, {join: m("s", "a", 2)}}, "s", []string{"b", "c", "a"}},
		{"leave keeps order", []op{{join: m("s", "a", 1)}, {join: m("s", "b", 1)}, {join: m("s", "c", 1)}, {leave: &Ref{SessionID: "s", ConnectionID: "b"}}}, "s", []string{"a", "c"}},
		{"rejoin replaces in place", []op{{join: m("s", "a", 1)}, {join: m("s", "b", 1)}, {join: m("s", "a", 3)}}, "s", []string{"a", "b"}},
		{"other session", []op{{join: m("s", "a", 1)}, {join: m("t", "b", 1)}}, "t", []string{"b"}},
		{"leave", []op{{join: m("s", "a", 1)}, {join: m("s", "b", 1)}, {leave: &Ref{SessionID: "s", ConnectionID: "a"}}}, "s", []string{"b"}},
		{"leave unknown", []op{{leave: &Ref{SessionID: "s", ConnectionID: "x"}}}, "s", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewMemory()
			for _, o := range tt.ops {
				if o.join != nil {
					_ = s.Join(*o.join)
				} else {
					_ = s.Leave(*o.leave)
				}
			}
			got, err := s.Members(context.Background(), tt.session)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("members %v, want %v", got, tt.want)
			}
			for i, g := range got {
				if g.ConnectionID != tt.want[i] || g.LastSeen == 0 {
					t.Fatalf("member %d = %+v, want id %s with last_seen", i, g, tt.want[i])
				}
			}
		})
	}
}
