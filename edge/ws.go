package edge

import (
	"io"
	"strings"
	"time"

	"github.com/gobwas/ws"
	"github.com/valyala/fasthttp"

	"github.com/wsedge/wsedge/edge/wsframe"
	"github.com/wsedge/wsedge/internal/apikey"
	"github.com/wsedge/wsedge/internal/ids"
)

// upgrade validates a WebSocket request (route, session id, draining, Origin,
// API key) and lets gobwas/ws check the handshake and write the 101.
func (s *Server) upgrade(c *conn, head []byte, path string) {
	ls := c.ls
	route, session, ok := parseWSPath(path)
	switch {
	case !ok || (route == routeChat && s.openChat == nil):
		s.replyError(c, "ws", fasthttp.StatusNotFound, "not_found", "no such route", true)
		return
	case route == routeSession && !ids.Valid(session):
		s.replyError(c, "ws", fasthttp.StatusBadRequest, "invalid_request", "session_id must be 1-128 characters of [A-Za-z0-9_.:-]", true)
		return
	case s.draining.Load():
		s.replyError(c, "ws", fasthttp.StatusServiceUnavailable, "unavailable", "server is draining; reconnect elsewhere", true)
		return
	case !s.admit(c, route, session):
		return
	case !s.cfg.Debug && !s.originOK(c, route, ls.hdr.Peek("Origin")):
		s.replyError(c, "ws", fasthttp.StatusForbidden, "forbidden", "origin not allowed", true)
		return
	case route == routeChat && !c.hasToken() && !apikey.Match(s.cfg.AuthAPIKey, ls.hdr.Peek("Authorization"), ls.uri.QueryArgs().Peek("authorization")):
		s.refuseUpgrade(c, route, reasonUnauthorized, ls.hdr.Peek("Origin"))
		s.replyError(c, "ws", fasthttp.StatusUnauthorized, "unauthorized", "missing or wrong API key", true)
		return
	}
	ls.rd.Reset(head)
	ls.out.Reset()
	_, err := (&ws.Upgrader{}).Upgrade(readWriter{&ls.rd, &ls.out})
	if err != nil {
		_, _ = c.gc.Write(ls.out.Bytes())
		s.metrics.httpRequests.WithLabelValues("ws", "400").Inc()
		c.closeTCP = true
		return
	}
	c.state = stWS
	c.route = route
	c.id = newConnID()
	c.session = session
	c.lastRx = time.Now().UnixNano()
	c.openedAt = c.lastRx
	s.wsOpen.Add(1)
	s.metrics.conns[routeHTTP].Dec()
	s.metrics.conns[route].Inc()
	s.metrics.connects.WithLabelValues(routeName(route)).Inc()
	switch {
	case route == routeSession && s.history != nil:
		// The connected frame carries the epoch: it follows the 101 once
		// history answers, and the socket's input waits for it.
		_, _ = c.gc.Write(ls.out.Bytes())
		s.startConnect(c)
	case route == routeSession:
		// The 101 and the connected frame leave in one write.
		head := ls.out.Len()
		out := wsframe.AppendFrame(ls.out.Bytes(), ws.OpText, connectedFrame(session, c.id, "", false))
		_, _ = c.gc.Write(out)
		c.ls.stats.framesOut++
		c.ls.stats.bytesOut += uint64(len(out) - head)
	case route == routeChat:
		_, _ = c.gc.Write(ls.out.Bytes())
		sink := &chatSink{c: c}
		sink.alive.Store(true)
		c.chat = s.openChat(c.id, sink)
	}
}

type readWriter struct {
	io.Reader
	io.Writer
}

// parseWSPath splits /ws/session/<id>/ (trailing slash optional) and /ws/chat/.
func parseWSPath(p string) (route uint8, session string, ok bool) {
	switch p {
	case "/ws/chat/", "/ws/chat":
		return routeChat, "", true
	}
	const prefix = "/ws/session/"
	if !strings.HasPrefix(p, prefix) {
		return 0, "", false
	}
	id := strings.TrimSuffix(p[len(prefix):], "/")
	if strings.Contains(id, "/") {
		return 0, "", false
	}
	return routeSession, id, true
}

