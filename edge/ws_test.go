package edge

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/valyala/fasthttp"
)

// masked compiles a client frame.
func masked(op ws.OpCode, fin bool, p []byte) []byte {
	return ws.MustCompileFrame(ws.MaskFrame(ws.NewFrame(op, fin, p)))
}

func TestProtocolViolations(t *testing.T) {
	t.Parallel()
	ts := startServer(t, func(c *Config) { c.MaxMessageSize = 1024 })
	withRsv := ws.MaskFrame(ws.NewTextFrame([]byte(`{}`)))
	withRsv.Header.Rsv = 4
	for _, tc := range []struct {
		name  string
		frame []byte
		code  ws.StatusCode
	}{
		{"unmasked", ws.MustCompileFrame(ws.NewTextFrame([]byte(`{}`))), 1002},
		{"rsv bits", ws.MustCompileFrame(withRsv), 1002},
		{"reserved data opcode", masked(ws.OpCode(3), true, nil), 1002},
		{"reserved control opcode", masked(ws.OpCode(0xB), true, nil), 1002},
		{"fragmented ping", masked(ws.OpPing, false, nil), 1002},
		{"long ping", masked(ws.OpPing, true, make([]byte, 126)), 1002},
		{"orphan continuation", masked(ws.OpContinuation, true, []byte("x")), 1002},
		{"invalid utf-8", masked(ws.OpText, true, []byte{0xff, 0xfe}), 1007},
		{"too big", masked(ws.OpText, true, make([]byte, 1025)), 1009},
		{"too big fragmented", append(masked(ws.OpText, false, make([]byte, 1000)), masked(ws.OpContinuation, true, make([]byte, 100))...), 1009},
		{"data inside fragmented", append(masked(ws.OpText, false, []byte("a")), masked(ws.OpText, true, []byte("b"))...), 1002},
		{"bad close code", masked(ws.OpClose, true, []byte{0x03, 0xe7}), 1002},
		{"one-byte close", masked(ws.OpClose, true, []byte{0x03}), 1002},
		{"close reason not utf-8", masked(ws.OpClose, true, []byte{0x03, 0xe8, 0xff}), 1007},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := ts.session(t, "v", "admin", "web")
			c.sendRaw(tc.frame)
			c.expectClose(tc.code)
		})
	}
}

func TestFragmentsPingAndClose(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	c, _ := ts.session(t, "f", "admin", "web")
	// A message in three fragments with a ping in between; a multi-byte rune
	// is split across fragments.
	msg := []byte(`{"type":"broadcast","msg":"héllo"}`)
	i := strings.Index(string(msg), "é") + 1
	c.sendRaw(masked(ws.OpText, false, msg[:i]))
	c.sendRaw(masked(ws.OpPing, true, []byte("p1")))
	c.sendRaw(masked(ws.OpContinuation, false, msg[i:i+3]))
	c.sendRaw(masked(ws.OpContinuation, true, msg[i+3:]))
	h, p, err := c.frame(5 * time.Second)
	if err != nil || h.OpCode != ws.OpPong || string(p) != "p1" {
		t.Fatalf("want pong p1, got %v %q %v", h.OpCode, p, err)
	}
	if m := c.expectType("session_message"); m["msg"] != "héllo" {
		t.Fatalf("reassembled %v", m)
	}
	// Frames split across many writes, byte by byte.
	for _, b := range masked(ws.OpText, true, []byte(`{"type":"ping-me"}`)) {
		c.sendRaw([]byte{b})
		time.Sleep(time.Millisecond)
	}
	c.expectType("echo")
	// Client-initiated close: the server echoes the code and closes TCP.
	c.sendRaw(masked(ws.OpClose, true, ws.NewCloseFrameBody(1000, "bye")))
	h, p, err = c.frame(5 * time.Second)
	if err != nil || h.OpCode != ws.OpClose {
		t.Fatalf("want close, got %v %v", h.OpCode, err)
	}
	if code, _ := ws.ParseCloseFrameData(p); code != 1000 {
		t.Fatalf("close code %d", code)
	}
	c.expectEOF()
}

