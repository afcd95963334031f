package edge

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

var hex32 = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestConnectedFrame(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	for _, path := range []string{"/ws/session/11/", "/ws/session/11", "/ws/session/a.b:c_d-E/"} {
		c := ts.dial(t, path, nil)
		m := c.expectType("connected")
		want := strings.TrimSuffix(strings.TrimPrefix(path, "/ws/session/"), "/")
		if m["session_id"] != want || m["user_type_required"] != true || !hex32.MatchString(fmt.Sprint(m["connection_id"])) {
			t.Errorf("%s: connected frame %v", path, m)
		}
	}
}

func TestUpgradeRefused(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	long := strings.Repeat("a", 129)
	for _, tc := range []struct {
		path string
		code int
	}{
		{"/ws/session/" + long + "/", 400},
		{"/ws/session/has%20space/", 400},
		{"/ws/session/ü/", 400},
		{"/ws/session//", 400},
		{"/ws/session/a/b/", 404},
		{"/ws/nowhere/", 404},
		{"/ws/chat/", 404}, // no chat service in this server
	} {
		_, err := ts.tryDial(t, tc.path, nil)
		se, ok := err.(ws.StatusError)
		if !ok || int(se) != tc.code {
			t.Errorf("%s: want HTTP %d, got %v", tc.path, tc.code, err)
		}
	}
	if _, err := ts.tryDial(t, "/ws/session/"+strings.Repeat("a", 128)+"/", nil); err != nil {
		t.Errorf("128-character id refused: %v", err)
	}
}

func TestHelloRequired(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	for _, tc := range []struct {
		name, first, code string
		binary            bool
	}{
		{"broadcast first", `{"type":"broadcast","msg":"x"}`, "hello_required", false},
		{"presence first", `{"type":"presence"}`, "hello_required", false},
		{"no type", `{"user_type":"admin"}`, "hello_required", false},
		{"array", `[1]`, "hello_required", false},
		{"missing user_type", `{"type":"hello"}`, "user_type_required", false},
		{"empty user_type", `{"type":"hello","user_type":""}`, "user_type_required", false},
		{"numeric user_type", `{"type":"hello","user_type":5}`, "user_type_required", false},
		{"user_type too long", `{"type":"hello","user_type":"` + strings.Repeat("x", 65) + `"}`, "user_type_required", false},
		{"client_type not string", `{"type":"hello","user_type":"a","client_type":7}`, "hello_required", false},
		{"client_type too long", `{"type":"hello","user_type":"a","client_type":"` + strings.Repeat("x", 65) + `"}`, "hello_required", false},
		{"not json", `hello`, "invalid_json", false},
		{"binary", `{"type":"hello","user_type":"a"}`, "text_required", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := ts.session(t, "s1", "", "")
			if tc.binary {
				c.sendRaw(ws.MustCompileFrame(ws.MaskFrame(ws.NewBinaryFrame([]byte(tc.first)))))
			} else {
				c.send(tc.first)
			}
			c.expectError(tc.code)
			c.expectClose(4001)
		})
	}
}

func TestHelloDeadline(t *testing.T) {
	t.Parallel()
	ts := startServer(t, func(c *Config) { c.HelloTimeout = 300 * time.Millisecond })
	c, _ := ts.session(t, "s", "", "")
	start := time.Now()
	c.expectError("hello_required")
	c.expectClose(4001)
	if el := time.Since(start); el < 250*time.Millisecond {
		t.Fatalf("closed after %v, before the hello deadline", el)
	}
}

func TestSecondHello(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	c, _ := ts.session(t, "s", "admin", "web")
	c.hello("viewer", "ios")
	c.expectError("hello_already_received")
	c.send(`{"type":"broadcast","msg":"still here"}`)
	m := c.expectType("session_message")
	if m["user_type"] != "admin" || m["client_type"] != "web" {
		t.Fatalf("second hello changed identity: %v", m)
	}
}

