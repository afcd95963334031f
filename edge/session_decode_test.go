package edge

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/gobwas/ws"
)

var kindNames = map[int]string{
	kindInvalidJSON: "invalid_json",
	kindBinary:      "binary",
	kindOther:       "other(echo)",
	kindHello:       "hello",
	kindPresence:    "presence",
	kindBroadcast:   "broadcast",
}

func TestDecodeSessionMessage(t *testing.T) {
	type fields struct{ userType, clientType, msg, data string } // raw JSON; "" = absent
	for _, tc := range []struct {
		name string
		op   ws.OpCode
		in   string
		kind int
		want *fields // checked when non-nil
	}{
		{"hello", ws.OpText, `{"type":"hello","user_type":"admin","client_type":"web"}`, kindHello,
			&fields{userType: `"admin"`, clientType: `"web"`}},
		{"hello without client_type", ws.OpText, `{"type":"hello","user_type":"admin"}`, kindHello,
			&fields{userType: `"admin"`}},
		{"hello with user_type not a string", ws.OpText, `{"type":"hello","user_type":5}`, kindHello,
			&fields{userType: `5`}},
		{"hello with escaped type", ws.OpText, `{"type":"hel\u006co"}`, kindHello, nil},
		{"presence", ws.OpText, `{"type":"presence"}`, kindPresence, &fields{}},
		{"broadcast", ws.OpText, `{"type":"broadcast","msg":"hello","data":{"a":[1,2]}}`, kindBroadcast,
			&fields{msg: `"hello"`, data: `{"a":[1,2]}`}},
		{"broadcast without msg and data", ws.OpText, `{"type":"broadcast"}`, kindBroadcast, &fields{}},
		{"broadcast with null msg", ws.OpText, `{"type":"broadcast","msg":null}`, kindBroadcast, &fields{msg: `null`}},
		{"broadcast keeps raw numbers", ws.OpText, `{"type":"broadcast","msg":1.50e3}`, kindBroadcast, &fields{msg: `1.50e3`}},
		{"fields nested elsewhere are ignored", ws.OpText, `{"x":{"type":"hello"}}`, kindOther, nil},

		{"unknown type", ws.OpText, `{"type":"subscribe"}`, kindOther, nil},
		{"type differs in case", ws.OpText, `{"type":"Hello"}`, kindOther, nil},
		{"type with spaces", ws.OpText, `{"type":" hello"}`, kindOther, nil},
		{"empty type", ws.OpText, `{"type":""}`, kindOther, nil},
		{"missing type", ws.OpText, `{"user_type":"admin"}`, kindOther, nil},
		{"empty object", ws.OpText, `{}`, kindOther, nil},
		{"type is a number", ws.OpText, `{"type":1}`, kindOther, nil},
		{"type is null", ws.OpText, `{"type":null}`, kindOther, nil},
		{"type is true", ws.OpText, `{"type":true}`, kindOther, nil},
		{"type is an array", ws.OpText, `{"type":["hello"]}`, kindOther, nil},
		{"type is an object", ws.OpText, `{"type":{"hello":1}}`, kindOther, nil},

		{"string", ws.OpText, `"hello"`, kindOther, nil},
		{"number", ws.OpText, `42`, kindOther, nil},
		{"null", ws.OpText, `null`, kindOther, nil},
		{"boolean", ws.OpText, `false`, kindOther, nil},
		{"array of hello", ws.OpText, `[{"type":"hello"}]`, kindOther, nil},
		{"empty array", ws.OpText, `[]`, kindOther, nil},
		{"nested arrays", ws.OpText, `[[[]]]`, kindOther, nil},

		{"empty", ws.OpText, ``, kindInvalidJSON, nil},
		{"only whitespace", ws.OpText, " \t\r\n", kindInvalidJSON, nil},
		{"plain text", ws.OpText, `hello`, kindInvalidJSON, nil},
		{"unterminated object", ws.OpText, `{"type":"hello"`, kindInvalidJSON, nil},
		{"trailing brace", ws.OpText, `{"type":"hello"}}`, kindInvalidJSON, nil},
		{"two values", ws.OpText, `{"type":"hello"} {"type":"presence"}`, kindInvalidJSON, nil},
		{"single quotes", ws.OpText, `{'type':'hello'}`, kindInvalidJSON, nil},
		{"trailing comma", ws.OpText, `{"type":"hello",}`, kindInvalidJSON, nil},
		{"NaN", ws.OpText, `NaN`, kindInvalidJSON, nil},
		{"comment", ws.OpText, `{"type":"hello"} // hi`, kindInvalidJSON, nil},
		{"form feed is not JSON whitespace", ws.OpText, "\f{\"type\":\"hello\"}", kindInvalidJSON, nil},

		{"binary hello", ws.OpBinary, `{"type":"hello","user_type":"admin"}`, kindBinary, nil},
		{"binary garbage", ws.OpBinary, "\x00\xff", kindBinary, nil},
		{"empty binary", ws.OpBinary, ``, kindBinary, nil},

		{"whitespace around hello", ws.OpText, " \r\n\t{\"type\":\"hello\",\"user_type\":\"a\"}\n ", kindHello, &fields{userType: `"a"`}},
		{"whitespace inside", ws.OpText, "{ \"type\" :\n\"presence\" }", kindPresence, nil},
		{"whitespace around a number", ws.OpText, " 7 ", kindOther, nil},

		// encoding/json keeps the last of duplicate keys, like Python's json.
		{"duplicate type, last wins", ws.OpText, `{"type":"hello","type":"presence"}`, kindPresence, nil},
		{"duplicate type, last not a string", ws.OpText, `{"type":"hello","type":1}`, kindOther, nil},
		{"duplicate msg, last wins", ws.OpText, `{"type":"broadcast","msg":1,"msg":2}`, kindBroadcast, &fields{msg: `2`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kind, m := decodeSessionMessage(tc.op, []byte(tc.in))
			if kind != tc.kind {
				t.Fatalf("decodeSessionMessage(%v, %q) kind = %s, want %s", tc.op, tc.in, kindNames[kind], kindNames[tc.kind])
			}
			if tc.want == nil {
				return
			}
			for _, f := range []struct {
				name      string
				got, want string
			}{
				{"user_type", string(m.UserType), tc.want.userType},
				{"client_type", string(m.ClientType), tc.want.clientType},
				{"msg", string(m.Msg), tc.want.msg},
				{"data", string(m.Data), tc.want.data},
			} {
				if f.got != f.want {
					t.Errorf("%s = %q, want %q", f.name, f.got, f.want)
				}
			}
		})
	}
}