// onWS reads every complete frame held for c.
func (s *Server) onWS(c *conn) {
	n := c.gc.InboundBuffered()
	if n == 0 || n < c.need {
		return
	}
	if c.resuming && s.holdInput(c, n) {
		return
	}
	buf, _ := c.gc.Peek(n)
	max := int64(s.cfg.MaxMessageSize)
	off := 0
	for off < len(buf) && (c.state == stWS || c.state == stClosing) && !c.closeTCP {
		f, fn, need, err := wsframe.Parse(buf[off:], max)
		if err == wsframe.ErrIncomplete {
			c.need = need
			if c.frameAt == 0 {
				c.frameAt = c.lastRx
			}
			break
		}
		if err != nil {
			s.violation(c, err)
			off = len(buf)
			break
		}
		off += fn
		c.need = 0
		c.frameAt = 0
		c.pingOut = false
		c.ls.stats.framesIn++
		c.ls.stats.bytesIn += uint64(fn)
		s.onFrame(c, f)
	}
	if off > 0 {
		_, _ = c.gc.Discard(off)
	}
	if !c.asm.InProgress() {
		c.asm.Release()
	}
}

func (s *Server) violation(c *conn, err error) {
	code, reason := wsframe.CloseProtocolError, "protocol error"
	if v, ok := err.(*wsframe.Error); ok {
		code, reason = v.Code, v.Reason
	}
	if c.state == stWS {
		c.closeWS(code, reason, false)
	}
	c.closeTCP = true
}

// rateLimited answers a frame over the socket's budget: rate_limited, at
// most once a second.
func (s *Server) rateLimited(c *conn) {
	s.metrics.rejected.WithLabelValues("rate_limited").Inc()
	if c.lastRx-c.limitedAt >= int64(time.Second) {
		c.limitedAt = c.lastRx
		c.send(errorFrame("rate_limited", "too many messages; this one was dropped"))
	}
}

func (s *Server) onFrame(c *conn, f wsframe.Frame) {
	op := f.Header.OpCode
	// Every frame but close takes from the socket's budget: a ping over it
	// gets no pong, a data frame over it drops its whole message.
	allowed := op == ws.OpClose || c.state != stWS || c.allow(c.lastRx, len(f.Payload))
	switch op {
	case ws.OpPing:
		if c.state != stWS {
			return
		}
		if !allowed {
			s.rateLimited(c)
			return
		}
		c.send(wsframe.AppendFrame(nil, ws.OpPong, f.Payload))
		return
	case ws.OpPong:
		return
	case ws.OpClose:
		code, _, err := wsframe.ParseClose(f.Payload)
		if err != nil {
			s.violation(c, err)
			return
		}
		if c.state == stWS {
			// Echo the peer's code, as RFC 6455 §5.5.1 suggests.
			reply := code
			if code == wsframe.CloseNoStatus {
				reply = wsframe.CloseNormal
			}
			c.closeWS(reply, "", false)
		}
		c.closeCode = int32(code)
		c.closeTCP = true
		return
	}
	if c.state != stWS {
		return // data after our close frame is ignored (RFC 6455 §1.4)
	}
	if !allowed {
		c.dropMsg = true
	}
	// The assembler still sees a dropped message's frames, so that the
	// fragmentation and UTF-8 rules hold for it too.
	op, msg, done, err := c.asm.Push(f, int64(s.cfg.MaxMessageSize))
	if err != nil {
		s.violation(c, err)
		return
	}
	if !done {
		if c.msgAt == 0 {
			c.msgAt = c.lastRx
		}
		return
	}
	c.msgAt = 0
	if c.dropMsg {
		c.dropMsg = false
		s.rateLimited(c)
		return
	}
	switch c.route {
	case routeSession:
		s.onSessionMessage(c, op, msg)
	case routeChat:
		if op == ws.OpText {
			if c.acc != nil && s.onChatRefresh(c, msg) {
				return
			}
			c.chat.OnText(msg)
		} else {
			c.chat.OnBinary()
		}
	}
}
