package edge

import (
	"bufio"
	"bytes"
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/fasthttp"

	"github.com/wsedge/wsedge/edge/wsframe"
)

// loopState is everything one gnet event loop owns. Only that loop's goroutine
// touches the fields below "loop-only"; other goroutines reach the loop by
// posting to its mailbox.
//
// The mailbox exists because gnet's Execute may reorder low-priority tasks
// between its two queues, while per-sender broadcast order must hold: items
// are drained strictly in the order they were posted, and Execute is only the
// doorbell.
//
// The mailbox is capped (Config.MailboxCap items, Config.MailboxMaxBytes
// bytes of frames), so that a loop that falls behind — starved of CPU, or
// fed faster than it writes — cannot grow the heap without limit. Only the
// producers without a bound of their own are refused at the cap:
//   - a broadcast that does not fit is not queued; its session is marked,
//     and at the next drain the loop's members of that session get a
//     reconnect hint and close 1013, so that they resume from session
//     history (lossless when SESSION_HISTORY_SIZE is on) instead of
//     silently missing it;
//   - a chat token that does not fit ends the socket the same way (the turn
//     stops streaming: its sink reports the socket gone).
//
// Every other task (API and presence answers, history results, shed steps,
// sweeps) is accepted: each is bounded by its producer (one API request in
// flight per socket, presence and history by their concurrency limits, one
// sweep per tick, one shed step per loop per step), and refusing one would
// leave a socket waiting forever.
type loopState struct {
	srv *Server
	el  gnet.EventLoop

	mu         sync.Mutex
	inbox      []mail
	inboxBytes int                 // frame bytes in inbox
	overflow   map[string]struct{} // sessions with a broadcast refused since the last drain
	overAll    bool                // overflow itself reached its bound: every session
	scheduled  atomic.Bool
	stopped    atomic.Bool

	// loop-only
	spare    []mail
	conns    []*conn
	sessions map[string][]*conn     // local members of each session, in join order
	dirty    []*conn                // sockets with frames queued by the current callback
	resume   map[*conn]*resumeState // sockets with history work (resume.go)
	stats    loopStats

	// scratch for the HTTP codec, reused for every request of this loop
	rd   bytes.Reader
	br   *bufio.Reader
	hdr  fasthttp.RequestHeader
	uri  fasthttp.URI
	resp fasthttp.Response
	out  bytes.Buffer
}

// mail is one item of a loop's mailbox: a broadcast to deliver to the local
// members of a session, or a function to run on the loop.
type mail struct {
	session string
	seq     uint64 // history seq of the broadcast; 0 when history is off
	frame   []byte
	at      int64 // when the broadcast reached the hub (Unix nanoseconds)
	fn      func()
	size    int // bytes fn writes, counted against the mailbox's byte cap
}

func newLoopState(srv *Server, el gnet.EventLoop) *loopState {
	ls := &loopState{srv: srv, el: el, sessions: make(map[string][]*conn)}
	// fasthttp needs the whole head in the reader's buffer.
	ls.br = bufio.NewReaderSize(&ls.rd, max(4096, srv.cfg.MaxHeaderBytes))
	return ls
}

// post queues m for the loop; safe from any goroutine. It reports false when
// the engine is shutting down and the item will never run. A broadcast
// (m.fn == nil) is refused at the mailbox cap; see loopState.
func (ls *loopState) post(m mail) bool {
	if ls.stopped.Load() {
		return false
	}
	if !ls.enqueue(m, m.fn == nil) {
		ls.srv.metrics.mailboxOverflow.WithLabelValues("broadcast").Inc()
		ls.ring() // the drain closes the session's members here
		return true
	}
	return ls.ring()
}

// enqueue appends m unless capped and the mailbox is full; a refused
// broadcast marks its session (markOverflow).
func (ls *loopState) enqueue(m mail, capped bool) bool {
	n := len(m.frame) + m.size
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if capped && ls.full(n) {
		if m.fn == nil {
			ls.markOverflow(m.session)
		}
		return false
	}
	ls.inbox = append(ls.inbox, m)
	ls.inboxBytes += n
	return true
}

// full reports, under ls.mu, whether n more bytes exceed the mailbox cap.
func (ls *loopState) full(n int) bool {
	cfg := &ls.srv.cfg
	return len(ls.inbox) >= cfg.MailboxCap || ls.inboxBytes+n > cfg.MailboxMaxBytes
}

// markOverflow records, under ls.mu, that a broadcast of session was
// refused. The set is bounded by the mailbox cap; past it, every session of
// the loop is treated as overflowed.
func (ls *loopState) markOverflow(session string) {
	if ls.overAll {
		return
	}
	if ls.overflow == nil {
		ls.overflow = make(map[string]struct{})
	}
	if len(ls.overflow) >= ls.srv.cfg.MailboxCap {
		ls.overAll, ls.overflow = true, nil
		return
	}
	ls.overflow[session] = struct{}{}
}

