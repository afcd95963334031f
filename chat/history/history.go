// Package history stores chat threads: the ordered user/assistant messages
// of each thread_id. The in-memory store serves a single instance and
// forgets on restart; the PostgreSQL store is shared and durable.
package history

import (
	"context"
	"errors"
	"strings"
	"time"
	"unicode/utf8"
)

// Message is one stored message of a thread.
type Message struct {
	// Role is "user" or "assistant".
	Role    string
	Content string
	// Escalated marks the assistant message of a turn that ended with an
	// escalation to a human agent.
	Escalated bool
	// CreatedAt is set by the store.
	CreatedAt time.Time
}

// Store keeps threads. Implementations are safe for concurrent use.
type Store interface {
	// Append adds msgs to the end of the thread atomically: concurrent
	// appends to one thread never interleave, so a turn's user message and
	// answer stay adjacent and roles keep alternating.
	Append(ctx context.Context, threadID string, msgs []Message) error
	// Recent returns the thread's newest messages within w, oldest first.
	// Messages older than the store's retention are never returned. An
	// unknown thread has no messages.
	Recent(ctx context.Context, threadID string, w Window) ([]Message, error)
	// Close releases the store's resources.
	Close()
}

// Clean makes s storable as PostgreSQL text, which holds neither NUL nor
// invalid UTF-8: both become U+FFFD. Every store applies it, so that what
// is read back does not depend on the store.
func Clean(s string) string {
	if strings.IndexByte(s, 0) < 0 && utf8.ValidString(s) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// Window bounds what Recent returns: the newest messages within Messages
// messages and Bytes bytes of content (<= 0: no bound). The window ends at
// the first message that would pass either bound, so it is always a suffix
// of the thread.
type Window struct {
	Messages int
	Bytes    int
}

// within reports whether one more message of size n still fits after count
// messages of total bytes.
func (w Window) within(count, bytes, n int) bool {
	return (w.Messages <= 0 || count < w.Messages) && (w.Bytes <= 0 || bytes+n <= w.Bytes)
}

// ErrNotFound is returned for a thread that has no messages.
var ErrNotFound = errors.New("thread not found")
