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
	// Recent returns the thread's last limit messages, oldest first (all of
	// them when limit <= 0). An unknown thread has no messages.
	Recent(ctx context.Context, threadID string, limit int) ([]Message, error)
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

// ErrNotFound is returned for a thread that has no messages.
var ErrNotFound = errors.New("thread not found")