func TestServerPingsIdleAndDropsDead(t *testing.T) {
	t.Parallel()
	ts := startServer(t, func(c *Config) {
		c.PingInterval = 200 * time.Millisecond
		c.PongTimeout = 300 * time.Millisecond
	})
	alive, _ := ts.session(t, "ping", "admin", "web")
	dead, _ := ts.session(t, "ping", "agent", "web")
	// alive answers pings; dead reads but never answers.
	for pings := 0; pings < 3; {
		h, p, err := alive.frame(10 * time.Second)
		if err != nil {
			t.Fatalf("alive after %d pings: %v", pings, err)
		}
		if h.OpCode == ws.OpPing {
			pings++
			_ = wsutil.WriteClientMessage(alive.conn, ws.OpPong, p)
		}
	}
	gotPing := false
	for {
		h, _, err := dead.frame(10 * time.Second)
		if err != nil {
			if !gotPing {
				t.Fatal("dead peer was never pinged")
			}
			break // dropped
		}
		if h.OpCode == ws.OpPing {
			gotPing = true
		}
	}
	alive.send(`{"type":"presence"}`)
	if m := alive.expectType("presence"); m["count"] != float64(1) {
		t.Fatalf("dead member still present: %v", m["count"])
	}
}

// A reader that never reads is closed at its outbound cap and does not hold up
// the others; the server's memory for it stays bounded by the cap.
func TestSlowConsumerClosed(t *testing.T) {
	// Not parallel: it moves 12 MB in lockstep and wants the CPU to itself.
	ts := startServer(t, func(c *Config) {
		c.OutboundCap = 64 << 10
		smallAnswers(c)
		c.CloseTimeout = 500 * time.Millisecond
		c.MessageRate = 0 // the sender sends 3,000 messages as fast as it can
		c.ByteRate = 0
	})
	stalled, _ := ts.session(t, "slow", "admin", "web")
	fast, _ := ts.session(t, "slow", "agent", "web")
	sender, _ := ts.session(t, "slow", "sender", "web")
	go func() { _, _ = io.Copy(io.Discard, sender.br) }()
	// Lockstep: the fast reader gets every message before the next is sent,
	// so only the stalled socket falls behind. 12 MB in all: more than the
	// stalled socket's kernel buffers plus its 64 KiB cap.
	payload := strings.Repeat("x", 4000)
	const n = 3000
	for i := 0; i < n; i++ {
		if err := wsutil.WriteClientText(sender.conn, []byte(`{"type":"broadcast","msg":"`+payload+`","data":`+fmt.Sprint(i)+`}`)); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		m := fast.expectType("session_message")
		if m["data"] != float64(i) {
			t.Fatalf("fast reader: message %d, got %v", i, m["data"])
		}
	}
	if got := counterValue(t, ts.reg, "wsedge_slow_consumer_closes_total"); got != 1 {
		t.Fatalf("slow consumer closes = %v, want 1", got)
	}
	// The stalled socket left the session at once.
	fast.send(`{"type":"presence"}`)
	if m := fast.expectType("presence"); m["count"] != float64(2) {
		t.Fatalf("presence count %v, want 2", m["count"])
	}
	// Reading it now yields what the kernel held, then a 1013 close frame if
	// it still fitted, and the end of the connection.
	var closeCode ws.StatusCode
	for {
		h, p, err := stalled.frame(10 * time.Second)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("stalled socket was never closed")
			}
			break
		}
		if h.OpCode == ws.OpClose {
			closeCode, _ = ws.ParseCloseFrameData(p)
			stalled.expectEOF()
			break
		}
	}
	if closeCode != 0 && closeCode != 1013 {
		t.Fatalf("stalled reader: close code %d, want 1013", closeCode)
	}
}

