package edge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"time"

	"github.com/gobwas/ws"

	"github.com/wsedge/wsedge/edge/broker"
	"github.com/wsedge/wsedge/edge/presence"
	"github.com/wsedge/wsedge/edge/wsframe"
	"github.com/wsedge/wsedge/internal/wire"
)

// maxTypeLen caps user_type and client_type (PROTOCOL.md §1).
const maxTypeLen = 64

// clientMessage holds the fields of a session message the edge looks at.
// Values stay raw so that broadcast msg/data and echo pass through untouched.
type clientMessage struct {
	Type, UserType, ClientType, Msg, Data, Limit json.RawMessage
	Since, Epoch                                 json.RawMessage // hello resuming a session (resume.go)
}

// errorFrame is an error frame, framed.
func errorFrame(code, msg string) []byte { return wsframe.Text(wire.ErrorFrame(code, msg)) }

// Kinds of session messages.
const (
	kindInvalidJSON = iota
	kindBinary
	kindOther // any valid JSON that is not one of the types below
	kindHello
	kindPresence
	kindBroadcast
)

// decodeSessionMessage classifies a complete client message.
func decodeSessionMessage(op ws.OpCode, msg []byte) (int, clientMessage) {
	var m clientMessage
	if op != ws.OpText {
		return kindBinary, m
	}
	if !json.Valid(msg) {
		return kindInvalidJSON, m
	}
	trimmed := bytes.TrimLeft(msg, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return kindOther, m
	}
	// A map, not a struct: encoding/json matches struct fields without
	// regard to case, and "TYPE" is not "type" for the original server.
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(msg, &fields); err != nil {
		return kindOther, m
	}
	m = clientMessage{Type: fields["type"], UserType: fields["user_type"], ClientType: fields["client_type"],
		Msg: fields["msg"], Data: fields["data"], Limit: fields["limit"], Since: fields["since"], Epoch: fields["epoch"]}
	var t string
	if json.Unmarshal(m.Type, &t) != nil {
		return kindOther, m
	}
	switch t {
	case "hello":
		return kindHello, m
	case "presence":
		return kindPresence, m
	case "broadcast":
		return kindBroadcast, m
	}
	return kindOther, m
}

func (s *Server) onSessionMessage(c *conn, op ws.OpCode, msg []byte) {
	kind, m := decodeSessionMessage(op, msg)
	if !c.hello {
		s.beforeHello(c, kind, m)
		return
	}
	switch kind {
	case kindBinary:
		c.send(errorFrame("text_required", "send JSON text frames"))
	case kindInvalidJSON:
		c.send(errorFrame("invalid_json", "message is not valid JSON"))
	case kindHello:
		c.send(errorFrame("hello_already_received", "hello was already received on this connection"))
	case kindPresence:
		limit, ok := presenceLimit(m.Limit, s.cfg.PresenceMaxMembers)
		if !ok {
			c.send(errorFrame("invalid_request", "presence limit must be a positive integer"))
			return
		}
		s.queryPresence(c, limit)
	case kindBroadcast:
		s.broadcast(c, m)
	default:
		if s.onRefresh(c, m, msg) {
			return
		}
		c.send(wsframe.Text(wire.AppendEcho(make([]byte, 0, len(msg)+24), msg)))
	}
}

// beforeHello: the first message must be a valid hello; anything else gets an
// error frame and close 4001.
func (s *Server) beforeHello(c *conn, kind int, m clientMessage) {
	refuse := func(code, msg string) {
		c.send(errorFrame(code, msg))
		c.closeWS(wsframe.CloseHelloRequired, "hello required", false)
	}
	switch kind {
	case kindBinary:
		refuse("text_required", "send JSON text frames; the first must be a hello")
		return
	case kindInvalidJSON:
		refuse("invalid_json", "message is not valid JSON; the first must be a hello")
		return
	case kindHello:
	default:
		refuse("hello_required", `the first message must be {"type":"hello","user_type":"..."}`)
		return
	}
	var userType, clientType string
	clientTypeSet := len(m.ClientType) > 0 && string(m.ClientType) != "null"
	// Whitespace only is empty, as for the original (it strips user_type).
	if json.Unmarshal(m.UserType, &userType) != nil || strings.TrimSpace(userType) == "" || len(userType) > maxTypeLen {
		refuse("user_type_required", "hello needs user_type: a non-empty string of at most 64 bytes")
		return
	}
	if len(m.ClientType) > 0 && string(m.ClientType) != "null" {
		if json.Unmarshal(m.ClientType, &clientType) != nil || len(clientType) > maxTypeLen {
			refuse("hello_required", "client_type must be a string of at most 64 bytes")
			return
		}
	}
	code, why, typ := s.checkHello(c, userType, clientType, clientTypeSet)
	if code != "" {
		refuse(code, why)
		return
	}
	clientType = typ
	var since uint64
	var epoch string
	resume := false
	if s.history != nil {
		var ok bool
		if since, epoch, resume, ok = parseResume(m.Since, m.Epoch); !ok {
			refuse("hello_required", "since must be a whole number from 0 to 2^53-1, with epoch the non-empty string from connected")
			return
		}
	}
	ut, _ := json.Marshal(userType)
	ct, _ := json.Marshal(clientType)
	c.userType, c.clientType = string(ut), string(ct)
	c.connectedAt = time.Now().Unix()
	c.hello = true
	if c.ls.join(c) {
		if err := s.hub.add(c.session, c.ls); err != nil {
			s.log.Warn("broker subscribe", "session_id", c.session, "err", err)
		}
	}
	err := s.presence.Join(presence.Member{
		SessionID: c.session, ConnectionID: c.id, UserType: userType, ClientType: clientType,
		ConnectedAt: c.connectedAt, LastSeen: c.connectedAt,
	})
	if err != nil {
		s.log.Warn("presence join", "session_id", c.session, "connection_id", c.id, "err", err)
	}
	switch {
	case resume:
		s.startResume(c, since, epoch)
	case s.history != nil:
		s.startLive(c)
	}
}

