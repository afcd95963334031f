// Package wsclient is the benchmarks' WebSocket client for load generation:
// one reader goroutine calls Next, any goroutine calls WriteText; frames are
// read into a reused buffer, so a steady stream costs no allocations.
package wsclient

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/gobwas/ws"
)

// Client is a minimal WebSocket client for load generation: one reader
// goroutine calls next, one writer goroutine calls writeText; frames are
// read into a reused buffer, so a steady stream costs no allocations.
type Client struct {
	nc   net.Conn
	br   *bufio.Reader
	mask [4]byte
	wbuf []byte
	rbuf []byte
	// ctl serialises pongs/close replies written by the reader with data
	// frames written by the writer goroutine.
	ctl chan struct{}
}

// ServerClosedError reports a close frame from the server.
type ServerClosedError struct{ Code ws.StatusCode }

func (e ServerClosedError) Error() string {
	return fmt.Sprintf("server closed the connection with %d", e.Code)
}

// dialWS connects to url from localIP (nil: any) and completes the upgrade.
func Dial(ctx context.Context, url string, localIP net.IP, timeout time.Duration) (*Client, error) {
	d := ws.Dialer{
		Timeout: timeout,
		NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			nd := net.Dialer{}
			if localIP != nil {
				nd.LocalAddr = &net.TCPAddr{IP: localIP}
				nd.Control = BindNoPort
			}
			return nd.DialContext(ctx, network, addr)
		},
	}
	nc, br, _, err := d.Dial(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", url, err)
	}
	if br == nil {
		br = bufio.NewReaderSize(nc, 2048)
	} else {
		// Frames that arrived with the 101 response sit in br; keep reading
		// through it rather than returning it to gobwas' pool.
		br = bufio.NewReaderSize(io.MultiReader(br, nc), 2048)
	}
	c := &Client{nc: nc, br: br, ctl: make(chan struct{}, 1)}
	_, _ = rand.Read(c.mask[:])
	c.ctl <- struct{}{}
	return c, nil
}

// ipBindAddressNoPort is Linux's IP_BIND_ADDRESS_NO_PORT, which the syscall
// package does not name.
const ipBindAddressNoPort = 24

// BindNoPort defers the choice of the source port from bind to connect, so a
// source address can reuse a port for a different destination and ports left
// in TIME_WAIT by an earlier run do not stall the bind.
func BindNoPort(_, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

func (c *Client) writeFrame(op ws.OpCode, p []byte) error {
	h := ws.Header{Fin: true, OpCode: op, Masked: true, Mask: c.mask, Length: int64(len(p))}
	<-c.ctl
	defer func() { c.ctl <- struct{}{} }()
	n := ws.HeaderSize(h)
	if cap(c.wbuf) < n+len(p) {
		c.wbuf = make([]byte, 0, n+len(p)+64)
	}
	w := sliceWriter{b: c.wbuf[:0]}
	if err := ws.WriteHeader(&w, h); err != nil {
		return err
	}
	start := len(w.b)
	w.b = append(w.b, p...)
	ws.Cipher(w.b[start:], c.mask, 0)
	c.wbuf = w.b
	_, err := c.nc.Write(w.b)
	return err
}

func (c *Client) WriteText(p []byte) error { return c.writeFrame(ws.OpText, p) }

// Conn is the underlying socket (deadlines, an abrupt Close).
func (c *Client) Conn() net.Conn { return c.nc }

// close sends a normal close frame and closes the socket without waiting
// for the server's reply.
func (c *Client) Close() {
	_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	_ = c.writeFrame(ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
	_ = c.nc.Close()
}

// next returns the next data message. The payload is valid until the next
// call. Pings are answered; a close frame yields ServerClosedError.
func (c *Client) Next() (ws.OpCode, []byte, error) {
	var op ws.OpCode
	msg := c.rbuf[:0]
	for {
		h, err := ws.ReadHeader(c.br)
		if err != nil {
			return 0, nil, err
		}
		if h.Length > 64<<20 {
			return 0, nil, errors.New("frame larger than 64 MiB")
		}
		start := len(msg)
		if h.OpCode.IsControl() {
			var ctl [125]byte
			p := ctl[:h.Length]
			if _, err := io.ReadFull(c.br, p); err != nil {
				return 0, nil, err
			}
			switch h.OpCode {
			case ws.OpPing:
				if err := c.writeFrame(ws.OpPong, p); err != nil {
					return 0, nil, err
				}
			case ws.OpClose:
				code, _ := ws.ParseCloseFrameData(p)
				return 0, nil, ServerClosedError{Code: code}
			}
			continue
		}
		if h.OpCode != ws.OpContinuation {
			op = h.OpCode
		}
		need := start + int(h.Length)
		if cap(msg) < need {
			nm := make([]byte, start, need*2)
			copy(nm, msg)
			msg = nm
		}
		msg = msg[:need]
		if _, err := io.ReadFull(c.br, msg[start:]); err != nil {
			return 0, nil, err
		}
		if h.Masked {
			ws.Cipher(msg[start:], h.Mask, 0)
		}
		if h.Fin {
			c.rbuf = msg
			return op, msg, nil
		}
	}
}

// nextText returns the next text message, failing on anything else.
func (c *Client) NextText(timeout time.Duration) ([]byte, error) {
	if timeout > 0 {
		_ = c.nc.SetReadDeadline(time.Now().Add(timeout))
		defer c.nc.SetReadDeadline(time.Time{})
	}
	op, p, err := c.Next()
	if err != nil {
		return nil, err
	}
	if op != ws.OpText {
		return nil, fmt.Errorf("got opcode %v, want text", op)
	}
	return p, nil
}

type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}
