package edge

import (
	"sync"
	"time"

	"github.com/wsedge/wsedge/edge/broker"
	"github.com/wsedge/wsedge/edge/wsframe"
)

// Hub knows which event loops hold members of each session on this instance
// and hands broadcasts to them. The broker calls Deliver; event loops call
// add/remove when their first member of a session joins or last one leaves,
// and the hub subscribes to or unsubscribes from the broker on the instance's
// first and last member.
type Hub struct {
	mu       sync.RWMutex
	sessions map[string]*hubSession
	broker   broker.Broker
}

type hubSession struct {
	loops []*loopState // loops with at least one member, each once
}

// NewHub returns an empty hub. Connect the broker with SetBroker before
// serving.
func NewHub() *Hub { return &Hub{sessions: make(map[string]*hubSession)} }

// SetBroker sets the broker used for subscriptions. The broker's Handler must
// be h.Deliver.
func (h *Hub) SetBroker(b broker.Broker) { h.broker = b }

// Deliver is the broker.Handler: it frames payload once (with "seq" when
// history is on) and posts it to every loop with members of session. It
// never blocks.
func (h *Hub) Deliver(session string, seq uint64, payload []byte) {
	h.mu.RLock()
	s := h.sessions[session]
	if s == nil {
		h.mu.RUnlock()
		return
	}
	loops := s.loops
	h.mu.RUnlock()
	frame := wsframe.Text(appendSeq(payload, seq))
	at := time.Now().UnixNano()
	for _, ls := range loops {
		ls.post(mail{session: session, seq: seq, frame: frame, at: at})
	}
}

// Len is the number of sessions with members on this instance.
func (h *Hub) Len() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.sessions)
}

// add records that ls has a member of session.
func (h *Hub) add(session string, ls *loopState) (err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.sessions[session]
	if s == nil {
		s = &hubSession{}
		h.sessions[session] = s
		// A failed subscribe still leaves local fan-out working (brokers
		// deliver locally at publish); the caller logs it.
		err = h.broker.Subscribe(session)
	}
	// Copy on write: Deliver reads loops without the lock held.
	loops := make([]*loopState, 0, len(s.loops)+1)
	loops = append(loops, s.loops...)
	s.loops = append(loops, ls)
	return err
}

// remove records that ls has no member of session left.
func (h *Hub) remove(session string, ls *loopState) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.sessions[session]
	if s == nil {
		return
	}
	loops := make([]*loopState, 0, len(s.loops))
	for _, l := range s.loops {
		if l != ls {
			loops = append(loops, l)
		}
	}
	s.loops = loops
	if len(loops) == 0 {
		delete(h.sessions, session)
		_ = h.broker.Unsubscribe(session)
	}
}
