package centrifugo

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// The commands are valid JSON with the shape Centrifugo's protocol expects.
func TestCommands(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  []byte
		want []string // one JSON document per line
	}{
		{"connect+subscribe", AppendConnectSubscribe(nil, `s"1`),
			[]string{`{"id":1,"connect":{"name":"bench"}}`, `{"id":2,"subscribe":{"channel":"s\"1"}}`}},
		{"publish", AppendPublish([]byte("x"), 42, "fanout-0", []byte("wsb:0:1:2"))[1:],
			[]string{`{"id":42,"publish":{"channel":"fanout-0","data":{"msg":"wsb:0:1:2"}}}`}},
		{"presence", AppendPresence(nil, "p"), []string{`{"id":3,"presence":{"channel":"p"}}`}},
	} {
		lines := strings.Split(string(tc.got), "\n")
		if len(lines) != len(tc.want) {
			t.Errorf("%s: %d messages, want %d: %s", tc.name, len(lines), len(tc.want), tc.got)
			continue
		}
		for i, l := range lines {
			if !json.Valid([]byte(l)) {
				t.Errorf("%s: not JSON: %s", tc.name, l)
			}
			if l != tc.want[i] {
				t.Errorf("%s: got %s, want %s", tc.name, l, tc.want[i])
			}
		}
	}
}

func TestParseReply(t *testing.T) {
	for _, tc := range []struct {
		in      string
		id      uint32
		ping    bool
		push    bool
		errCode int
		bad     bool
	}{
		{in: `{}`, ping: true},
		{in: ` { } `, ping: true},
		{in: `{"id":1,"connect":{"client":"c1","version":"6.9.1","ping":25,"pong":true}}`, id: 1},
		{in: `{"id":2,"subscribe":{}}`, id: 2},
		{in: `{"id":7,"error":{"code":103,"message":"permission denied"}}`, id: 7, errCode: 103},
		{in: `{"push":{"channel":"s","pub":{"data":{"msg":"wsb:0:1:2"}}}}`, push: true},
		{in: `nope`, bad: true},
		{in: `{"id":`, bad: true},
		{in: ``, bad: true},
	} {
		r, err := ParseReply([]byte(tc.in))
		if (err != nil) != tc.bad {
			t.Errorf("ParseReply(%q): err %v, want bad=%v", tc.in, err, tc.bad)
			continue
		}
		if tc.bad {
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("ParseReply(%q): %v is not ErrMalformed", tc.in, err)
			}
			continue
		}
		code := 0
		if r.Error != nil {
			code = r.Error.Code
		}
		if r.ID != tc.id || r.Ping != tc.ping || r.Push != tc.push || code != tc.errCode {
			t.Errorf("ParseReply(%q) = %+v (code %d)", tc.in, r, code)
		}
	}
}

func TestMessages(t *testing.T) {
	var got []string
	Messages([]byte("{}\n{\"id\":2,\"subscribe\":{}}\n\n{\"push\":{}}"), func(m []byte) { got = append(got, string(m)) })
	want := []string{`{}`, `{"id":2,"subscribe":{}}`, `{"push":{}}`}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("Messages = %q, want %q", got, want)
	}
}

func TestPresenceCount(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
		bad  bool
	}{
		{`{"id":3,"presence":{"presence":{"a":{"client":"a","user":""},"b":{"user":"","client":"b"}}}}`, 2, false},
		{`{"id":3,"presence":{}}`, 0, false},
		{`{"id":3,"presence":{"presence":{}}}`, 0, false},
		{`{"id":3,"error":{"code":108,"message":"not available"}}`, 0, true},
	} {
		n, err := PresenceCount([]byte(tc.in))
		if (err != nil) != tc.bad || n != tc.want {
			t.Errorf("PresenceCount(%s) = %d, %v; want %d, bad=%v", tc.in, n, err, tc.want, tc.bad)
		}
	}
}

// The configuration decodes and grants what the benchmark's clients do.
func TestConfig(t *testing.T) {
	for _, redis := range []string{"", "redis://127.0.0.1:6379"} {
		b, err := Config(Settings{RedisAddress: redis, APIKey: "k"})
		if err != nil {
			t.Fatal(err)
		}
		var c struct {
			Engine struct {
				Type  string `json:"type"`
				Redis struct {
					Address []string `json:"address"`
				} `json:"redis"`
			} `json:"engine"`
			Client struct {
				Anonymous bool `json:"allow_anonymous_connect_without_token"`
			} `json:"client"`
			Channel struct {
				WithoutNamespace map[string]bool `json:"without_namespace"`
			} `json:"channel"`
			Health struct {
				Enabled bool `json:"enabled"`
			} `json:"health"`
		}
		if err := json.Unmarshal(b, &c); err != nil {
			t.Fatalf("config is not JSON: %v\n%s", err, b)
		}
		wantType := "memory"
		if redis != "" {
			wantType = "redis"
			if len(c.Engine.Redis.Address) != 1 || c.Engine.Redis.Address[0] != redis {
				t.Errorf("redis address %v, want [%s]", c.Engine.Redis.Address, redis)
			}
		}
		if c.Engine.Type != wantType || !c.Client.Anonymous || !c.Health.Enabled {
			t.Errorf("config %s", b)
		}
		for _, k := range []string{"presence", "allow_subscribe_for_anonymous", "allow_publish_for_anonymous", "allow_presence_for_anonymous"} {
			if !c.Channel.WithoutNamespace[k] {
				t.Errorf("channel.without_namespace.%s is not on", k)
			}
		}
	}
}
