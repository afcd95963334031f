package edge

import (
	"sync"
	"time"

	"github.com/wsedge/wsedge/edge/broker"
	"github.com/wsedge/wsedge/edge/wsframe"
	"github.com/wsedge/wsedge/internal/wire"
)

// hub knows which event loops hold members of each session on this instance
// and hands broadcasts to them. It is the one owner of "does this instance
// have members of the session": the broker asks it through deliver (its
// Handler) and keeps no set of its own. Event loops call add/remove when
// their first member of a session joins or last one leaves, and the hub
// subscribes to or unsubscribes from the broker on the instance's first and
// last member.
type hub struct {
	mu       sync.RWMutex
	sessions map[string]*hubSession
	broker   broker.Broker
}

type hubSession struct {
	loops []*loopState // loops with at least one member, each once
}

// newHub returns an empty hub and starts b with the hub as its Handler.
func newHub(b broker.Broker) (*hub, error) {
	h := &hub{sessions: make(map[string]*hubSession), broker: b}
	if err := b.Start(h.deliver); err != nil {
		return nil, err
	}
	return h, nil
}

// deliver is the broker.Handler: it frames payload once (with "seq" when
// history is on) and posts it to every loop with members of session. It
// never blocks, and reports false when no loop has a member.
func (h *hub) deliver(session string, seq uint64, payload []byte) bool {
	h.mu.RLock()
	s := h.sessions[session]
	if s == nil {
		h.mu.RUnlock()
		return false
	}
	loops := s.loops
	h.mu.RUnlock()
	frame := wsframe.Text(wire.AppendSeq(payload, seq))
	at := time.Now().UnixNano()
	for _, ls := range loops {
		ls.post(mail{session: session, seq: seq, frame: frame, at: at})
	}
	return true
}

// Len is the number of sessions with members on this instance.
func (h *hub) Len() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.sessions)
}

// add records that ls has a member of session.
func (h *hub) add(session string, ls *loopState) (err error) {
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
	// Copy on write: deliver reads loops without the lock held.
	loops := make([]*loopState, 0, len(s.loops)+1)
	loops = append(loops, s.loops...)
	s.loops = append(loops, ls)
	return err
}

// remove records that ls has no member of session left.
func (h *hub) remove(session string, ls *loopState) {
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
