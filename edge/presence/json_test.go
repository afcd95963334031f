package presence

import (
	"encoding/json"
	"fmt"
	"testing"
)

func TestAppendMembersJSON(t *testing.T) {
	tests := []struct {
		name string
		ms   []Member
	}{
		{"nil", nil},
		{"empty", []Member{}},
		{"one", []Member{{SessionID: "s", ConnectionID: "abc", UserType: "admin", ClientType: "web", ConnectedAt: 1700000000, LastSeen: 1700000030}}},
		{"escapes", []Member{{ConnectionID: "a\"b\\c", UserType: "<script>&amp;</script>", ClientType: "\n\r\t\x00\x1f\x7f", ConnectedAt: -1}}},
		{"unicode", []Member{{ConnectionID: "é", UserType: "📱\u2028\u2029", ClientType: "\xff\xfe bad \xc3"}}},
		{"two", []Member{{ConnectionID: "1"}, {ConnectionID: "2", LastSeen: 9}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, err := json.Marshal(tt.ms)
			if err != nil {
				t.Fatal(err)
			}
			if got := appendMembersJSON(nil, tt.ms); string(got) != string(want) {
				t.Fatalf("got  %s\nwant %s", got, want)
			}
		})
	}
}

func FuzzAppendMembersJSON(f *testing.F) {
	f.Add("abc", "admin", "web", int64(1), int64(2))
	f.Add("\u2028", "<&>", "\xff", int64(-1), int64(0))
	f.Fuzz(func(t *testing.T, id, ut, ct string, at, seen int64) {
		ms := []Member{{ConnectionID: id, UserType: ut, ClientType: ct, ConnectedAt: at, LastSeen: seen}}
		want, err := json.Marshal(ms)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendMembersJSON(nil, ms); string(got) != string(want) {
			t.Fatalf("got  %s\nwant %s", got, want)
		}
	})
}

func BenchmarkMembersJSON(b *testing.B) {
	ms := make([]Member, 5000)
	for i := range ms {
		ms[i] = Member{ConnectionID: fmt.Sprintf("%032x", i), UserType: "agent", ClientType: "web", ConnectedAt: 1700000000, LastSeen: 1700000000}
	}
	b.Run("encoding/json", func(b *testing.B) {
		for b.Loop() {
			_, _ = json.Marshal(ms)
		}
	})
	b.Run("appendMembersJSON", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			buf = appendMembersJSON(buf[:0], ms)
		}
	})
}