func presenceRef(c *conn) presence.Ref {
	return presence.Ref{SessionID: c.session, ConnectionID: c.id}
}

// broadcast publishes a session_message; the sender receives it too, through
// the hub, like every other member.
func (s *Server) broadcast(c *conn, m clientMessage) {
	if !s.allowBroadcast(c) {
		return
	}
	payload := wire.AppendSessionMessage(make([]byte, 0, wire.SessionMessageLen(c.userType, c.clientType, m.Msg, m.Data)),
		c.userType, c.clientType, m.Msg, m.Data)
	if err := s.broker.Publish(c.session, payload); err != nil {
		s.metrics.broadcastFails.Inc()
		msg := "broadcast could not be sent; try again"
		if errors.Is(err, broker.ErrBacklogFull) {
			msg = "broadcast backlog is full; try again later"
		}
		c.send(errorFrame("broadcast_failed", msg))
		return
	}
	s.metrics.broadcasts.Inc()
}

// presenceLimit reads a presence request's optional "limit": a positive
// integer, clamped to max; absent or null means max.
func presenceLimit(raw json.RawMessage, max int) (int, bool) {
	if len(raw) == 0 || string(raw) == "null" {
		return max, true
	}
	var n float64
	if json.Unmarshal(raw, &n) != nil || n < 1 || n != math.Trunc(n) {
		return 0, false
	}
	return int(min(n, float64(max))), true
}

// presenceFrame builds the presence frame (wire.AppendPresence) in place,
// with the payload and its frame header within budget bytes. buf is reused
// when large enough; the frame and the whole buffer (for reuse) are returned.
func presenceFrame(buf []byte, session string, members []presence.Member, limit, budget int) (frame, full []byte) {
	b := append(buf[:0], make([]byte, wsframe.Headroom)...)
	b = wire.AppendPresence(b, session, members, limit, budget)
	return wsframe.TextInPlace(b), b
}

// queryPresence asks the store off the loop; the answer comes back through
// the loop's mailbox. At most PresenceConcurrency queries run at once.
func (s *Server) queryPresence(c *conn, limit int) {
	select {
	case s.presenceSem <- struct{}{}:
	default:
		s.metrics.rejected.WithLabelValues("presence_concurrency").Inc()
		c.send(errorFrame("presence_unavailable", "too many presence queries in flight; try again"))
		return
	}
	session := c.session
	go func() {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.PresenceTimeout)
		members, err := s.presence.Members(ctx, session)
		cancel()
		<-s.presenceSem
		var frame []byte
		if err != nil {
			s.log.Warn("presence query", "session_id", session, "err", err)
			frame = errorFrame("presence_unavailable", "presence is unavailable right now; try again")
		} else {
			buf, _ := s.presenceBufs.Get().(*[]byte)
			if buf == nil {
				buf = new([]byte)
			}
			var full []byte
			frame, full = presenceFrame(*buf, session, members, limit, s.cfg.PresenceAnswerMax())
			s.metrics.presenceQuery.Observe(time.Since(start).Seconds())
			// Large answers are built in pooled buffers: gnet copies what
			// the socket does not take at once, so the buffer is free again
			// after the flush.
			c.ls.run(func() {
				c.send(frame)
				c.ls.flush()
				if cap(full) <= 4<<20 { // a rare huge answer is not kept
					*buf = full[:0]
					s.presenceBufs.Put(buf)
				}
			})
			return
		}
		c.ls.run(func() { c.send(frame) })
	}()
}