// ring makes sure a drain is scheduled.
func (ls *loopState) ring() bool {
	if ls.scheduled.CompareAndSwap(false, true) {
		if err := ls.el.Execute(context.Background(), gnet.RunnableFunc(ls.drain)); err != nil {
			ls.stopped.Store(true)
			ls.scheduled.Store(false)
			return false
		}
	}
	return true
}

// run posts fn to the loop; it is never refused for the cap (see loopState).
func (ls *loopState) run(fn func()) bool { return ls.post(mail{fn: fn}) }

// runSized posts fn, which writes size bytes of frames, unless the mailbox
// is at its cap; it reports false when fn will not run.
func (ls *loopState) runSized(fn func(), size int) bool {
	if ls.stopped.Load() {
		return false
	}
	return ls.enqueue(mail{fn: fn, size: size}, true) && ls.ring()
}

// drain runs on the loop: everything posted so far, in order, then one write
// per socket that got frames.
func (ls *loopState) drain(context.Context) error {
	ls.scheduled.Store(false)
	ls.mu.Lock()
	items := ls.inbox
	ls.inbox = ls.spare[:0]
	ls.inboxBytes = 0
	overflow, overAll := ls.overflow, ls.overAll
	ls.overflow, ls.overAll = nil, false
	ls.mu.Unlock()

	var delivered []int64
	for i := range items {
		m := &items[i]
		if m.fn != nil {
			m.fn()
		} else {
			ls.deliver(m.session, m.seq, m.frame)
			delivered = append(delivered, m.at)
		}
		*m = mail{}
	}
	ls.spare = items[:0]
	if overflow != nil || overAll {
		ls.shedOverflow(overflow, overAll)
	}
	ls.flush()
	if len(delivered) > 0 {
		now := time.Now().UnixNano()
		for _, at := range delivered {
			ls.srv.metrics.fanoutLatency.Observe(float64(now-at) / 1e9)
		}
	}
	return nil
}

// deliver queues a broadcast frame to every local member of session.
func (ls *loopState) deliver(session string, seq uint64, frame []byte) {
	members := ls.sessions[session]
	for _, c := range members {
		var ok bool
		if c.resuming {
			ok = ls.resumeDeliver(c, seq, frame)
		} else {
			ok = c.send(frame)
		}
		if ok {
			ls.stats.deliveries++
		}
	}
}

// flush writes what callbacks queued, one writev per socket.
func (ls *loopState) flush() {
	for i, c := range ls.dirty {
		ls.dirty[i] = nil
		c.flush()
	}
	ls.dirty = ls.dirty[:0]
}

// addConn registers c for sweeps.
func (ls *loopState) addConn(c *conn) {
	c.idx = int32(len(ls.conns))
	ls.conns = append(ls.conns, c)
}

// removeConn forgets c (swap-remove).
func (ls *loopState) removeConn(c *conn) {
	i := int(c.idx)
	if i < 0 || i >= len(ls.conns) || ls.conns[i] != c {
		return
	}
	last := len(ls.conns) - 1
	ls.conns[i] = ls.conns[last]
	ls.conns[i].idx = int32(i)
	ls.conns[last] = nil
	ls.conns = ls.conns[:last]
	c.idx = -1
}

// join adds c to the local members of its session; it reports whether c is
// the loop's first member of that session.
func (ls *loopState) join(c *conn) bool {
	list := ls.sessions[c.session]
	c.sidx = int32(len(list))
	ls.sessions[c.session] = append(list, c)
	return len(list) == 0
}

// leave removes c from its session's local members; it reports whether the
// loop has no member of that session left. Order of the others changes, which
// only affects the order in which sockets are written, not message order.
func (ls *loopState) leave(c *conn) bool {
	list := ls.sessions[c.session]
	i := int(c.sidx)
	if i < 0 || i >= len(list) || list[i] != c {
		return false
	}
	last := len(list) - 1
	list[i] = list[last]
	list[i].sidx = int32(i)
	list[last] = nil
	list = list[:last]
	c.sidx = -1
	if len(list) == 0 {
		delete(ls.sessions, c.session)
		return true
	}
	ls.sessions[c.session] = list
	return false
}

// shedOverflow closes the members of sessions whose broadcasts the mailbox
// refused: they were delivered everything up to the refused broadcast, and
// resume from session history after the hint.
func (ls *loopState) shedOverflow(sessions map[string]struct{}, all bool) {
	var victims []*conn
	for name, members := range ls.sessions {
		if _, hit := sessions[name]; all || hit {
			victims = append(victims, members...)
		}
	}
	for _, c := range victims {
		ls.closeOverloaded(c)
	}
}

// closeOverloaded ends c because its loop's mailbox refused its frames.
func (ls *loopState) closeOverloaded(c *conn) {
	c.hintAndClose(ls.srv.cfg.ReconnectJitter, wsframe.CloseTryAgainLater, "server overloaded")
}
