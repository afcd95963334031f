// Package broker moves session messages between wsedge instances.
//
// The memory broker serves a single instance; the Redis broker (rueidis) fans
// out across every instance that has local members of a session.
package broker

import (
	"context"
	"errors"
	"time"
)

// ErrBacklogFull is returned by Publish when the broker's outgoing queue is at
// its cap. The caller tells the client (the message is not sent) instead of
// letting memory grow while Redis is slow or away.
var ErrBacklogFull = errors.New("broker: publish backlog full")

// ErrClosed is returned by calls made after Close.
var ErrClosed = errors.New("broker: closed")

// ErrUnavailable is returned by Publish when the message cannot be sent now
// (with history on, while Redis is failing: no sequence number can be given).
var ErrUnavailable = errors.New("broker: unavailable")

// Handler receives every message published to a session this instance is
// subscribed to, in the order of publication per publisher. It runs on a broker
// goroutine (or, for the memory broker, on the publisher's goroutine) and must
// not block. payload is immutable and may be retained.
//
// seq is the message's position in the session's history (1, 2, 3, … per
// epoch), or 0 when history is off. With history on, a session's messages
// reach the Handler in seq order.
//
// The Handler is the one owner of "does this instance have members of the
// session": it reports false when it has none and dropped the message, and
// brokers keep no set of their own for it.
type Handler func(session string, seq uint64, payload []byte) bool

// HistoryOptions turns on session history (SESSION_HISTORY_*).
type HistoryOptions struct {
	// Size is the number of messages kept per session; 0 turns history off.
	Size int
	// TTL is how long a session's history outlives its last message (and,
	// in memory, its last local member).
	TTL time.Duration
	// MaxBytes caps the payload bytes kept per session by the memory broker
	// (the oldest go first). Redis trims by count only.
	MaxBytes int
}

// History is the session history of a broker with history on. Both methods
// may do I/O: the edge calls them off its event loops.
type History interface {
	// Since returns the kept messages with seq > since, in order, with the
	// session's epoch and last seq, read at one instant. A session without
	// history gets one (a new epoch, last seq 0); a new epoch means that
	// earlier seqs mean nothing.
	Since(ctx context.Context, session string, since uint64) (Replay, error)
	// Live reports whether every message published to session from now on
	// reaches this instance's Handler (its subscription is active), so that
	// a history read now plus the live stream leave no gap. It never blocks.
	Live(session string) bool
}

// Replay is what History.Since found.
type Replay struct {
	Epoch   string
	Last    uint64  // seq of the session's latest message (0: none yet)
	Entries []Entry // seq > since, ascending; the oldest may be trimmed away
}

// Entry is one message of a session's history.
type Entry struct {
	Seq     uint64
	Payload []byte
}

// Broker is the cross-instance transport for session broadcasts.
//
// No method may block its caller on I/O: the edge calls them from gnet event
// loops. Implementations queue work and report a full queue with ErrBacklogFull.
type Broker interface {
	// Start sets the Handler and starts delivery. The edge server calls it
	// once, before any other method.
	Start(h Handler) error
	// Publish delivers payload (the JSON text of a server frame) to every
	// instance subscribed to session, this one included.
	Publish(session string, payload []byte) error
	// Subscribe starts delivery of session's messages to the Handler. The hub
	// calls it when the first local member of a session joins.
	Subscribe(session string) error
	// Unsubscribe stops delivery; called when the last local member leaves.
	Unsubscribe(session string) error
	// Close releases connections and stops goroutines.
	Close() error
}
