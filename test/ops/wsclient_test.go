package ops

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// wsConn is a test client: a real socket, frames read one at a time.
type wsConn struct {
	t    *testing.T
	conn net.Conn
	rw   io.ReadWriter
}

type readWriter struct {
	io.Reader
	io.Writer
}

// dialWS opens a WebSocket with the Origin a same-origin browser would send.
func dialWS(t *testing.T, s *server, path string) *wsConn {
	t.Helper()
	d := ws.Dialer{Header: ws.HandshakeHeaderHTTP(http.Header{"Origin": {"http://" + s.Addr}}), Timeout: 10 * time.Second}
	conn, br, _, err := d.Dial(context.Background(), s.WS(path))
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	t.Cleanup(func() { conn.Close() })
	var r io.Reader = conn
	if br != nil {
		r = io.MultiReader(br, conn)
	}
	return &wsConn{t: t, conn: conn, rw: readWriter{r, conn}}
}

func (c *wsConn) send(text string) {
	c.t.Helper()
	if err := wsutil.WriteClientText(c.conn, []byte(text)); err != nil {
		c.t.Fatalf("send %s: %v", text, err)
	}
}

func (c *wsConn) sendBinary(b []byte) {
	c.t.Helper()
	if err := wsutil.WriteClientBinary(c.conn, b); err != nil {
		c.t.Fatalf("send binary: %v", err)
	}
}

// next returns the next text frame as raw JSON and its decoded object, or
// the close error (wsutil.ClosedError) when the server closed.
func (c *wsConn) next() (json.RawMessage, map[string]any, error) {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	b, op, err := wsutil.ReadServerData(c.rw)
	if err != nil {
		return nil, nil, err
	}
	if op != ws.OpText {
		c.t.Fatalf("server sent opcode %v; only text frames are allowed", op)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		c.t.Fatalf("server frame %q is not a JSON object: %v", b, err)
	}
	return b, m, nil
}

// until reads frames until one of type typ, returning it and those before.
func (c *wsConn) until(typ string) (map[string]any, []map[string]any) {
	c.t.Helper()
	var before []map[string]any
	for {
		raw, m, err := c.next()
		if err != nil {
			c.t.Fatalf("waiting for %q: %v (frames so far: %v)", typ, err, before)
		}
		_ = raw
		if m["type"] == typ {
			return m, before
		}
		before = append(before, m)
	}
}

// closeCode reads until the server closes and returns its close code.
func (c *wsConn) closeCode() ws.StatusCode {
	c.t.Helper()
	for {
		_, _, err := c.next()
		var ce wsutil.ClosedError
		if errors.As(err, &ce) {
			return ce.Code
		}
		if err != nil {
			c.t.Fatalf("waiting for close: %v", err)
		}
	}
}
