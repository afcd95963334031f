package presence

import (
	"context"
	"sort"
	"sync"
	"time"
)

// Memory is the single-instance store.
type Memory struct {
	mu       sync.RWMutex
	sessions map[string]map[string]*Member
}

// NewMemory returns an empty in-process store.
func NewMemory() *Memory {
	return &Memory{sessions: make(map[string]map[string]*Member)}
}

// Join implements Store.
func (s *Memory) Join(m Member) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	set := s.sessions[m.SessionID]
	if set == nil {
		set = make(map[string]*Member)
		s.sessions[m.SessionID] = set
	}
	mm := m
	set[m.ConnectionID] = &mm
	return nil
}

// Leave implements Store.
func (s *Memory) Leave(r Ref) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	set := s.sessions[r.SessionID]
	delete(set, r.ConnectionID)
	if len(set) == 0 {
		delete(s.sessions, r.SessionID)
	}
	return nil
}

// Members implements Store. Members are ordered by connection time, then id,
// so that answers are stable. Every member held is alive (the edge calls Leave
// when a socket closes), so LastSeen is now.
func (s *Memory) Members(_ context.Context, sessionID string) ([]Member, error) {
	now := time.Now().Unix()
	s.mu.RLock()
	set := s.sessions[sessionID]
	out := make([]Member, 0, len(set))
	for _, m := range set {
		mm := *m
		mm.LastSeen = now
		out = append(out, mm)
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].ConnectedAt != out[j].ConnectedAt {
			return out[i].ConnectedAt < out[j].ConnectedAt
		}
		return out[i].ConnectionID < out[j].ConnectionID
	})
	return out, nil
}

// Close implements Store.
func (s *Memory) Close() error { return nil }
