package baseline

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	dto "github.com/prometheus/client_model/go"
)

func start(t *testing.T, opts Options) (*Server, string) {
	t.Helper()
	s := New(opts, slog.New(slog.NewTextHandler(io.Discard, nil)))
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	return s, "ws" + strings.TrimPrefix(hs.URL, "http")
}

type client struct {
	t  *testing.T
	nc net.Conn
	rd io.Reader
}

func dial(t *testing.T, url string) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	nc, br, _, err := ws.Dial(ctx, url)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { nc.Close() })
	var rd io.Reader = nc
	if br != nil {
		rd = io.MultiReader(br, nc)
	}
	c := &client{t: t, nc: nc, rd: rd}
	if f := c.read(); f["type"] != "connected" {
		t.Fatalf("first frame %v, want connected", f)
	}
	return c
}

func (c *client) send(op ws.OpCode, p string) {
	c.t.Helper()
	if err := wsutil.WriteClientMessage(c.nc, op, []byte(p)); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// next returns the next text frame or the close code the server sent.
func (c *client) next() (map[string]any, ws.StatusCode) {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		h, err := ws.ReadHeader(c.rd)
		if err != nil {
			c.t.Fatalf("read: %v", err)
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(c.rd, p); err != nil {
			c.t.Fatalf("read payload: %v", err)
		}
		switch h.OpCode {
		case ws.OpClose:
			code, _ := ws.ParseCloseFrameData(p)
			return nil, code
		case ws.OpText:
			var m map[string]any
			if err := json.Unmarshal(p, &m); err != nil {
				c.t.Fatalf("frame %q is not a JSON object: %v", p, err)
			}
			return m, 0
		case ws.OpPong:
			return map[string]any{"type": "pong:" + string(p)}, 0
		}
	}
}

func (c *client) read() map[string]any {
	c.t.Helper()
	m, code := c.next()
	if m == nil {
		c.t.Fatalf("got close %d, want a frame", code)
	}
	return m
}

const hello = `{"type":"hello","user_type":"admin","client_type":"web"}`

func TestProtocol(t *testing.T) {
	type frame struct {
		op ws.OpCode
		p  string
	}
	text := func(p string) frame { return frame{ws.OpText, p} }
	cases := []struct {
		name   string
		opts   Options
		hello  bool
		send   []frame
		want   []string // "type" or "error:<code>" of each expected frame, in order
		close  ws.StatusCode
		silent time.Duration // wait for a close without sending anything
	}{
		{name: "broadcast first", send: []frame{text(`{"type":"broadcast","msg":1}`)}, want: []string{"error:hello_required"}, close: 4001},
		{name: "hello without user_type", send: []frame{text(`{"type":"hello"}`)}, want: []string{"error:user_type_required"}, close: 4001},
		{name: "hello with empty user_type", send: []frame{text(`{"type":"hello","user_type":""}`)}, want: []string{"error:user_type_required"}, close: 4001},
		{name: "binary first", send: []frame{{ws.OpBinary, "x"}}, want: []string{"error:text_required"}, close: 4001},
		{name: "not JSON first", send: []frame{text(`hello`)}, want: []string{"error:invalid_json"}, close: 4001},
		{name: "no hello in time", opts: Options{HelloTimeout: 100 * time.Millisecond}, silent: time.Second, close: 4001},
		{name: "second hello", hello: true, send: []frame{text(hello), text(`{"type":"presence"}`)}, want: []string{"error:hello_already_received", "presence"}},
		{name: "broadcast reaches sender", hello: true, send: []frame{text(`{"type":"broadcast","msg":"hi"}`)}, want: []string{"session_message"}},
		{name: "unknown type echoes", hello: true, send: []frame{text(`{"type":"nope","x":1}`)}, want: []string{"echo"}},
		{name: "non-object echoes", hello: true, send: []frame{text(`[1,2]`)}, want: []string{"echo"}},
		{name: "not JSON after hello", hello: true, send: []frame{text(`{`), text(`{"type":"presence"}`)}, want: []string{"error:invalid_json", "presence"}},
		{name: "binary after hello", hello: true, send: []frame{{ws.OpBinary, "x"}, text(`{"type":"presence"}`)}, want: []string{"error:text_required", "presence"}},
		{name: "ping is answered", hello: true, send: []frame{{ws.OpPing, "p1"}}, want: []string{"pong:p1"}},
		{name: "too large", opts: Options{MaxMessage: 64}, hello: true, send: []frame{text(`{"type":"x","pad":"` + strings.Repeat("a", 100) + `"}`)}, close: ws.StatusMessageTooBig},
		{name: "invalid UTF-8", hello: true, send: []frame{text("\"\xff\"")}, close: ws.StatusInvalidFramePayloadData},
		{name: "client close is echoed", hello: true, send: []frame{{ws.OpClose, string(ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))}}, close: ws.StatusNormalClosure},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, url := start(t, tc.opts)
			c := dial(t, url+"/ws/session/s1/")
			if tc.hello {
				c.send(ws.OpText, hello)
			}
			for _, f := range tc.send {
				c.send(f.op, f.p)
			}
			for _, w := range tc.want {
				m := c.read()
				got, _ := m["type"].(string)
				if got == "error" {
					got = "error:" + m["error"].(string)
				}
				if got != w {
					t.Fatalf("got frame %v, want %s", m, w)
				}
			}
			if tc.close != 0 {
				if m, code := c.next(); m != nil || code != tc.close {
					t.Fatalf("got %v / close %d, want close %d", m, code, tc.close)
				}
			}
		})
	}
}

