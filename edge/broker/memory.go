package broker

import (
	"sync"
	"sync/atomic"
)

// Memory is the single-instance broker: Publish hands the payload straight to
// the handler on the caller's goroutine, so ordering per publisher is the order
// of the calls.
type Memory struct {
	handler Handler
	mu      sync.RWMutex
	subs    map[string]struct{}
	closed  atomic.Bool
	hist    *memHistory // nil: history off
}

// NewMemory returns a broker that delivers within this process only.
func NewMemory(h Handler) *Memory {
	return &Memory{handler: h, subs: make(map[string]struct{})}
}

// Publish implements Broker.
func (m *Memory) Publish(session string, payload []byte) error {
	if m.closed.Load() {
		return ErrClosed
	}
	if m.hist != nil {
		m.hist.publish(session, payload)
		return nil
	}
	if m.subscribed(session) {
		m.handler(session, 0, payload)
	}
	return nil
}

func (m *Memory) subscribed(session string) bool {
	m.mu.RLock()
	_, ok := m.subs[session]
	m.mu.RUnlock()
	return ok
}

// Subscribe implements Broker.
func (m *Memory) Subscribe(session string) error {
	if m.closed.Load() {
		return ErrClosed
	}
	m.mu.Lock()
	m.subs[session] = struct{}{}
	m.mu.Unlock()
	return nil
}

// Unsubscribe implements Broker.
func (m *Memory) Unsubscribe(session string) error {
	m.mu.Lock()
	delete(m.subs, session)
	m.mu.Unlock()
	if m.hist != nil {
		m.hist.ring(session, false) // the TTL counts from the last member too
	}
	return nil
}

// Close implements Broker.
func (m *Memory) Close() error {
	if !m.closed.Swap(true) && m.hist != nil {
		m.hist.close()
	}
	return nil
}
