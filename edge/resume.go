package edge

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsedge/wsedge/edge/broker"
	"github.com/wsedge/wsedge/edge/wsframe"
	"github.com/wsedge/wsedge/internal/wire"
)

// Session history and lossless resume (PROTOCOL.md §1.7), when the broker
// keeps history (Deps.History). A socket that needs history work is in
// loopState.resume until it is done; every other socket pays nothing.
//
// Phases of a socket in loopState.resume:
//   - resConnect: the session's epoch is being read; the connected frame
//     waits for it, and the socket's input is not read until it is sent.
//   - resHello: connected is sent; the epoch and last seq it was read with
//     wait for the hello. After a hello without since, a socket whose
//     session is live on this instance (broker.History.Live) leaves resume:
//     its stream starts at the hello. Otherwise (this instance is only now
//     subscribing) it continues from that seq in resVerify, so that nothing
//     published meanwhile is missed.
//   - resReplay: a history query is in flight after a hello with "since";
//     live broadcasts for the socket are held in order.
//   - resVerify: the replay is sent. Live broadcasts the replay already
//     had are dropped (the read's answer can overtake a message's pub/sub
//     delivery, which comes on another connection) until the first one
//     after it, which must be the next seq. A gap (a broadcast published
//     before this instance's subscription was active) queries history
//     again. Without a live broadcast within resVerifyAfter the socket
//     leaves resume; if the subscription was not active when the read
//     began, history is read once more first, which catches the same gap
//     in a quiet session.

const (
	resConnect uint8 = iota + 1
	resHello
	resReplay
	resVerify
)

// resVerifyAfter: a socket in resVerify that sees no live broadcast this
// long reads history once more and leaves resume.
const resVerifyAfter = time.Second

// sinceNow asks history for its epoch and last seq only.
const sinceNow = 1 << 62

// maxSince bounds "since": JSON numbers are exact up to 2^53.
const maxSince = 1<<53 - 1

type resumeState struct {
	phase    uint8
	final    bool   // the last history read: leave resume after it
	epoch    string // the epoch the client's seqs belong to
	last     uint64 // the client has everything up to this seq
	buf      []liveMsg
	bufBytes int
	deadline int64 // resVerify: read history again at (Unix ns)
	counted  bool  // the resume's result is in the metrics
	live     bool  // the subscription was active when the history read began: no gap possible
}

type liveMsg struct {
	seq   uint64
	frame []byte
}

var errHistoryBusy = errors.New("history queries backlog full")

type historyMetrics struct {
	resumes  *prometheus.CounterVec
	replayed prometheus.Counter
	queries  prometheus.Histogram
}

func newHistoryMetrics(reg prometheus.Registerer) *historyMetrics {
	m := &historyMetrics{
		resumes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsedge_session_resumes_total",
			Help: "hello with since, by result: recovered, epoch_changed, too_old, invalid, unavailable.",
		}, []string{"result"}),
		replayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wsedge_session_replayed_messages_total", Help: "session_message frames replayed from history.",
		}),
		queries: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "wsedge_session_history_query_seconds", Help: "One history read (epoch or replay).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 9),
		}),
	}
	reg.MustRegister(m.resumes, m.replayed, m.queries)
	for _, r := range []string{"recovered", "epoch_changed", "too_old", "invalid", "unavailable"} {
		m.resumes.WithLabelValues(r)
	}
	return m
}

// parseResume reads "since" and "epoch" of a hello. ok is false when they
// are malformed; has is false when the hello does not resume.
func parseResume(since, epoch json.RawMessage) (n uint64, e string, has, ok bool) {
	if len(since) == 0 || string(since) == "null" {
		return 0, "", false, true
	}
	var f float64
	if json.Unmarshal(since, &f) != nil || f < 0 || f > maxSince || f != float64(uint64(f)) {
		return 0, "", false, false
	}
	if json.Unmarshal(epoch, &e) != nil || e == "" || len(e) > 64 {
		return 0, "", false, false
	}
	return uint64(f), e, true, true
}

// startConnect reads the session's epoch before the connected frame.
func (s *Server) startConnect(c *conn) {
	rs := &resumeState{phase: resConnect}
	c.ls.setResume(c, rs)
	session := c.session
	s.historyQuery(c, rs, func(ctx context.Context) (broker.Replay, error) {
		return s.history.Since(ctx, session, sinceNow)
	})
}

