package broker

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"sync"
	"sync/atomic"
	"time"
)

var _ History = (*memHistory)(nil)

// NewMemoryHistory returns a single-instance broker that keeps the last
// o.Size messages of every session (see HistoryOptions) and numbers them.
// A session's ring lives while it has subscribers and for o.TTL after its
// last message or subscriber, whichever is later; a ring created again gets
// a new epoch, as does every ring of a restarted process.
func NewMemoryHistory(o HistoryOptions) *Memory {
	m := NewMemory()
	if o.Size <= 0 {
		return m
	}
	if o.TTL <= 0 {
		o.TTL = 10 * time.Minute
	}
	m.hist = &memHistory{m: m, o: o, rings: make(map[string]*memRing), subs: make(map[string]struct{}), stop: make(chan struct{})}
	m.hist.wg.Add(1)
	go m.hist.janitor()
	return m
}

// History returns the broker's history, or nil when it is off.
func (m *Memory) History() History {
	if m.hist == nil {
		return nil
	}
	return m.hist
}

// memHistory owns the rings. Lock order: ring.mu, then subsMu or the
// handler's locks; never a ring's lock under memHistory.mu or subsMu.
type memHistory struct {
	m     *Memory
	o     HistoryOptions
	mu    sync.RWMutex
	rings map[string]*memRing
	// subs are the subscribed sessions: their rings outlive the TTL. This
	// is ring lifetime, not delivery: whether the instance has members is
	// the handler's to say.
	subsMu sync.RWMutex
	subs   map[string]struct{}
	stop   chan struct{}
	wg     sync.WaitGroup
}

func (h *memHistory) subscribe(session string, on bool) {
	h.subsMu.Lock()
	if on {
		h.subs[session] = struct{}{}
	} else {
		delete(h.subs, session)
	}
	h.subsMu.Unlock()
}

func (h *memHistory) subscribed(session string) bool {
	h.subsMu.RLock()
	_, ok := h.subs[session]
	h.subsMu.RUnlock()
	return ok
}

type memRing struct {
	touched atomic.Int64 // Unix nanoseconds of the last message or lookup

	mu    sync.Mutex
	epoch string
	seq   uint64
	buf   []Entry // circular, cap o.Size
	head  int     // index of the oldest entry
	n     int
	bytes int
}

func newEpoch() string {
	var b [8]byte
	_, _ = crand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ring returns session's ring, creating it when create is set.
func (h *memHistory) ring(session string, create bool) *memRing {
	h.mu.RLock()
	r := h.rings[session]
	h.mu.RUnlock()
	if r == nil && create {
		h.mu.Lock()
		if r = h.rings[session]; r == nil {
			r = &memRing{epoch: newEpoch(), buf: make([]Entry, h.o.Size)}
			h.rings[session] = r
		}
		h.mu.Unlock()
	}
	if r != nil {
		r.touched.Store(time.Now().UnixNano())
	}
	return r
}

// publish numbers payload, keeps it and hands it to the handler, all under
// the ring's lock, so that seq order is delivery order across publishers.
func (h *memHistory) publish(session string, payload []byte) {
	r := h.ring(session, true)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	if r.n == len(r.buf) {
		r.drop()
	}
	r.buf[(r.head+r.n)%len(r.buf)] = Entry{Seq: r.seq, Payload: payload}
	r.n++
	r.bytes += len(payload)
	for r.n > 1 && h.o.MaxBytes > 0 && r.bytes > h.o.MaxBytes {
		r.drop()
	}
	h.m.handler(session, r.seq, payload)
}

// drop forgets the oldest entry.
func (r *memRing) drop() {
	r.bytes -= len(r.buf[r.head].Payload)
	r.buf[r.head] = Entry{}
	r.head = (r.head + 1) % len(r.buf)
	r.n--
}

// Since implements History.
func (h *memHistory) Since(_ context.Context, session string, since uint64) (Replay, error) {
	r := h.ring(session, true)
	r.mu.Lock()
	defer r.mu.Unlock()
	rep := Replay{Epoch: r.epoch, Last: r.seq}
	for i := range r.n {
		e := r.buf[(r.head+i)%len(r.buf)]
		if e.Seq > since {
			rep.Entries = append(rep.Entries, e)
		}
	}
	return rep, nil
}

// Live implements History: subscriptions take effect at once in memory.
func (h *memHistory) Live(session string) bool { return h.subscribed(session) }

// janitor deletes the rings of sessions without subscribers whose last
// activity is older than the TTL.
func (h *memHistory) janitor() {
	defer h.wg.Done()
	t := time.NewTicker(min(max(h.o.TTL/4, 10*time.Millisecond), time.Minute))
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		old := time.Now().Add(-h.o.TTL).UnixNano()
		h.mu.Lock()
		for s, r := range h.rings {
			if r.touched.Load() < old && !h.subscribed(s) {
				delete(h.rings, s)
			}
		}
		h.mu.Unlock()
	}
}

// sessions reports how many rings are kept (for tests).
func (h *memHistory) sessions() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.rings)
}

func (h *memHistory) close() {
	close(h.stop)
	h.wg.Wait()
}