func TestBroadcastAndPresence(t *testing.T) {
	_, url := start(t, Options{})
	a := dial(t, url+"/ws/session/room/")
	b := dial(t, url+"/ws/session/room/")
	quiet := dial(t, url+"/ws/session/room/") // no hello: not a member
	other := dial(t, url+"/ws/session/other/")
	a.send(ws.OpText, hello)
	// a's presence answer comes after its hello is handled: only then is it
	// sure to be a member when b asks.
	a.send(ws.OpText, `{"type":"presence"}`)
	_ = a.read()
	b.send(ws.OpText, `{"type":"hello","user_type":"visitor"}`)
	other.send(ws.OpText, hello)
	b.send(ws.OpText, `{"type":"presence"}`)
	p := b.read()
	if p["count"] != float64(2) || p["session_id"] != "room" {
		t.Fatalf("presence %v, want count 2 in room", p)
	}
	if bt := p["by_type"].(map[string]any); bt["web"] != float64(1) || bt["unknown"] != float64(1) {
		t.Fatalf("by_type %v", bt)
	}
	a.send(ws.OpText, `{"type":"broadcast","msg":"hello","data":{"k":[1]}}`)
	for _, c := range []*client{a, b} {
		m := c.read()
		if m["type"] != "session_message" || m["user_type"] != "admin" || m["client_type"] != "web" || m["msg"] != "hello" {
			t.Fatalf("got %v", m)
		}
		if d, _ := json.Marshal(m["data"]); string(d) != `{"k":[1]}` {
			t.Fatalf("data %s", d)
		}
	}
	// Neither the non-member nor the other session may see it: their next
	// frame is the reply to their own request.
	other.send(ws.OpText, `{"type":"x"}`)
	if m := other.read(); m["type"] != "echo" {
		t.Fatalf("other session got %v", m)
	}
	quiet.send(ws.OpText, `{"type":"x"}`)
	if m := quiet.read(); m["error"] != "hello_required" {
		t.Fatalf("non-member got %v", m)
	}
}

func TestConcurrentSendersLoseNothing(t *testing.T) {
	const n, each = 50, 10
	_, url := start(t, Options{})
	cs := make([]*client, n)
	for i := range cs {
		cs[i] = dial(t, url+"/ws/session/storm/")
		cs[i].send(ws.OpText, hello)
	}
	for {
		cs[0].send(ws.OpText, `{"type":"presence"}`)
		if cs[0].read()["count"] == float64(n) {
			break
		}
	}
	errc := make(chan error, n)
	for i, c := range cs {
		go func() {
			for k := 0; k < each; k++ {
				if err := wsutil.WriteClientText(c.nc, []byte(`{"type":"broadcast","msg":[`+itoa(i)+`,`+itoa(k)+`]}`)); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
	}
	for range cs {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range cs {
		last := make([]int, n)
		for i := range last {
			last[i] = -1
		}
		for k := 0; k < n*each; k++ {
			m := c.read()
			msg := m["msg"].([]any)
			from, seq := int(msg[0].(float64)), int(msg[1].(float64))
			if seq != last[from]+1 {
				t.Fatalf("from %d: got seq %d after %d", from, seq, last[from])
			}
			last[from] = seq
		}
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func TestHTTP(t *testing.T) {
	s, url := start(t, Options{})
	base := "http" + strings.TrimPrefix(url, "ws")
	for _, tc := range []struct {
		path string
		code int
	}{
		{"/health/", 200},
		{"/ws/session/bad%20id/", 400},
		{"/ws/session/" + strings.Repeat("a", 129) + "/", 400},
	} {
		resp, err := http.Get(base + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("GET %s: %d, want %d", tc.path, resp.StatusCode, tc.code)
		}
	}
	admin := httptest.NewServer(s.AdminHandler())
	defer admin.Close()
	resp, err := http.Get(admin.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "\ngo_goroutines ") {
		t.Fatalf("/metrics has no go_goroutines")
	}
}

func TestSlowConsumerIsClosed(t *testing.T) {
	s, url := start(t, Options{QueueBytes: 64 << 10})
	stalled := dial(t, url+"/ws/session/slow/")
	stalled.send(ws.OpText, hello)
	sender := dial(t, url+"/ws/session/slow/")
	sender.send(ws.OpText, hello)
	big := `{"type":"broadcast","msg":"` + strings.Repeat("x", 32<<10) + `"}`
	// The stalled member never reads: once the socket buffers are full its
	// queue passes 64 KiB and it must be dropped while the sender goes on.
	deadline := time.Now().Add(10 * time.Second)
	for closedSlow(s) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("stalled reader was never closed")
		}
		sender.send(ws.OpText, big)
		sender.read()
	}
}

func closedSlow(s *Server) float64 {
	var m dto.Metric
	_ = s.slowClosed.Write(&m)
	return m.GetCounter().GetValue()
}