func TestPresence(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	a, idA := ts.session(t, "p1", "admin", "web")
	b, idB := ts.session(t, "p1", "agent", "")
	other, _ := ts.session(t, "p2", "x", "web")
	waiting, _ := ts.session(t, "p1", "", "") // no hello: not a member
	_ = waiting
	_ = other
	b.send(`{"type":"presence"}`)
	m := b.expectType("presence")
	if m["session_id"] != "p1" || m["count"] != float64(2) {
		t.Fatalf("presence %v", m)
	}
	byType := m["by_type"].(map[string]any)
	if byType["web"] != float64(1) || byType["unknown"] != float64(1) || len(byType) != 2 {
		t.Fatalf("by_type %v", byType)
	}
	members := m["members"].([]any)
	seen := map[string]map[string]any{}
	now := float64(time.Now().Unix())
	for _, x := range members {
		mm := x.(map[string]any)
		seen[mm["connection_id"].(string)] = mm
		for _, k := range []string{"connected_at", "last_seen"} {
			if v, _ := mm[k].(float64); v < now-5 || v > now+1 {
				t.Errorf("%s = %v, want about %v", k, mm[k], now)
			}
		}
	}
	if seen[idA]["user_type"] != "admin" || seen[idA]["client_type"] != "web" ||
		seen[idB]["user_type"] != "agent" || seen[idB]["client_type"] != "unknown" {
		t.Fatalf("members %v", members)
	}
	// A member that leaves is gone from presence.
	_ = a.conn.Close()
	deadline := time.Now().Add(3 * time.Second)
	for {
		b.send(`{"type":"presence"}`)
		m = b.expectType("presence")
		if m["count"] == float64(1) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("closed member still present: %v", m)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestBroadcastReachesHelloedMembersIncludingSender(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	a, _ := ts.session(t, "b1", "admin", "web")
	b, _ := ts.session(t, "b1", "agent", "ios")
	silent, _ := ts.session(t, "b1", "", "") // no hello yet
	other, _ := ts.session(t, "b2", "admin", "web")
	a.send(`{"type":"broadcast","msg":{"k":[1,2]},"data":"d"}`)
	for _, c := range []*wsClient{a, b} {
		m := c.expectType("session_message")
		if m["user_type"] != "admin" || m["client_type"] != "web" || m["data"] != "d" {
			t.Fatalf("session_message %v", m)
		}
		if b, _ := json.Marshal(m["msg"]); string(b) != `{"k":[1,2]}` {
			t.Fatalf("msg %s", b)
		}
	}
	b.send(`{"type":"broadcast"}`)
	for _, c := range []*wsClient{a, b} {
		m := c.expectType("session_message")
		if v, ok := m["msg"]; !ok || v != nil {
			t.Fatalf("missing msg must be null: %v", m)
		}
		if v, ok := m["data"]; !ok || v != nil {
			t.Fatalf("missing data must be null: %v", m)
		}
	}
	silent.quiet(200 * time.Millisecond)
	other.quiet(50 * time.Millisecond)
}

func TestEchoAndErrorsAfterHello(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	c, _ := ts.session(t, "e", "admin", "web")
	for _, tc := range []struct{ in, data string }{
		{`{"type":"nope","x":1}`, `{"type":"nope","x":1}`},
		{`{"x":1}`, `{"x":1}`},
		{`{"type":5}`, `{"type":5}`},
		{`[1,"a"]`, `[1,"a"]`},
		{`"str"`, `"str"`},
		{`42`, `42`},
		{`null`, `null`},
	} {
		c.send(tc.in)
		m := c.expectType("echo")
		got, _ := json.Marshal(m["data"])
		var want any
		_ = json.Unmarshal([]byte(tc.data), &want)
		wantB, _ := json.Marshal(want)
		if string(got) != string(wantB) {
			t.Errorf("echo of %s: got %s", tc.in, got)
		}
	}
	c.send(`{not json`)
	c.expectError("invalid_json")
	c.sendRaw(ws.MustCompileFrame(ws.MaskFrame(ws.NewBinaryFrame([]byte(`{}`)))))
	c.expectError("text_required")
	c.send(`{"type":"presence"}`)
	c.expectType("presence") // still open
}

func TestBroadcastOrderPerSender(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	const n = 300
	a, _ := ts.session(t, "o", "admin", "web")
	b, _ := ts.session(t, "o", "agent", "web")
	for i := 0; i < n; i++ {
		a.send(fmt.Sprintf(`{"type":"broadcast","msg":%d}`, i))
	}
	for _, c := range []*wsClient{a, b} {
		for i := 0; i < n; i++ {
			m := c.expectType("session_message")
			if m["msg"] != float64(i) {
				t.Fatalf("message %d: got %v", i, m["msg"])
			}
		}
	}
}

// 200 members of one session broadcast at the same time: every member gets all
// 200 messages, each sender's in order.
func TestConcurrentBroadcasters(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	const n = 200
	clients := make([]*wsClient, n)
	for i := range clients {
		clients[i], _ = ts.session(t, "many", fmt.Sprintf("u%d", i), "web")
	}
	// Everyone is a member before anyone sends.
	clients[0].send(`{"type":"presence"}`)
	if m := clients[0].expectType("presence"); m["count"] != float64(n) {
		t.Fatalf("presence %v", m["count"])
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			c.send(fmt.Sprintf(`{"type":"broadcast","msg":%d}`, i))
		}()
	}
	close(start)
	wg.Wait()
	errs := make(chan error, n)
	for _, c := range clients {
		go func() {
			seen := map[string]bool{}
			for len(seen) < n {
				_, p, err := c.frame(10 * time.Second)
				if err != nil {
					errs <- fmt.Errorf("after %d messages: %w", len(seen), err)
					return
				}
				var m map[string]any
				_ = json.Unmarshal(p, &m)
				if m["type"] == "session_message" {
					seen[fmt.Sprint(m["user_type"])] = true
				}
			}
			errs <- nil
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func TestHealth(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	for _, p := range []string{"/health/", "/health"} {
		code, body := ts.http(t, "GET", p, nil)
		if code != 200 || body != `{"status":"ok"}` {
			t.Errorf("GET %s: %d %s", p, code, body)
		}
	}
	if code, _ := ts.http(t, "HEAD", "/health/", nil); code != 200 {
		t.Errorf("HEAD: %d", code)
	}
	if code, _ := ts.http(t, "POST", "/health/", nil); code != 405 {
		t.Errorf("POST: %d", code)
	}
	if code, body := ts.http(t, "GET", "/nope", nil); code != 404 || !strings.Contains(body, `"error":"not_found"`) {
		t.Errorf("unknown route: %d %s", code, body)
	}
}

func TestOriginCheck(t *testing.T) {
	t.Parallel()
	ts := startServer(t, func(c *Config) {
		c.Debug = false
		c.AllowedHosts = []string{"app.example.com", ".example.org"}
	})
	for _, tc := range []struct {
		origin string
		ok     bool
	}{
		{"https://app.example.com", true},
		{"https://APP.example.com:8443", true},
		{"https://example.org", true},
		{"https://a.b.example.org", true},
		{"https://evil.com", false},
		{"https://badexample.org", false},
		{"null", false},
		{"", false},
	} {
		var hdr http.Header
		if tc.origin != "" {
			hdr = http.Header{"Origin": {tc.origin}}
		}
		_, err := ts.tryDial(t, "/ws/session/o/", hdr)
		if tc.ok && err != nil {
			t.Errorf("origin %q refused: %v", tc.origin, err)
		}
		if se, isStatus := err.(ws.StatusError); !tc.ok && (!isStatus || int(se) != 403) {
			t.Errorf("origin %q: want 403, got %v", tc.origin, err)
		}
	}
	star := startServer(t, func(c *Config) { c.Debug = false; c.AllowedHosts = []string{"*"} })
	if _, err := star.tryDial(t, "/ws/session/o/", nil); err != nil {
		t.Errorf(`"*" with no Origin: %v`, err)
	}
}
