package edge

import (
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"github.com/wsedge/wsedge/edge/wsframe"
	"github.com/wsedge/wsedge/internal/backoff"
	"github.com/wsedge/wsedge/internal/wire"
)

// Connection states.
const (
	stHTTP    uint8 = iota // reading HTTP requests
	stWS                   // WebSocket open
	stClosing              // our close frame sent; waiting for the peer's
	stClosed               // gone; late mailbox items must ignore it
)

// Routes.
const (
	routeHTTP uint8 = iota
	routeSession
	routeChat
)

func routeName(r uint8) string {
	switch r {
	case routeSession:
		return "session"
	case routeChat:
		return "chat"
	}
	return "http"
}

// conn is the edge's state for one socket. It is owned by its event loop:
// only that loop's goroutine reads or writes it (other goroutines post to the
// loop). It is kept small because idle sockets are most of the memory.
type conn struct {
	gc gnet.Conn
	ls *loopState

	state     uint8
	route     uint8
	hello     bool
	pingOut   bool // a ping is unanswered
	isDirty   bool // in ls.dirty
	busy      bool // an HTTP API request is in flight; pipelined ones wait
	closeTCP  bool // close the TCP connection when the current callback ends
	continued bool // "100 Continue" sent for the request being read
	dropMsg   bool // a frame of the message being assembled was over budget
	paused    bool // HTTP answers over OutboundCap: no request is read until they drain
	resuming  bool // in ls.resume: history work pending (resume.go)

	idx  int32 // position in ls.conns
	sidx int32 // position in ls.sessions[session]

	closeCode int32 // close code sent or received, for metrics

	// Token buckets of MessageRate (tokens in thousandths of a frame) and
	// ByteRate (bytes), refilled from the time of the last refill.
	tokens     int64
	byteTokens int64
	refilledAt int64
	limitedAt  int64 // last rate_limited answer, to send at most one a second

	openedAt   int64 // Unix nanoseconds
	lastRx     int64
	reqStart   int64 // first byte of the HTTP request being read; 0: idle
	pingAt     int64
	closeAt    int64
	stallSince int64
	// Since when a frame has been partly received, and since when a
	// fragmented message has been in progress (0: none); the sweeper closes
	// the socket when either is older than FrameTimeout. Unlike lastRx, a
	// trickled byte does not move them.
	frameAt int64
	msgAt   int64
	lastOut int

	need int // bytes the next frame needs before parsing is worth trying

	asm wsframe.Assembler

	pending      [][]byte
	pendingBytes int

	id          string // 32 hex characters
	session     string
	userType    string // JSON-encoded, quotes included
	clientType  string // JSON-encoded
	connectedAt int64  // Unix seconds

	chat ChatConn

	acc *access // nil unless tokens or limits are configured
}

func newConnID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics instead)
	return hex.EncodeToString(b[:])
}

// send queues a frame; it is written when the current callback ends. It
// reports false when the socket no longer takes frames.
func (c *conn) send(frame []byte) bool {
	if c.state != stWS {
		return false
	}
	c.pending = append(c.pending, frame)
	c.pendingBytes += len(frame)
	c.ls.stats.framesOut++
	c.ls.stats.bytesOut += uint64(len(frame))
	if !c.isDirty {
		c.isDirty = true
		c.ls.dirty = append(c.ls.dirty, c)
	}
	return true
}

// flush writes queued frames with one writev, enforcing the outbound cap.
func (c *conn) flush() {
	c.isDirty = false
	if len(c.pending) == 0 {
		return
	}
	if c.state == stClosed {
		c.dropPending()
		return
	}
	if c.state == stWS && c.gc.OutboundBuffered()+c.pendingBytes > c.ls.srv.cfg.OutboundCap {
		c.dropPending()
		c.ls.srv.metrics.slowConsumers.WithLabelValues("outbound_cap").Inc()
		c.closeWS(wsframe.CloseTryAgainLater, "outbound queue full", true)
		return
	}
	// A write error needs no handling here: gnet closes the socket itself
	// and calls OnClose. gnet hands Writev's slices to one writev(2), which
	// fails with EINVAL above IOV_MAX (1,024) iovecs, and gnet then closes
	// the socket: a burst of many small frames is written in batches. After
	// the first batch the socket is usually full or the rest is queued in
	// gnet's buffer, so later batches cost a copy, not a syscall.
	if len(c.pending) == 1 {
		_, _ = c.gc.Write(c.pending[0])
	} else {
		for rest := c.pending; len(rest) > 0 && c.state != stClosed; {
			n := min(len(rest), maxIOV)
			_, _ = c.gc.Writev(rest[:n])
			rest = rest[n:]
		}
	}
	c.dropPending()
}