// TestDecodeSessionMessageKeyCase: PROTOCOL.md §1 routes on the "type" key;
// an object without it is echoed, as the original's content.get("type") did.
// encoding/json matches struct fields case-insensitively, so keys such as
// "TYPE" or "User_Type" must not stand in for the real ones.
func TestDecodeSessionMessageKeyCase(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		kind int
		user string // raw user_type expected; checked for hello
	}{
		{"TYPE is not type", `{"TYPE":"hello","user_type":"admin"}`, kindOther, ""},
		{"Type is not type", `{"Type":"presence"}`, kindOther, ""},
		{"later Type does not override type", `{"type":"hello","Type":"presence","user_type":"a"}`, kindHello, `"a"`},
		{"USER_TYPE is not user_type", `{"type":"hello","USER_TYPE":"admin"}`, kindHello, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kind, m := decodeSessionMessage(ws.OpText, []byte(tc.in))
			if kind != tc.kind {
				t.Fatalf("decodeSessionMessage(%q) kind = %s, want %s", tc.in, kindNames[kind], kindNames[tc.kind])
			}
			if kind == kindHello && string(m.UserType) != tc.user {
				t.Fatalf("user_type = %q, want %q", m.UserType, tc.user)
			}
		})
	}
}

// FuzzDecodeSessionMessage: any bytes classify without panicking, and the
// kind agrees with json.Valid and with the object's exact-case "type" key.
func FuzzDecodeSessionMessage(f *testing.F) {
	f.Fuzz(func(t *testing.T, binary bool, msg []byte) {
		op := ws.OpText
		if binary {
			op = ws.OpBinary
		}
		in := append([]byte{}, msg...)
		kind, m := decodeSessionMessage(op, msg)
		if !bytes.Equal(in, msg) {
			t.Fatal("decodeSessionMessage modified its input")
		}
		switch {
		case binary:
			if kind != kindBinary {
				t.Fatalf("binary message classified %s", kindNames[kind])
			}
			return
		case !json.Valid(msg):
			if kind != kindInvalidJSON {
				t.Fatalf("invalid JSON classified %s", kindNames[kind])
			}
			return
		}
		// Oracle: the exact-case "type" key of an object, last one wins
		// (as in Python's json and the original's content.get("type")).
		oracle := kindOther
		var obj map[string]json.RawMessage
		if json.Unmarshal(msg, &obj) == nil {
			var typ string
			if json.Unmarshal(obj["type"], &typ) == nil {
				switch typ {
				case "hello":
					oracle = kindHello
				case "presence":
					oracle = kindPresence
				case "broadcast":
					oracle = kindBroadcast
				}
			}
		}
		if kind != oracle {
			t.Fatalf("%q classified %s, want %s", msg, kindNames[kind], kindNames[oracle])
		}
		var want string
		switch kind {
		case kindHello:
			want = "hello"
		case kindPresence:
			want = "presence"
		case kindBroadcast:
			want = "broadcast"
		default:
			return
		}
		if s := strings.TrimLeft(string(msg), " \t\r\n"); !strings.HasPrefix(s, "{") {
			t.Fatalf("%s from a value that is not an object: %q", want, msg)
		}
		var typ string
		if err := json.Unmarshal(m.Type, &typ); err != nil || typ != want {
			t.Fatalf("%s, but type field is %q (%v)", want, m.Type, err)
		}
		for _, raw := range []json.RawMessage{m.UserType, m.ClientType, m.Msg, m.Data} {
			if raw != nil && !json.Valid(raw) {
				t.Fatalf("field holds invalid JSON %q", raw)
			}
		}
	})
}

