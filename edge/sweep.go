package edge

import (
	"context"
	"time"

	"github.com/wsedge/wsedge/edge/wsframe"
)

// sweeper asks every loop, once per SweepInterval, to check its sockets'
// deadlines. One pass over all sockets replaces per-connection timers: an idle
// socket costs a few comparisons per interval and no timer or goroutine.
func (s *Server) sweeper() {
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			for _, ls := range s.allLoops() {
				ls.run(ls.sweep)
			}
			s.refusals.flush()
			s.ips.prune(time.Now())
		}
	}
}

// sweep runs on the loop.
func (ls *loopState) sweep() {
	s := ls.srv
	cfg := &s.cfg
	now := time.Now().UnixNano()
	var drop []*conn
	for _, c := range ls.conns {
		switch c.state {
		case stHTTP:
			switch {
			case ls.writeStalled(c, now):
				s.metrics.slowConsumers.WithLabelValues("write_timeout").Inc()
				drop = append(drop, c)
			case c.closeAt != 0: // refused; the client had its answer
				if now-c.closeAt > int64(cfg.CloseTimeout) {
					drop = append(drop, c)
				}
			case c.busy:
			case c.paused:
				// Nothing else tells the loop that the client has read
				// its answers: resume reading its requests from here.
				if c.gc.OutboundBuffered() <= cfg.OutboundCap {
					_ = c.gc.Wake(nil)
				}
			case c.reqStart != 0 && now-c.reqStart > int64(cfg.HandshakeTimeout):
				s.metrics.rejected.WithLabelValues("handshake_timeout").Inc()
				drop = append(drop, c)
			case c.reqStart == 0 && now-c.lastRx > int64(cfg.HTTPIdleTimeout):
				drop = append(drop, c)
			}
		case stWS:
			switch {
			case c.route == routeSession && !c.hello && now-c.openedAt > int64(cfg.HelloTimeout):
				c.send(errorFrame("hello_required", "no hello received in time"))
				c.closeWS(wsframe.CloseHelloRequired, "hello timeout", false)
			case c.frameAt != 0 && now-c.frameAt > int64(cfg.FrameTimeout),
				c.msgAt != 0 && now-c.msgAt > int64(cfg.FrameTimeout):
				// A frame or fragmented message that does not complete in
				// time pins its buffered bytes; trickled bytes do not help.
				// The peer's close frame could only come after the
				// unfinished one, so the connection ends with ours.
				s.metrics.rejected.WithLabelValues("frame_timeout").Inc()
				c.closeWS(wsframe.ClosePolicyViolation, "frame timeout", false)
				drop = append(drop, c)
			case c.pingOut && now-c.pingAt > int64(cfg.PongTimeout):
				c.closeCode = 1006
				drop = append(drop, c)
			case !c.pingOut && now-c.lastRx > int64(cfg.PingInterval):
				c.pingOut = true
				c.pingAt = now
				c.send(pingFrame)
			}
			// Session sockets, and chat sockets opened under a token.
			if c.acc != nil && c.acc.claims != nil && c.state == stWS {
				s.sweepToken(c, now)
			}
			if ls.writeStalled(c, now) {
				s.metrics.slowConsumers.WithLabelValues("write_timeout").Inc()
				c.closeWS(wsframe.CloseTryAgainLater, "write timeout", true)
			}
		case stClosing:
			if now-c.closeAt > int64(cfg.CloseTimeout) {
				drop = append(drop, c)
			}
		}
	}
	if len(ls.resume) > 0 {
		ls.sweepResume(now)
	}
	ls.flush()
	for _, c := range drop {
		c.dropTCP()
	}
	s.metrics.flush(&ls.stats)
}

var pingFrame = wsframe.AppendFrame(nil, 0x9, nil)

// writeStalled tracks whether c's socket has taken no bytes for WriteTimeout.
func (ls *loopState) writeStalled(c *conn, now int64) bool {
	ob := c.gc.OutboundBuffered()
	if ob == 0 {
		c.stallSince, c.lastOut = 0, 0
		return false
	}
	if c.stallSince == 0 || ob < c.lastOut {
		c.stallSince, c.lastOut = now, ob
		return false
	}
	c.lastOut = ob
	return now-c.stallSince > int64(ls.srv.cfg.WriteTimeout)
}

// drainSockets sends every WebSocket a reconnect hint and a 1001 close, in
// steps spread over DrainSpread (shed.go), then waits for sockets to go (or
// ctx).
func (s *Server) drainSockets(ctx context.Context) {
	s.closeAll(ctx, s.cfg.DrainSpread, s.cfg.ReconnectJitter, "server shutting down")
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for s.wsOpen.Load() > 0 {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
