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
)

// loopState is everything one gnet event loop owns. Only that loop's goroutine
// touches the fields below "loop-only"; other goroutines reach the loop by
// posting to its mailbox.
//
// The mailbox exists because gnet's Execute may reorder low-priority tasks
// between its two queues, while per-sender broadcast order must hold: items
// are drained strictly in the order they were posted, and Execute is only the
// doorbell.
type loopState struct {
	srv *Server
	el  gnet.EventLoop

	mu        sync.Mutex
	inbox     []mail
	scheduled atomic.Bool
	stopped   atomic.Bool

	// loop-only
	spare    []mail
	conns    []*conn
	sessions map[string][]*conn // local members of each session, in join order
	dirty    []*conn            // sockets with frames queued by the current callback
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
	frame   []byte
	at      int64 // when the broadcast reached the hub (Unix nanoseconds)
	fn      func()
}

func newLoopState(srv *Server, el gnet.EventLoop) *loopState {
	ls := &loopState{srv: srv, el: el, sessions: make(map[string][]*conn)}
	// fasthttp needs the whole head in the reader's buffer.
	ls.br = bufio.NewReaderSize(&ls.rd, max(4096, srv.cfg.MaxHeaderBytes))
	return ls
}

// post queues m for the loop; safe from any goroutine. It reports false when
// the engine is shutting down and the item will never run.
func (ls *loopState) post(m mail) bool {
	if ls.stopped.Load() {
		return false
	}
	ls.mu.Lock()
	ls.inbox = append(ls.inbox, m)
	ls.mu.Unlock()
	if ls.scheduled.CompareAndSwap(false, true) {
		if err := ls.el.Execute(context.Background(), gnet.RunnableFunc(ls.drain)); err != nil {
			ls.stopped.Store(true)
			ls.scheduled.Store(false)
			return false
		}
	}
	return true
}

// run posts fn to the loop.
func (ls *loopState) run(fn func()) bool { return ls.post(mail{fn: fn}) }

// drain runs on the loop: everything posted so far, in order, then one write
// per socket that got frames.
func (ls *loopState) drain(context.Context) error {
	ls.scheduled.Store(false)
	ls.mu.Lock()
	items := ls.inbox
	ls.inbox = ls.spare[:0]
	ls.mu.Unlock()

	var delivered []int64
	for i := range items {
		m := &items[i]
		if m.fn != nil {
			m.fn()
		} else {
			ls.deliver(m.session, m.frame)
			delivered = append(delivered, m.at)
		}
		*m = mail{}
	}
	ls.spare = items[:0]
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
func (ls *loopState) deliver(session string, frame []byte) {
	members := ls.sessions[session]
	for _, c := range members {
		if c.send(frame) {
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