// maxIOV is IOV_MAX on Linux and the BSDs: the most slices one writev takes.
const maxIOV = 1024

func (c *conn) dropPending() {
	for i := range c.pending {
		c.pending[i] = nil
	}
	c.pending = c.pending[:0]
	c.pendingBytes = 0
	if cap(c.pending) > 16 {
		c.pending = nil
	}
}

// hintAndClose sends c a reconnect hint, jittered in [0, jitter] so that
// clients closed together do not come back together, then closes it with
// code. Drains and sheds (1001) and overload (1013) end sockets this way.
func (c *conn) hintAndClose(jitter time.Duration, code ws.StatusCode, reason string) {
	if c.state != stWS {
		return
	}
	c.send(wsframe.Text(wire.Reconnect(backoff.Spread(0, jitter).Milliseconds())))
	c.closeWS(code, reason, false)
}

// closeWS starts the closing handshake: the close frame goes after what is
// already queued (or, when force is set because the socket is over its cap,
// in place of it), the socket leaves its session, and the sweeper drops the
// TCP connection if the peer does not answer within CloseTimeout.
func (c *conn) closeWS(code ws.StatusCode, reason string, force bool) {
	if c.state != stWS {
		return
	}
	c.leaveSession()
	frame := wsframe.CloseFrame(code, reason)
	c.closeCode = int32(code)
	c.closeAt = time.Now().UnixNano()
	if force {
		c.dropPending()
		c.state = stClosing
		_, _ = c.gc.Write(frame)
		return
	}
	c.send(frame)
	c.state = stClosing
}

// dropTCP closes the TCP connection from the loop. Inside OnTraffic the
// handler returns gnet.Close instead (closeTCP), since gnet still uses the
// connection after the callback.
func (c *conn) dropTCP() {
	if c.state == stClosed {
		return
	}
	_ = c.ls.el.Close(c.gc)
}

// leaveSession removes a hello'd socket from the hub and presence; idempotent.
func (c *conn) leaveSession() {
	if !c.hello {
		return
	}
	c.hello = false
	s := c.ls.srv
	if c.ls.leave(c) {
		s.hub.remove(c.session, c.ls)
	}
	if err := s.presence.Leave(presenceRef(c)); err != nil {
		s.log.Warn("presence leave", "session_id", c.session, "connection_id", c.id, "err", err)
	}
}

// allow takes one frame of n payload bytes from c's buckets; false when
// either is empty. Every frame but close counts, control frames included, so
// that pings and empty continuations cannot bypass the budget.
func (c *conn) allow(now int64, n int) bool {
	cfg := &c.ls.srv.cfg
	if cfg.MessageRate <= 0 && cfg.ByteRate <= 0 {
		return true
	}
	if c.refilledAt == 0 {
		c.tokens = int64(cfg.MessageBurst) * 1000
		c.byteTokens = int64(cfg.ByteBurst)
		c.refilledAt = now
	}
	elapsed := now - c.refilledAt
	c.refilledAt = now
	ok := true
	if cfg.MessageRate > 0 {
		capacity := int64(cfg.MessageBurst) * 1000
		// MessageRate frames a second are MessageRate/1e6 thousandths a
		// nanosecond; a long silence refills the bucket, no more.
		e := min(elapsed, int64(time.Minute))
		c.tokens = min(capacity, c.tokens+e*int64(cfg.MessageRate)/1e6)
		ok = c.tokens >= 1000
	}
	if cfg.ByteRate > 0 {
		capacity := int64(cfg.ByteBurst)
		// Bounded by the time that fills the bucket, so that the product
		// cannot overflow (ByteBurst ≤ 1 GiB).
		e := min(elapsed, capacity*int64(time.Second)/int64(cfg.ByteRate)+1)
		c.byteTokens = min(capacity, c.byteTokens+e*int64(cfg.ByteRate)/int64(time.Second))
		ok = ok && c.byteTokens >= int64(n)
	}
	if !ok {
		return false
	}
	if cfg.MessageRate > 0 {
		c.tokens -= 1000
	}
	if cfg.ByteRate > 0 {
		c.byteTokens -= int64(n)
	}
	return true
}
