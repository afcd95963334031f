package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/wsedge/wsedge/internal/testenv"
)

// SIGTERM on the real binary: /health/ turns 503, a chat turn already
// streaming finishes with its own end, then every socket gets a reconnect
// hint and close 1001, and the process exits 0.
func TestSIGTERMDrain(t *testing.T) {
	bin := e2eBinary(t)
	addr := testenv.FreeAddr(t)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "DEBUG=1", "LOG_FORMAT=text", "ADDR="+addr, "ADMIN_ADDR=127.0.0.1:0",
		"LOCAL_MODEL_DELAY=40ms", "DRAIN_SPREAD=200ms", "DRAIN_TIMEOUT=20s", "RECONNECT_JITTER=1s")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	deadline := time.Now().Add(15 * time.Second)
	for {
		if resp, err := http.Get("http://" + addr + "/health/"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("server did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	dial := func(path string) *wsConn {
		conn, br, _, err := ws.Dial(context.Background(), "ws://"+addr+path)
		if err != nil {
			t.Fatalf("dial %s: %v", path, err)
		}
		t.Cleanup(func() { conn.Close() })
		c := &wsConn{t: t, conn: conn, r: conn}
		if br != nil {
			c.r = io.MultiReader(br, conn)
		}
		return c
	}
	sess := dial("/ws/session/drain/")
	sess.expect("connected")
	chat := dial("/ws/chat/")
	chat.send(`{"type":"chat","message":"tell me something long","thread_id":"drain"}`)
	chat.expect("session_started")
	chat.expect("token")

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Health goes 503 at once while the turn is still streaming.
	deadline = time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/health/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 503 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("/health/ did not turn 503 after SIGTERM")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The turn ends normally: tokens, then end, no upstream_error.
	for {
		m := chat.next()
		if m["type"] == "end" {
			break
		}
		if m["type"] != "token" {
			t.Fatalf("turn interrupted by the drain: %v", m)
		}
	}
	for _, c := range []*wsConn{chat, sess} {
		m := c.expect("reconnect")
		if ms, ok := m["after_ms"].(float64); !ok || ms < 0 || ms > 1000 {
			t.Fatalf("reconnect %v", m)
		}
		if code := c.closeCode(); code != 1001 {
			t.Fatalf("close %d, want 1001", code)
		}
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("process did not exit after the drain")
	}
}

// wsConn is a minimal client that sees every frame.
type wsConn struct {
	t    *testing.T
	conn net.Conn
	r    io.Reader
}

func (c *wsConn) send(s string) {
	c.t.Helper()
	if err := wsutil.WriteClientText(c.conn, []byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

func (c *wsConn) frame() (ws.Header, []byte) {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	h, err := ws.ReadHeader(c.r)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(c.r, p); err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return h, p
}

// next returns the next text message; a close frame fails the test.
func (c *wsConn) next() map[string]any {
	c.t.Helper()
	for {
		h, p := c.frame()
		switch h.OpCode {
		case ws.OpText:
			var m map[string]any
			if err := json.Unmarshal(p, &m); err != nil {
				c.t.Fatalf("not JSON: %q", p)
			}
			return m
		case ws.OpClose:
			code, reason := ws.ParseCloseFrameData(p)
			c.t.Fatalf("unexpected close %d %q", code, reason)
		}
	}
}

func (c *wsConn) expect(typ string) map[string]any {
	c.t.Helper()
	m := c.next()
	if m["type"] != typ {
		c.t.Fatalf("want %q, got %v", typ, m)
	}
	return m
}

// closeCode reads up to the close frame and returns its code.
func (c *wsConn) closeCode() ws.StatusCode {
	c.t.Helper()
	for {
		h, p := c.frame()
		if h.OpCode == ws.OpClose {
			code, _ := ws.ParseCloseFrameData(p)
			_ = wsutil.WriteClientMessage(c.conn, ws.OpClose, ws.NewCloseFrameBody(code, ""))
			return code
		}
	}
}