// startLive follows a hello without since: the socket has joined, and its
// stream starts after the seq its connected frame was read at.
func (s *Server) startLive(c *conn) {
	rs := c.ls.resume[c]
	if rs == nil || rs.phase != resHello {
		return // history did not answer at connect: plain live delivery
	}
	if s.history.Live(c.session) {
		// Every message from now on reaches this instance: the stream
		// starts at the hello, as without history.
		c.ls.endResume(c)
		return
	}
	rs.phase = resVerify
	rs.counted = true // not a resume
	rs.deadline = time.Now().Add(resVerifyAfter).UnixNano()
}

// startResume replays what the client missed after since; c has joined its
// session, so live broadcasts are held from now on.
func (s *Server) startResume(c *conn, since uint64, epoch string) {
	rs := &resumeState{phase: resReplay, epoch: epoch, last: since}
	c.ls.setResume(c, rs)
	s.queryReplay(c, rs)
}

func (s *Server) queryReplay(c *conn, rs *resumeState) {
	session, since := c.session, rs.last
	// Live now, before the read: the read and the live stream then overlap,
	// and the merge needs no later check.
	rs.live = s.history.Live(session)
	s.historyQuery(c, rs, func(ctx context.Context) (broker.Replay, error) {
		return s.history.Since(ctx, session, since)
	})
}

// historyJob is one history read waiting for a worker.
type historyJob struct {
	c  *conn
	rs *resumeState
	q  func(context.Context) (broker.Replay, error)
}

// historyQuery queues q for the history workers (HistoryConcurrency of
// them, HistoryBacklog jobs waiting; no goroutine per socket) and hands the
// answer to c's loop. At the cap the answer is an error at once.
func (s *Server) historyQuery(c *conn, rs *resumeState, q func(context.Context) (broker.Replay, error)) {
	select {
	case s.histQueue <- historyJob{c: c, rs: rs, q: q}:
	default:
		s.metrics.rejected.WithLabelValues("history_backlog").Inc()
		c.ls.onHistory(c, rs, broker.Replay{}, errHistoryBusy)
	}
}

// historyWorker serves history reads until the server stops.
func (s *Server) historyWorker() {
	for {
		select {
		case <-s.done:
			return
		case j := <-s.histQueue:
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), s.cfg.HistoryTimeout)
			rep, err := j.q(ctx)
			cancel()
			s.hmetrics.queries.Observe(time.Since(start).Seconds())
			if err != nil {
				s.log.Warn("session history", "session_id", j.c.session, "err", err)
			}
			ls := j.c.ls
			ls.run(func() {
				ls.onHistory(j.c, j.rs, rep, err)
				ls.flush()
			})
		}
	}
}

func (ls *loopState) setResume(c *conn, rs *resumeState) {
	if ls.resume == nil {
		ls.resume = make(map[*conn]*resumeState)
	}
	ls.resume[c] = rs
	c.resuming = true
}

func (ls *loopState) endResume(c *conn) {
	delete(ls.resume, c)
	c.resuming = false
}

