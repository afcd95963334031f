package presence

import (
	"context"
	"sync"
	"time"
)

// Memory is the single-instance store. Members are kept in join order, so
// that answers are stable without sorting (a sort of 5,000 members cost
// milliseconds per presence query).
type Memory struct {
	mu       sync.RWMutex
	sessions map[string]*memSession
}

type memSession struct {
	order []*Member
	byID  map[string]*Member
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
		set = &memSession{byID: make(map[string]*Member)}
		s.sessions[m.SessionID] = set
	}
	if old := set.byID[m.ConnectionID]; old != nil {
		*old = m
		return nil
	}
	mm := m
	set.byID[m.ConnectionID] = &mm
	set.order = append(set.order, &mm)
	return nil
}

// Leave implements Store. Removal keeps the order: a scan and a copy of
// pointers, microseconds even for thousands of members.
func (s *Memory) Leave(r Ref) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	set := s.sessions[r.SessionID]
	if set == nil {
		return nil
	}
	m := set.byID[r.ConnectionID]
	if m == nil {
		return nil
	}
	delete(set.byID, r.ConnectionID)
	for i, x := range set.order {
		if x == m {
			copy(set.order[i:], set.order[i+1:])
			set.order[len(set.order)-1] = nil
			set.order = set.order[:len(set.order)-1]
			break
		}
	}
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
	out := make([]Member, len(set.order))
	for i, m := range set.order {
		out[i] = *m
		out[i].LastSeen = now
	}
	return out, nil
}

// Close implements Store.
func (s *Memory) Close() error { return nil }