func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	ts := startServer(t, func(c *Config) { c.ReconnectJitter = 2 * time.Second })
	a, _ := ts.session(t, "g", "admin", "web")
	b := ts.dial(t, "/ws/session/g/", nil) // not hello'd: drained too
	b.expectType("connected")
	done := make(chan error, 1)
	go func() { done <- ts.srv.Shutdown(context.Background()) }()
	for _, c := range []*wsClient{a, b} {
		m := c.expectType("reconnect")
		ms, ok := m["after_ms"].(float64)
		if !ok || ms < 0 || ms > 2000 {
			t.Fatalf("reconnect %v", m)
		}
		c.expectClose(1001)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestHealthDrainingAndUpgradeRefused(t *testing.T) {
	t.Parallel()
	ts := startServer(t, func(c *Config) { c.DrainSpread = time.Second })
	keep, _ := ts.session(t, "d", "admin", "web") // keeps the drain going
	_ = keep
	go func() { _ = ts.srv.Shutdown(context.Background()) }()
	deadline := time.Now().Add(2 * time.Second)
	for !ts.srv.Draining() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if code, body := ts.http(t, "GET", "/health/", nil); code != 503 {
		t.Fatalf("health while draining: %d %s", code, body)
	}
	if _, err := ts.tryDial(t, "/ws/session/d/", nil); err == nil {
		t.Fatal("upgrade accepted while draining")
	}
}

func TestMaxConnections(t *testing.T) {
	t.Parallel()
	ts := startServer(t, func(c *Config) { c.MaxConnections = 3 })
	for i := 0; i < 3; i++ {
		ts.session(t, "m", "a", "b")
	}
	_, err := ts.tryDial(t, "/ws/session/m/", nil)
	if se, ok := err.(ws.StatusError); !ok || int(se) != 503 {
		t.Fatalf("4th connection: want 503, got %v", err)
	}
}

func TestHandshakeTimeoutAndLimits(t *testing.T) {
	t.Parallel()
	ts := startServer(t, func(c *Config) { c.HandshakeTimeout = 300 * time.Millisecond })
	// Slow client: a partial request head is dropped after the timeout.
	conn, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = conn.Write([]byte("GET /ws/session/1/ HTTP/1.1\r\nHost: x\r\n"))
	_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.Copy(io.Discard, conn); err != nil {
		t.Fatalf("slow handshake not closed: %v", err)
	}
	// A head over the limit: 431.
	conn2, _ := net.Dial("tcp", ts.addr)
	defer conn2.Close()
	_, _ = conn2.Write([]byte("GET /health/ HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 9000) + "\r\n\r\n"))
	resp, _ := bufio.NewReader(conn2).ReadString('\n')
	if !strings.Contains(resp, "431") {
		t.Fatalf("oversized head: %q", resp)
	}
	// A bad handshake (no Sec-WebSocket-Key): 400 from the upgrader.
	conn3, _ := net.Dial("tcp", ts.addr)
	defer conn3.Close()
	_, _ = conn3.Write([]byte("GET /ws/session/1/ HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n"))
	resp, _ = bufio.NewReader(conn3).ReadString('\n')
	if !strings.Contains(resp, "400") {
		t.Fatalf("bad handshake: %q", resp)
	}
}

func TestHTTPPipelining(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	conn, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = conn.Write([]byte("GET /health/ HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n"))
	_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	br := bufio.NewReader(conn)
	for i := 0; i < 2; i++ {
		line, err := br.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 200") {
			t.Fatalf("response %d: %q %v", i, line, err)
		}
		for {
			l, _ := br.ReadString('\n')
			if l == "\r\n" {
				break
			}
		}
		body := make([]byte, len(`{"status":"ok"}`))
		if _, err := io.ReadFull(br, body); err != nil || string(body) != `{"status":"ok"}` {
			t.Fatalf("body %d: %q", i, body)
		}
	}
}

// Abrupt disconnects (no close frame) leave no member behind, and the others
// keep receiving.
func TestAbruptCloses(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	keeper, _ := ts.session(t, "ab", "keeper", "web")
	for i := 0; i < 50; i++ {
		c := ts.dial(t, "/ws/session/ab/", nil)
		c.expectType("connected")
		c.hello("gone", "web")
		if i%2 == 0 {
			c.send(`{"type":"broadcast","msg":"bye"}`)
		}
		_ = c.conn.Close()
	}
	got := 0
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		keeper.send(`{"type":"presence"}`)
		m := keeper.next()
		if m["type"] == "session_message" {
			got++
			continue
		}
		if m["type"] == "presence" && m["count"] == float64(1) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	keeper.send(`{"type":"presence"}`)
	for {
		m := keeper.next()
		if m["type"] == "presence" {
			if m["count"] != float64(1) {
				b, _ := json.Marshal(m)
				t.Fatalf("presence after abrupt closes: %s", b)
			}
			break
		}
	}
}

// A socket that accepts no bytes for WriteTimeout is closed even while its
// queue is under the cap.
func TestWriteTimeout(t *testing.T) {
	ts := startServer(t, func(c *Config) {
		c.OutboundCap = 256 << 20
		c.WriteTimeout = 500 * time.Millisecond
		c.CloseTimeout = 300 * time.Millisecond
		// The sender must get its 16 MB through quickly; the byte budget
		// (1 MiB/s by default) would leave the stall to the kernel's buffer
		// sizes and the clock.
		c.ByteRate = 0
	})
	stalled, _ := ts.session(t, "wt", "admin", "web")
	sender, _ := ts.session(t, "wt", "sender", "web")
	go func() { _, _ = io.Copy(io.Discard, sender.br) }()
	// 16 MB: more than the stalled socket's kernel buffers, far under the cap.
	payload := strings.Repeat("x", 16<<10)
	for i := 0; i < 1000; i++ {
		if err := wsutil.WriteClientText(sender.conn, []byte(`{"type":"broadcast","msg":"`+payload+`"}`)); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for counterValue(t, ts.reg, "wsedge_slow_consumer_closes_total") < 1 {
		if time.Now().After(deadline) {
			t.Fatal("stalled socket not closed by the write timeout")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The stalled socket is gone; its connection ends once read.
	for {
		if _, _, err := stalled.frame(10 * time.Second); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("stalled socket was never closed")
			}
			break
		}
	}
}

// A client over its message rate has messages dropped, is told once a
// second, and stays connected; the bucket refills with time.
func TestMessageRateLimit(t *testing.T) {
	t.Parallel()
	ts := startServer(t, func(c *Config) { c.MessageRate = 20; c.MessageBurst = 5 })
	c, _ := ts.session(t, "rl", "admin", "web") // hello + presence: 2 of 5
	for i := 0; i < 10; i++ {
		c.send(fmt.Sprintf(`{"type":"e","n":%d}`, i))
	}
	// 3 echoes fit the burst; the 4th message gets one rate_limited answer.
	for i := 0; i < 3; i++ {
		if m := c.expectType("echo"); m["data"].(map[string]any)["n"] != float64(i) {
			t.Fatalf("echo %d: %v", i, m)
		}
	}
	c.expectError("rate_limited")
	c.quiet(100 * time.Millisecond)
	time.Sleep(200 * time.Millisecond) // 20/s: 4 messages' worth
	c.send(`{"type":"e","n":"again"}`)
	if m := c.expectType("echo"); m["data"].(map[string]any)["n"] != "again" {
		t.Fatalf("after refill: %v", m)
	}
	if got := counterValue(t, ts.reg, "wsedge_rejected_total"); got < 7 {
		t.Fatalf("rejected_total = %v, want at least 7 dropped messages", got)
	}
}

// API requests run off the loop; a body announced with "Expect:
// 100-continue" is asked for, read and handed over whole, and requests
// pipelined behind a slow one are answered in order.
func TestAPIRequests(t *testing.T) {
	t.Parallel()
	ts := startServerWith(t, nil, Deps{API: func(_ context.Context, ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/api/slow" {
			time.Sleep(200 * time.Millisecond)
		}
		ctx.SetContentType("text/plain")
		ctx.SetBody(append([]byte(string(ctx.Path())+":"), ctx.PostBody()...))
	}})
	conn, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	body := strings.Repeat("b", 2000)
	_, _ = conn.Write([]byte("POST /api/echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2000\r\n\r\n"))
	if line, _ := br.ReadString('\n'); !strings.HasPrefix(line, "HTTP/1.1 100") {
		t.Fatalf("want 100 Continue, got %q", line)
	}
	_, _ = br.ReadString('\n') // blank line after the 100
	_, _ = conn.Write([]byte(body))
	readResponse := func() string {
		t.Helper()
		var resp fasthttp.Response
		if err := resp.Read(br); err != nil {
			t.Fatalf("response: %v", err)
		}
		return string(resp.Body())
	}
	if got := readResponse(); got != "/api/echo:"+body {
		t.Fatalf("echo of a 100-continue body: %d bytes", len(got))
	}
	// Two pipelined requests: the slow one answers first.
	_, _ = conn.Write([]byte("POST /api/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nA" +
		"POST /api/fast HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nB"))
	if got := readResponse(); got != "/api/slow:A" {
		t.Fatalf("first pipelined answer %q", got)
	}
	if got := readResponse(); got != "/api/fast:B" {
		t.Fatalf("second pipelined answer %q", got)
	}
}
