package history

import (
	"container/list"
	"context"
	"sync"
	"time"
)

// Memory is the in-process store, the default without a database. It is
// capped so that a long-running instance cannot grow without bound:
// MaxThreads threads (the least recently written thread is dropped first)
// and MaxMessages messages per thread (the oldest are dropped first).
type Memory struct {
	maxThreads, maxMessages int
	now                     func() time.Time

	mu      sync.Mutex
	threads map[string]*list.Element // value: *memThread
	lru     *list.List               // front = most recently written
}

type memThread struct {
	id   string
	msgs []Message
}

// NewMemory returns an empty store with the given caps (<= 0: 10,000
// threads, 1,000 messages per thread).
func NewMemory(maxThreads, maxMessages int) *Memory {
	if maxThreads <= 0 {
		maxThreads = 10000
	}
	if maxMessages <= 0 {
		maxMessages = 1000
	}
	return &Memory{maxThreads: maxThreads, maxMessages: maxMessages, now: time.Now,
		threads: make(map[string]*list.Element), lru: list.New()}
}

// Append implements Store.
func (m *Memory) Append(_ context.Context, threadID string, msgs []Message) error {
	now := m.now().UTC()
	m.mu.Lock()
	defer m.mu.Unlock()
	el, ok := m.threads[threadID]
	if !ok {
		el = m.lru.PushFront(&memThread{id: threadID})
		m.threads[threadID] = el
		for m.lru.Len() > m.maxThreads {
			old := m.lru.Back()
			m.lru.Remove(old)
			delete(m.threads, old.Value.(*memThread).id)
		}
	} else {
		m.lru.MoveToFront(el)
	}
	th := el.Value.(*memThread)
	for _, msg := range msgs {
		msg.CreatedAt, msg.Content = now, Clean(msg.Content)
		th.msgs = append(th.msgs, msg)
	}
	if over := len(th.msgs) - m.maxMessages; over > 0 {
		// Drop whole turns from the front when we can, so the thread still
		// starts with a user message.
		if over%2 == 1 && over < len(th.msgs) {
			over++
		}
		th.msgs = append([]Message(nil), th.msgs[over:]...)
	}
	return nil
}

// Recent implements Store.
func (m *Memory) Recent(_ context.Context, threadID string, limit int) ([]Message, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	el, ok := m.threads[threadID]
	if !ok {
		return nil, nil
	}
	msgs := el.Value.(*memThread).msgs
	if limit > 0 && len(msgs) > limit {
		msgs = msgs[len(msgs)-limit:]
	}
	return append([]Message(nil), msgs...), nil
}

// Close implements Store.
func (m *Memory) Close() {}
