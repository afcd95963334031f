package presence

import (
	"context"
	"sync"
	"time"
)

var _ Store = (*Memory)(nil)

// Memory is the single-instance store. Each session's members form a doubly
// linked list in join order, so that answers are stable without sorting (a
// sort of 5,000 members cost milliseconds per presence query) and a leave is
// O(1): mass disconnects of a big session would otherwise be quadratic, under
// a lock the event loops take.
type Memory struct {
	mu       sync.RWMutex
	sessions map[string]*memSession
}

type memSession struct {
	head, tail *memNode
	byID       map[string]*memNode
}

type memNode struct {
	m          Member
	prev, next *memNode
}

// NewMemory returns an empty in-process store.
func NewMemory() *Memory {
	return &Memory{sessions: make(map[string]*memSession)}
}

// Join implements Store. A connection that joins again replaces its record
// in place.
func (s *Memory) Join(m Member) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	set := s.sessions[m.SessionID]
	if set == nil {
		set = &memSession{byID: make(map[string]*memNode)}
		s.sessions[m.SessionID] = set
	}
	if old := set.byID[m.ConnectionID]; old != nil {
		old.m = m
		return nil
	}
	n := &memNode{m: m, prev: set.tail}
	if set.tail != nil {
		set.tail.next = n
	} else {
		set.head = n
	}
	set.tail = n
	set.byID[m.ConnectionID] = n
	return nil
}

// Leave implements Store, in O(1).
func (s *Memory) Leave(r Ref) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	set := s.sessions[r.SessionID]
	if set == nil {
		return nil
	}
	n := set.byID[r.ConnectionID]
	if n == nil {
		return nil
	}
	delete(set.byID, r.ConnectionID)
	if n.prev != nil {
		n.prev.next = n.next
	} else {
		set.head = n.next
	}
	if n.next != nil {
		n.next.prev = n.prev
	} else {
		set.tail = n.prev
	}
	n.prev, n.next = nil, nil
	if len(set.byID) == 0 {
		delete(s.sessions, r.SessionID)
	}
	return nil
}

// Members implements Store, in join order. Every member held is alive (the
// edge calls Leave when a socket closes), so LastSeen is now.
func (s *Memory) Members(_ context.Context, sessionID string) ([]Member, error) {
	now := time.Now().Unix()
	s.mu.RLock()
	defer s.mu.RUnlock()
	set := s.sessions[sessionID]
	if set == nil {
		return []Member{}, nil
	}
	out := make([]Member, 0, len(set.byID))
	for n := set.head; n != nil; n = n.next {
		m := n.m
		m.LastSeen = now
		out = append(out, m)
	}
	return out, nil
}

// Close implements Store.
func (s *Memory) Close() error { return nil }