func TestParseWSPath(t *testing.T) {
	for _, tc := range []struct {
		path    string
		route   uint8
		session string
		ok      bool
	}{
		{"/ws/chat/", routeChat, "", true},
		{"/ws/chat", routeChat, "", true},
		{"/ws/session/11/", routeSession, "11", true},
		{"/ws/session/11", routeSession, "11", true},
		{"/ws/session/a.b:c-d_e/", routeSession, "a.b:c-d_e", true},
		// An empty id is routed; ValidID then answers 400 rather than 404.
		{"/ws/session/", routeSession, "", true},
		{"/ws/session//", routeSession, "", true},
		{"/ws/session/bad%20id/", routeSession, "bad%20id", true},
		{"/ws/session/11//", 0, "", false},
		{"/ws/session/a/b/", 0, "", false},
		{"/ws/session/a/b", 0, "", false},
		{"/ws/session", 0, "", false},
		{"/ws/sessions/11/", 0, "", false},
		{"/WS/session/11/", 0, "", false},
		{"/ws/Session/11/", 0, "", false},
		{"/ws/chat//", 0, "", false},
		{"/ws/chat/x", 0, "", false},
		{"/ws/chatroom/", 0, "", false},
		{"/ws/", 0, "", false},
		{"/", 0, "", false},
		{"", 0, "", false},
		{"ws/session/11/", 0, "", false},
		{"/api/ws/session/11/", 0, "", false},
	} {
		t.Run(tc.path, func(t *testing.T) {
			route, session, ok := parseWSPath(tc.path)
			if ok != tc.ok || (ok && (route != tc.route || session != tc.session)) {
				t.Fatalf("parseWSPath(%q) = %d, %q, %v; want %d, %q, %v", tc.path, route, session, ok, tc.route, tc.session, tc.ok)
			}
		})
	}
}
