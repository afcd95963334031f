package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// event is one thing a client lived through, for the rates in the report.
type event struct {
	At   time.Time
	Kind string // hint (told to reconnect), back (reconnected after a hint), drop (closed without a hint)
	Pod  string
	// Late: for back, how long after hint time + after_ms the new socket
	// was greeted (negative: early, which cannot happen: the client waits).
	Late time.Duration
}

type journal struct {
	mu     sync.Mutex
	events []event
}

func (j *journal) add(e event) {
	j.mu.Lock()
	j.events = append(j.events, e)
	j.mu.Unlock()
}

func (j *journal) between(from, to time.Time, kind string) []event {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []event
	for _, e := range j.events {
		if e.Kind == kind && !e.At.Before(from) && e.At.Before(to) {
			out = append(out, e)
		}
	}
	return out
}

// wsClient is a session listener that follows the protocol's reconnect
// rules (docs/PROTOCOL.md §1.7, §9): on a reconnect hint it waits after_ms,
// connects through the Service again and resumes with since/epoch.
type wsClient struct {
	id      int
	session string
	f       *fleet
	j       *journal
	pub     bool // the publisher: sends a broadcast every tick

	mu       sync.Mutex
	conn     net.Conn
	pod      string
	epoch    string
	lastSeq  int64
	received int64
	gaps     int64 // missing seqs seen as jumps
	dupes    int64
	failed   []string // recovery_failed reasons
	greeted  bool
	leaving  atomic.Bool
	paused   atomic.Bool // the publisher got a reconnect hint on this socket
	sent     atomic.Int64
	sendErrs atomic.Int64
	done     chan struct{}
}

func newClient(id int, session string, f *fleet, j *journal) *wsClient {
	return &wsClient{id: id, session: session, f: f, j: j, done: make(chan struct{})}
}

func (c *wsClient) state() (pod string, last, received, gaps, dupes int64, failed []string, greeted bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pod, c.lastSeq, c.received, c.gaps, c.dupes, append([]string(nil), c.failed...), c.greeted
}

// leave closes the socket for good (a user going away).
func (c *wsClient) leave() {
	c.leaving.Store(true)
	c.mu.Lock()
	if c.conn != nil {
		_ = wsutil.WriteClientMessage(c.conn, ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, "bye"))
		_ = c.conn.Close()
	}
	c.mu.Unlock()
	<-c.done
}