// onHistory runs on the loop with a history answer for c.
func (ls *loopState) onHistory(c *conn, rs *resumeState, rep broker.Replay, err error) {
	if ls.resume[c] != rs {
		return // closed meanwhile
	}
	if c.state != stWS {
		ls.endResume(c)
		return
	}
	s := ls.srv
	if rs.phase == resConnect {
		if err == nil {
			rs.phase, rs.epoch, rs.last = resHello, rep.Epoch, rep.Last
		} else {
			ls.endResume(c)
		}
		c.send(wsframe.Text(wire.Connected(c.session, c.id, rep.Epoch, err == nil)))
		// Input that arrived meanwhile waits in gnet's buffer.
		_ = c.gc.Wake(nil)
		return
	}
	if err != nil {
		s.hmetrics.resumes.WithLabelValues("unavailable").Inc()
		c.send(wsframe.Text(wire.RecoveryFailed("unavailable", "", 0, false)))
		for _, m := range rs.buf {
			c.send(m.frame)
		}
		ls.endResume(c)
		return
	}
	reason := ""
	switch {
	case rep.Epoch != rs.epoch:
		reason = "epoch_changed"
	case rs.last > rep.Last:
		reason = "invalid"
	case rs.last < rep.Last && (len(rep.Entries) == 0 || rep.Entries[0].Seq > rs.last+1):
		reason = "too_old"
	}
	if reason != "" {
		rs.counted = true
		s.hmetrics.resumes.WithLabelValues(reason).Inc()
		c.send(wsframe.Text(wire.RecoveryFailed(reason, rep.Epoch, rep.Last, true)))
		rs.epoch, rs.last = rep.Epoch, rep.Last
	} else {
		if !rs.counted {
			s.hmetrics.resumes.WithLabelValues("recovered").Inc()
		}
		rs.counted = true
		for _, e := range rep.Entries {
			if e.Seq <= rs.last {
				continue
			}
			if c.send(wsframe.Text(wire.AppendSeq(e.Payload, e.Seq))) {
				s.hmetrics.replayed.Inc()
			}
			rs.last = e.Seq
		}
	}
	// Merge what arrived live meanwhile: drop what the replay covered, and
	// go back to history if the live stream starts after a gap.
	proven := false
	for i, m := range rs.buf {
		switch {
		case m.seq == 0:
			c.send(m.frame)
		case m.seq <= rs.last:
		case m.seq == rs.last+1:
			c.send(m.frame)
			rs.last = m.seq
			proven = true
		default:
			rest := rs.buf[i:]
			rs.buf, rs.bufBytes = append(rs.buf[:0:0], rest...), 0
			for _, m := range rs.buf {
				rs.bufBytes += len(m.frame)
			}
			rs.phase = resReplay
			s.queryReplay(c, rs)
			return
		}
	}
	rs.buf, rs.bufBytes = nil, 0
	// Not proven yet: a message the read returned may still be on its way
	// through the pub/sub connection (the read came back on another one),
	// so duplicates are dropped until a live message follows rs.last.
	if proven || rs.final {
		ls.endResume(c)
		return
	}
	rs.phase = resVerify
	rs.deadline = time.Now().Add(resVerifyAfter).UnixNano()
}

// resumeDeliver handles a live broadcast for a socket in resume.
func (ls *loopState) resumeDeliver(c *conn, seq uint64, frame []byte) bool {
	rs := ls.resume[c]
	switch {
	case rs == nil || rs.phase == resConnect || rs.phase == resHello:
		return c.send(frame) // not a member yet: cannot happen
	case rs.phase == resReplay:
		rs.buf = append(rs.buf, liveMsg{seq: seq, frame: frame})
		rs.bufBytes += len(frame)
		if rs.bufBytes > ls.srv.cfg.OutboundCap {
			// Held frames count against the socket's outbound cap.
			ls.srv.metrics.slowConsumers.WithLabelValues("outbound_cap").Inc()
			ls.endResume(c)
			c.closeWS(wsframe.CloseTryAgainLater, "outbound queue full", true)
			return false
		}
		return true
	case seq == 0:
		return c.send(frame)
	case seq <= rs.last:
		return false // the replay had it
	case seq == rs.last+1:
		ls.endResume(c)
		return c.send(frame)
	default:
		rs.buf = append(rs.buf[:0], liveMsg{seq: seq, frame: frame})
		rs.bufBytes = len(frame)
		rs.phase = resReplay
		ls.srv.queryReplay(c, rs)
		return true
	}
}

// sweepResume ends resVerify for sockets that saw no live broadcast in
// time: when the read began with the subscription active nothing can be
// missing (and a late duplicate has long arrived); otherwise history is
// read once more.
func (ls *loopState) sweepResume(now int64) {
	for c, rs := range ls.resume {
		if rs.phase != resVerify || now <= rs.deadline {
			continue
		}
		if rs.live {
			ls.endResume(c)
			continue
		}
		rs.final = true
		rs.phase = resReplay
		ls.srv.queryReplay(c, rs)
	}
}

// holdInput reports whether c's input must wait (its connected frame is not
// sent yet). What waits is capped like one message; beyond it: close 1009.
func (s *Server) holdInput(c *conn, buffered int) bool {
	rs := c.ls.resume[c]
	if rs == nil || rs.phase != resConnect {
		return false
	}
	if buffered > s.cfg.MaxMessageSize+14 {
		c.ls.endResume(c)
		c.closeWS(wsframe.CloseTooBig, "too much input before connected", true)
		c.closeTCP = true
	}
	return true
}
