package broker

import (
	"errors"
	"sync/atomic"
)

var _ Broker = (*Memory)(nil)

// Memory is the single-instance broker: Publish hands the payload straight to
// the handler on the caller's goroutine, so ordering per publisher is the order
// of the calls.
type Memory struct {
	handler Handler
	closed  atomic.Bool
	hist    *memHistory // nil: history off
}

// NewMemory returns a broker that delivers within this process only.
func NewMemory() *Memory { return &Memory{} }

// Start implements Broker.
func (m *Memory) Start(h Handler) error {
	if h == nil {
		return errors.New("broker: memory: nil handler")
	}
	m.handler = h
	return nil
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
	m.handler(session, 0, payload)
	return nil
}

// Subscribe implements Broker. Delivery needs no subscription in memory; with
// history on, a subscribed session's ring is kept (memHistory.subscribe).
func (m *Memory) Subscribe(session string) error {
	if m.closed.Load() {
		return ErrClosed
	}
	if m.hist != nil {
		m.hist.subscribe(session, true)
	}
	return nil
}

// Unsubscribe implements Broker.
func (m *Memory) Unsubscribe(session string) error {
	if m.hist != nil {
		m.hist.subscribe(session, false)
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
