package history

import (
	"container/list"
	"context"
	"sync"
	"time"
)

var _ Store = (*Memory)(nil)

// MemoryConfig caps the in-process store. Zero values take the defaults in
// brackets.
type MemoryConfig struct {
	// MaxThreads threads are kept; past it the least recently written
	// thread is dropped [10,000].
	MaxThreads int
	// MaxMessages per thread; past it the oldest turns are dropped [1,000].
	MaxMessages int
	// MaxBytes of message content in the whole store; past it the least
	// recently written threads are dropped (and, for a thread that alone is
	// larger, its oldest turns) [256 MiB].
	MaxBytes int64
	// TTL is the retention: a message older than TTL is never returned,
	// and threads whose last message is older are deleted by a sweep every
	// TTL/10 (between 1 s and 1 min) off the request path. 0 keeps
	// messages until a cap drops them.
	TTL time.Duration
	// Now is the clock [time.Now]; tests move it.
	Now func() time.Time
}

// Memory is the in-process store, the default without a database. It is
// capped (MemoryConfig) so that a long-running instance cannot grow without
// bound.
type Memory struct {
	cfg MemoryConfig
	now func() time.Time

	mu      sync.Mutex
	threads map[string]*list.Element // value: *memThread
	lru     *list.List               // front = most recently written
	bytes   int64

	stop     chan struct{}
	stopOnce sync.Once
	swept    chan struct{} // tests: a sweep finished (never blocks)
}

type memThread struct {
	id    string
	msgs  []Message
	bytes int64
}

// NewMemory returns an empty store with the given caps (<= 0: the defaults
// of MemoryConfig) and no retention limit.
func NewMemory(maxThreads, maxMessages int) *Memory {
	return NewMemoryWith(MemoryConfig{MaxThreads: maxThreads, MaxMessages: maxMessages})
}

// NewMemoryWith returns an empty store; with a TTL it starts the expiry
// sweep, which Close stops.
func NewMemoryWith(cfg MemoryConfig) *Memory {
	if cfg.MaxThreads <= 0 {
		cfg.MaxThreads = 10000
	}
	if cfg.MaxMessages <= 0 {
		cfg.MaxMessages = 1000
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = 256 << 20
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m := &Memory{cfg: cfg, now: cfg.Now, threads: make(map[string]*list.Element), lru: list.New(),
		stop: make(chan struct{}), swept: make(chan struct{}, 1)}
	if cfg.TTL > 0 {
		every := min(max(cfg.TTL/10, time.Second), time.Minute)
		go m.sweepLoop(every)
	}
	return m
}

func (m *Memory) sweepLoop(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			m.Sweep()
		}
	}
}

// Sweep deletes the threads whose newest message is past the retention;
// it returns how many. The least recently written threads are at the back
// of the LRU list, so a sweep touches only expired threads and one more.
func (m *Memory) Sweep() int {
	if m.cfg.TTL <= 0 {
		return 0
	}
	cutoff := m.now().Add(-m.cfg.TTL)
	n := 0
	m.mu.Lock()
	for el := m.lru.Back(); el != nil; el = m.lru.Back() {
		th := el.Value.(*memThread)
		if len(th.msgs) > 0 && th.msgs[len(th.msgs)-1].CreatedAt.After(cutoff) {
			break
		}
		m.remove(el)
		n++
	}
	m.mu.Unlock()
	select {
	case m.swept <- struct{}{}:
	default:
	}
	return n
}

func (m *Memory) remove(el *list.Element) {
	th := el.Value.(*memThread)
	m.lru.Remove(el)
	delete(m.threads, th.id)
	m.bytes -= th.bytes
}

// dropFront removes the thread's oldest n messages.
func (m *Memory) dropFront(th *memThread, n int) {
	for _, msg := range th.msgs[:n] {
		th.bytes -= int64(len(msg.Content))
		m.bytes -= int64(len(msg.Content))
	}
	th.msgs = append([]Message(nil), th.msgs[n:]...)
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
		for m.lru.Len() > m.cfg.MaxThreads {
			m.remove(m.lru.Back())
		}
	} else {
		m.lru.MoveToFront(el)
	}
	th := el.Value.(*memThread)
	if m.cfg.TTL > 0 {
		// Expired messages of the thread being written go now: it is in
		// hand, and they would never be returned again.
		cutoff := now.Add(-m.cfg.TTL)
		i := 0
		for i < len(th.msgs) && !th.msgs[i].CreatedAt.After(cutoff) {
			i++
		}
		if i > 0 {
			m.dropFront(th, i)
		}
	}
	for _, msg := range msgs {
		msg.CreatedAt, msg.Content = now, Clean(msg.Content)
		th.msgs = append(th.msgs, msg)
		th.bytes += int64(len(msg.Content))
		m.bytes += int64(len(msg.Content))
	}
	if over := len(th.msgs) - m.cfg.MaxMessages; over > 0 {
		m.dropFront(th, wholeTurns(over, len(th.msgs)))
	}
	// Over the byte cap: other threads go first, least recently written
	// first; then this thread's oldest turns.
	for m.bytes > m.cfg.MaxBytes && m.lru.Back() != el {
		m.remove(m.lru.Back())
	}
	for m.bytes > m.cfg.MaxBytes && len(th.msgs) > 0 {
		m.dropFront(th, wholeTurns(1, len(th.msgs)))
	}
	return nil
}

// wholeTurns rounds a number of messages to drop from the front up to
// whole user/assistant pairs when it can, so the thread still starts with a
// user message.
func wholeTurns(n, have int) int {
	if n%2 == 1 && n < have {
		n++
	}
	return min(n, have)
}

// Recent implements Store.
func (m *Memory) Recent(_ context.Context, threadID string, w Window) ([]Message, error) {
	var cutoff time.Time
	if m.cfg.TTL > 0 {
		cutoff = m.now().Add(-m.cfg.TTL)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	el, ok := m.threads[threadID]
	if !ok {
		return nil, nil
	}
	msgs := el.Value.(*memThread).msgs
	start, bytes := len(msgs), 0
	for start > 0 {
		msg := msgs[start-1]
		if (!cutoff.IsZero() && !msg.CreatedAt.After(cutoff)) || !w.within(len(msgs)-start, bytes, len(msg.Content)) {
			break
		}
		bytes += len(msg.Content)
		start--
	}
	return append([]Message(nil), msgs[start:]...), nil
}

// Close implements Store: it stops the expiry sweep.
func (m *Memory) Close() { m.stopOnce.Do(func() { close(m.stop) }) }
