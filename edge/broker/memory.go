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
	m.mu.RLock()
	_, ok := m.subs[session]
	m.mu.RUnlock()
	if ok {
		m.handler(session, payload)
	}
	return nil
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
	return nil
}

// Close implements Broker.
func (m *Memory) Close() error {
	m.closed.Store(true)
	return nil
}
