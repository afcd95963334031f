package wire

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/wsedge/wsedge/edge/presence"
)

// TestShapes pins escaping that the protocol examples do not show.
func TestShapes(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{string(ErrorFrame("busy", `a "quoted" <msg>`)), `{"type":"error","error":"busy","message":"a \"quoted\" \u003cmsg\u003e"}`},
		{string(HTTPError("not_found", "no such route")), `{"error":"not_found","message":"no such route"}`},
		{string(AppendSessionMessage(nil, `"a"`, `"b"`, nil, nil)), `{"type":"session_message","user_type":"a","client_type":"b","msg":null,"data":null}`},
		{string(Token("<b>")), `{"type":"token","content":"\u003cb\u003e"}`},
		{string(Refreshed(1700000000)), `{"type":"refreshed","exp":1700000000}`},
		{string(TokenExpired()), `{"type":"token_expired"}`},
		{string(AppendEcho(nil, []byte(" \t{\"a\": 1}\n"))), `{"type":"echo","data":{"a": 1}}`},
		{string(RecoveryFailed("unavailable", "", 0, false)), `{"type":"recovery_failed","reason":"unavailable"}`},
		{string(must(ChatMirror("assistant", nil, json.RawMessage(`{"event": "error", "error": "upstream_error"}`)))),
			`{"type":"session_message","user_type":"assistant","client_type":"chat","msg":null,"data":{"event":"error","error":"upstream_error"}}`},
	} {
		if tc.got != tc.want {
			t.Errorf("got %s, want %s", tc.got, tc.want)
		}
	}
}

// TestProtocolExamples builds every server frame with the values of its
// example in docs/PROTOCOL.md and finds the result there, byte for byte.
func TestProtocolExamples(t *testing.T) {
	raw, err := os.ReadFile("../../docs/PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	lines := map[string]bool{}
	for _, l := range strings.Split(doc, "\n") {
		lines[strings.TrimSpace(l)] = true
	}
	msg := func(s string) *string { return &s }
	presenceMembers := []presence.Member{
		{ConnectionID: "9f0c2a4b7d1e4c3a8b6f5e2d1c0b9a87", UserType: "admin", ClientType: "web", ConnectedAt: 1700000000, LastSeen: 1700000030},
		{ConnectionID: "0a1b2c3d4e5f60718293a4b5c6d7e8f9", UserType: "agent", ClientType: "ios", ConnectedAt: 1700000012, LastSeen: 1700000030},
	}
	tests := []struct {
		name  string
		frame []byte
	}{
		{"error", ErrorFrame("invalid_json", "message is not valid JSON")},
		{"error with quotes", ErrorFrame("hello_required", `the first message must be {"type":"hello","user_type":"..."}`)},
		{"chat error", ErrorFrame("data_required", `channel "web" needs data`)},
		{"http error", HTTPError("thread_not_found", "no such thread")},
		{"connected", Connected("11", "9f0c2a4b7d1e4c3a8b6f5e2d1c0b9a87", "", false)},
		{"connected with epoch", Connected("11", "…", "3f0c…", true)},
		{"presence", AppendPresence(nil, "11", presenceMembers, 100, 1<<20)},
		{"session_message", AppendSessionMessage(nil, `"admin"`, `"web"`, []byte(`"hello"`), []byte(`{"order":42}`))},
		{"session_message with seq", AppendSeq(AppendSessionMessage(nil, `"admin"`, `"web"`, []byte(`"hi"`), nil), 42)},
		{"echo", AppendEcho(nil, []byte(`{"type":"ping","t":1}`))},
		{"reconnect", Reconnect(2718)},
		{"recovery_failed", RecoveryFailed("too_old", "3f0c9a1b2d4e5f60", 742, true)},
		{"session_started", SessionStarted("demo-thread", "5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b")},
		{"token", Token("Hello! ")},
		{"rewrite", Rewrite(1)},
		{"escalation", Escalation()},
		{"end", End()},
		{"mirrored user message", must(ChatMirror("user", msg("Hello, how can you help?"),
			json.RawMessage(`{"event":"message","channel":"web","data":[]}`)))},
		{"mirrored answer", must(ChatMirror("assistant", msg("Hello! I am the local demo model…"),
			json.RawMessage(`{"event":"answer","outcome":"completed"}`)))},
	}
	for _, tt := range tests {
		f := string(tt.frame)
		if !lines[f] && !strings.Contains(doc, "`"+f+"`") {
			t.Errorf("%s: %s is not an example in docs/PROTOCOL.md", tt.name, f)
		}
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func TestAppendSeq(t *testing.T) {
	tests := []struct {
		in   string
		seq  uint64
		want string
	}{
		{`{"a":1}`, 0, `{"a":1}`},
		{`{"a":1}`, 7, `{"a":1,"seq":7}`},
		{`{}`, 3, `{"seq":3}`},
		{`[1]`, 3, `[1]`},
		{``, 3, ``},
	}
	for _, tt := range tests {
		if got := string(AppendSeq([]byte(tt.in), tt.seq)); got != tt.want {
			t.Fatalf("AppendSeq(%s, %d) = %s, want %s", tt.in, tt.seq, got, tt.want)
		}
	}
}

// SessionMessageLen is exact, so the buffer is allocated once.
func TestSessionMessageLen(t *testing.T) {
	for _, tc := range [][4]string{{`"a"`, `"b"`, ``, ``}, {`"admin"`, `"web"`, `"hello"`, `{"order":42}`}, {`"a"`, `"b"`, `1`, `2`}} {
		got := AppendSessionMessage(nil, tc[0], tc[1], []byte(tc[2]), []byte(tc[3]))
		if n := SessionMessageLen(tc[0], tc[1], []byte(tc[2]), []byte(tc[3])); n < len(got) {
			t.Errorf("%v: SessionMessageLen %d < %d", tc, n, len(got))
		}
	}
}
