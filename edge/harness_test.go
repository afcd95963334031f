package edge

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsedge/wsedge/edge/broker"
	"github.com/wsedge/wsedge/edge/presence"
	"github.com/wsedge/wsedge/internal/testenv"
)

// testServer is a real Server on a loopback port with memory backends.
type testServer struct {
	srv  *Server
	addr string
	reg  *prometheus.Registry
}

type testLogWriter struct{ t testing.TB }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func startServer(t testing.TB, mutate func(*Config)) *testServer {
	t.Helper()
	return startServerWith(t, mutate, Deps{})
}

// startServerWith also takes the optional parts of Deps (API, OpenChat,
// Logger, and Broker with its History).
func startServerWith(t testing.TB, mutate func(*Config), extra Deps) *testServer {
	t.Helper()
	cfg := Defaults()
	cfg.Addr = testenv.FreeAddr(t)
	cfg.Debug = true
	cfg.EventLoops = 2
	cfg.DrainSpread = 0
	cfg.ReconnectJitter = 100 * time.Millisecond
	cfg.SweepInterval = 50 * time.Millisecond
	if mutate != nil {
		mutate(&cfg)
	}
	brk := extra.Broker
	if brk == nil {
		brk = broker.NewMemory()
	}
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if extra.Logger != nil {
		log = extra.Logger
	}
	srv, err := New(cfg, Deps{
		Broker: brk, Presence: presence.NewMemory(), History: extra.History,
		Logger: log, Registry: reg, API: extra.API, OpenChat: extra.OpenChat, Tokens: extra.Tokens,
	})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve() }()
	select {
	case <-srv.Ready():
	case err := <-errc:
		t.Fatalf("serve: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("server did not start")
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		select {
		case <-errc:
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after Shutdown")
		}
	})
	return &testServer{srv: srv, addr: cfg.Addr, reg: reg}
}

// wsClient is a test WebSocket client over a real socket. It reads frames
// itself so that tests see every frame, control frames included.
type wsClient struct {
	t    testing.TB
	conn net.Conn
	br   *bufio.Reader
}

func (ts *testServer) dial(t testing.TB, path string, hdr http.Header) *wsClient {
	t.Helper()
	c, err := ts.tryDial(t, path, hdr)
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	return c
}

func (ts *testServer) tryDial(t testing.TB, path string, hdr http.Header) (*wsClient, error) {
	d := ws.Dialer{Timeout: 5 * time.Second}
	if hdr != nil {
		d.Header = ws.HandshakeHeaderHTTP(hdr)
	}
	conn, br, _, err := d.Dial(context.Background(), "ws://"+ts.addr+path)
	if err != nil {
		return nil, err
	}
	if br == nil {
		br = bufio.NewReader(conn)
	}
	c := &wsClient{t: t, conn: conn, br: br}
	t.Cleanup(func() { _ = conn.Close() })
	return c, nil
}

func (c *wsClient) send(s string) {
	c.t.Helper()
	if err := wsutil.WriteClientText(c.conn, []byte(s)); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

func (c *wsClient) sendRaw(b []byte) {
	c.t.Helper()
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatalf("send raw: %v", err)
	}
}

// frame reads the next frame of any kind.
func (c *wsClient) frame(timeout time.Duration) (ws.Header, []byte, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(timeout))
	h, err := ws.ReadHeader(c.br)
	if err != nil {
		return h, nil, err
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(c.br, p); err != nil {
		return h, nil, err
	}
	if h.Masked {
		c.t.Errorf("server frame is masked")
	}
	return h, p, nil
}

// next reads the next text message as JSON, failing on anything else.
func (c *wsClient) next() map[string]any {
	c.t.Helper()
	for {
		h, p, err := c.frame(15 * time.Second)
		if err != nil {
			c.t.Fatalf("read: %v", err)
		}
		switch h.OpCode {
		case ws.OpPing, ws.OpPong:
			continue
		case ws.OpText:
			var m map[string]any
			if err := json.Unmarshal(p, &m); err != nil {
				c.t.Fatalf("frame is not a JSON object: %q", p)
			}
			return m
		default:
			code, reason := ws.ParseCloseFrameData(p)
			c.t.Fatalf("want a text frame, got opcode %v (close %d %q)", h.OpCode, code, reason)
		}
	}
}

// expectType reads the next message and checks its type.
func (c *wsClient) expectType(typ string) map[string]any {
	c.t.Helper()
	m := c.next()
	if m["type"] != typ {
		c.t.Fatalf("want type %q, got %v", typ, m)
	}
	return m
}

func (c *wsClient) expectError(code string) {
	c.t.Helper()
	m := c.expectType("error")
	if m["error"] != code {
		c.t.Fatalf("want error %q, got %v", code, m)
	}
	if s, _ := m["message"].(string); s == "" {
		c.t.Fatalf("error frame without message: %v", m)
	}
}

// expectClose reads until a close frame and checks its code; then it checks
// that the server closes the TCP connection after the client's reply.
func (c *wsClient) expectClose(code ws.StatusCode) {
	c.t.Helper()
	for {
		h, p, err := c.frame(5 * time.Second)
		if err != nil {
			c.t.Fatalf("want close %d, read: %v", code, err)
		}
		if h.OpCode != ws.OpClose {
			continue
		}
		got, _ := ws.ParseCloseFrameData(p)
		if got != code {
			c.t.Fatalf("want close code %d, got %d (%q)", code, got, p)
		}
		_ = wsutil.WriteClientMessage(c.conn, ws.OpClose, ws.NewCloseFrameBody(code, ""))
		c.expectEOF()
		return
	}
}

// expectEOF checks that the server closes the connection.
func (c *wsClient) expectEOF() {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, c.br); err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			c.t.Fatal("server did not close the connection")
		}
	}
}

// quiet checks that nothing arrives for d.
func (c *wsClient) quiet(d time.Duration) {
	c.t.Helper()
	h, p, err := c.frame(d)
	if err == nil {
		c.t.Fatalf("want nothing, got opcode %v %q", h.OpCode, p)
	}
}

func (c *wsClient) hello(userType, clientType string) {
	c.t.Helper()
	c.send(fmt.Sprintf(`{"type":"hello","user_type":%q,"client_type":%q}`, userType, clientType))
}

// session dials a session socket, checks the connected frame and says hello.
func (ts *testServer) session(t testing.TB, id, userType, clientType string) (*wsClient, string) {
	t.Helper()
	c := ts.dial(t, "/ws/session/"+id+"/", nil)
	m := c.expectType("connected")
	connID, _ := m["connection_id"].(string)
	if userType != "" {
		c.hello(userType, clientType)
		// The presence answer comes after the hello is processed, so the
		// socket is a member when session returns.
		c.send(`{"type":"presence"}`)
		c.expectType("presence")
	}
	return c, connID
}

// httpGet does a plain HTTP/1.1 request with net/http.
func (ts *testServer) http(t testing.TB, method, path string, hdr map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+ts.addr+path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// counterValue sums a counter family's series in reg.
func counterValue(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if c := m.GetCounter(); c != nil {
				sum += c.GetValue()
			}
		}
	}
	return sum
}
