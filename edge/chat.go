package edge

import (
	"sync/atomic"

	"github.com/gobwas/ws"

	"github.com/wsedge/wsedge/edge/wsframe"
)

// ChatSink is the edge's side of one /ws/chat/ socket, handed to the chat
// service. Its methods are safe from any goroutine and never block.
type ChatSink interface {
	// Send queues a JSON text frame; false when the socket is gone or was
	// closed for being over its outbound cap.
	Send(payload []byte) bool
	// Close sends a close frame after the frames already queued.
	Close(code uint16, reason string)
}

// ChatConn is the chat service's side of one socket; its methods run on the
// socket's event loop and must not block.
type ChatConn interface {
	OnText(payload []byte)
	OnBinary()
	OnClose()
}

// OpenChat creates the chat side of a new /ws/chat/ socket.
type OpenChat func(connectionID string, sink ChatSink) ChatConn

// chatSink posts to the socket's loop. alive turns false once the socket is
// closed, so that a turn stops streaming without a round trip.
type chatSink struct {
	c     *conn
	alive atomic.Bool
}

func (s *chatSink) Send(payload []byte) bool {
	if !s.alive.Load() {
		return false
	}
	frame := wsframe.Text(payload)
	c := s.c
	if c.ls.runSized(func() {
		if !c.send(frame) {
			s.alive.Store(false)
		}
	}, len(frame)) {
		return true
	}
	// The loop's mailbox is full: the socket cannot be served in order any
	// more, so it is told to come back later (see loopState).
	s.alive.Store(false)
	c.ls.srv.metrics.mailboxOverflow.WithLabelValues("chat").Inc()
	c.ls.run(func() { c.ls.closeOverloaded(c) })
	return false
}

func (s *chatSink) Close(code uint16, reason string) {
	c := s.c
	c.ls.run(func() {
		s.alive.Store(false)
		c.closeWS(ws.StatusCode(code), reason, false)
	})
}