func (c *wsClient) run(ctx context.Context) {
	defer close(c.done)
	var hintAt time.Time
	var hintMS int
	for ctx.Err() == nil && !c.leaving.Load() {
		addr, pod, ok := c.f.choose()
		if !ok {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		conn, br, _, err := ws.Dialer{Timeout: 5 * time.Second}.Dial(ctx, "ws://"+addr+"/ws/session/"+c.session+"/")
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if br != nil {
			// The server's first frames may have come with the handshake.
			conn = bufConn{Conn: conn, r: br}
		}
		c.mu.Lock()
		c.conn, c.pod, c.greeted = conn, pod, false
		c.mu.Unlock()
		gotHint, gotHintMS, err := c.serve(ctx, conn, hintAt, hintMS)
		_ = conn.Close()
		c.mu.Lock()
		c.conn = nil
		c.mu.Unlock()
		if c.leaving.Load() || ctx.Err() != nil {
			return
		}
		hintAt, hintMS = gotHint, gotHintMS
		if hintAt.IsZero() {
			// Closed without a hint (refused while the pod drained its
			// listener, or a crash): back off briefly as §9 says.
			c.j.add(event{At: time.Now(), Kind: "drop", Pod: pod})
			time.Sleep(200 * time.Millisecond)
			continue
		}
		// §9: wait after_ms from the hint, then reconnect.
		time.Sleep(time.Until(hintAt.Add(time.Duration(hintMS) * time.Millisecond)))
		_ = err
	}
}

// serve greets (resuming when it has a seq) and reads until the socket
// ends; it returns the reconnect hint it got, if any.
func (c *wsClient) serve(ctx context.Context, conn net.Conn, prevHint time.Time, prevMS int) (time.Time, int, error) {
	var hintAt time.Time
	var hintMS int
	// connected
	var wmu sync.Mutex
	data, err := readServerText(conn, &wmu)
	if err != nil {
		return hintAt, 0, err
	}
	var first struct {
		Type  string `json:"type"`
		Epoch string `json:"epoch"`
	}
	if err := json.Unmarshal(data, &first); err != nil || first.Type != "connected" {
		return hintAt, 0, fmt.Errorf("first frame %s", data)
	}
	c.mu.Lock()
	hello := map[string]any{"type": "hello", "user_type": "listener", "client_type": "e2e"}
	if c.pub {
		hello["user_type"] = "publisher"
	}
	if c.epoch != "" {
		hello["since"], hello["epoch"] = c.lastSeq, c.epoch
	}
	if c.epoch == "" {
		c.epoch = first.Epoch
	}
	c.mu.Unlock()
	b, _ := json.Marshal(hello)
	if err := wsutil.WriteClientText(conn, b); err != nil {
		return hintAt, 0, err
	}
	c.mu.Lock()
	c.greeted = true
	pod := c.pod
	c.mu.Unlock()
	if !prevHint.IsZero() {
		c.j.add(event{At: time.Now(), Kind: "back", Pod: pod, Late: time.Since(prevHint.Add(time.Duration(prevMS) * time.Millisecond))})
	}
	stop := make(chan struct{})
	defer close(stop)
	if c.pub {
		c.paused.Store(false)
		go c.publish(conn, &wmu, stop)
	}
	for {
		data, err := readServerText(conn, &wmu)
		if err != nil {
			var ce wsutil.ClosedError
			if errors.As(err, &ce) || !hintAt.IsZero() {
				return hintAt, hintMS, nil
			}
			return hintAt, hintMS, err
		}
		var m struct {
			Type    string `json:"type"`
			Seq     int64  `json:"seq"`
			AfterMS int    `json:"after_ms"`
			Epoch   string `json:"epoch"`
			Reason  string `json:"reason"`
			Error   string `json:"error"`
		}
		if err := json.Unmarshal(data, &m); err != nil {
			return hintAt, hintMS, err
		}
		switch m.Type {
		case "session_message":
			c.mu.Lock()
			switch {
			case m.Seq == c.lastSeq+1 || c.lastSeq == 0:
				c.received++
			case m.Seq <= c.lastSeq:
				c.dupes++
			default:
				c.gaps += m.Seq - c.lastSeq - 1
				c.received++
			}
			if m.Seq > c.lastSeq {
				c.lastSeq = m.Seq
			}
			c.mu.Unlock()
		case "recovery_failed":
			c.mu.Lock()
			c.failed = append(c.failed, m.Reason)
			if m.Epoch != "" {
				c.epoch = m.Epoch
			}
			c.lastSeq = m.Seq
			c.mu.Unlock()
		case "reconnect":
			hintAt, hintMS = time.Now(), m.AfterMS
			if c.pub {
				// §9: a client told to go stops sending on this socket.
				c.paused.Store(true)
			}
			c.j.add(event{At: hintAt, Kind: "hint", Pod: pod})
		case "error":
			if m.Error == "broadcast_failed" {
				c.sendErrs.Add(1)
			}
		}
	}
}

// publish sends one broadcast every 50 ms (20 msg/s) until stop.
func (c *wsClient) publish(conn net.Conn, wmu *sync.Mutex, stop chan struct{}) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if c.leaving.Load() || c.paused.Load() {
			return
		}
		n := c.sent.Add(1)
		b := fmt.Appendf(nil, `{"type":"broadcast","msg":"tick","data":{"n":%d}}`, n)
		wmu.Lock()
		err := wsutil.WriteClientText(conn, b)
		wmu.Unlock()
		if err != nil {
			c.sent.Add(-1)
			return
		}
	}
}

// readServerText reads the next text message, answering pings (under the
// write lock, since the publisher writes too).
func readServerText(conn net.Conn, wmu *sync.Mutex) ([]byte, error) {
	for {
		h, err := ws.ReadHeader(conn)
		if err != nil {
			return nil, err
		}
		payload := make([]byte, h.Length)
		if _, err := ioReadFull(conn, payload); err != nil {
			return nil, err
		}
		if h.Masked {
			ws.Cipher(payload, h.Mask, 0)
		}
		switch h.OpCode {
		case ws.OpText:
			if !h.Fin {
				return nil, errors.New("fragmented frames are not expected here")
			}
			return payload, nil
		case ws.OpPing:
			wmu.Lock()
			err := wsutil.WriteClientMessage(conn, ws.OpPong, payload)
			wmu.Unlock()
			if err != nil {
				return nil, err
			}
		case ws.OpClose:
			code, reason := ws.ParseCloseFrameData(payload)
			return nil, wsutil.ClosedError{Code: code, Reason: reason}
		}
	}
}

// bufConn reads what the handshake's reader buffered first.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (b bufConn) Read(p []byte) (int, error) { return b.r.Read(p) }

func ioReadFull(conn net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := conn.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
