// Package presence records which connections are members of a session, on
// every instance of a deployment.
//
// The memory store serves a single instance; the Redis store keeps the original
// Django server's key layout (ws:presence:session:<id> set,
// ws:presence:conn:<conn_id> hash) so that existing tools that read those keys
// keep working.
package presence

import (
	"context"
	"errors"
)

// ErrClosed is returned by Join and Leave after Close.
var ErrClosed = errors.New("presence: closed")

// ErrUnavailable is returned by Members when the backing store cannot answer
// in time; the edge turns it into a presence_unavailable error frame.
var ErrUnavailable = errors.New("presence: unavailable")

// Member is one connection's presence record. Times are Unix seconds.
type Member struct {
	SessionID    string `json:"-"`
	ConnectionID string `json:"connection_id"`
	UserType     string `json:"user_type"`
	ClientType   string `json:"client_type"`
	ConnectedAt  int64  `json:"connected_at"`
	LastSeen     int64  `json:"last_seen"`
}

// Ref names a member for removal.
type Ref struct {
	SessionID    string
	ConnectionID string
}

// Store is a presence backend.
//
// Join and Leave are called from gnet event loops and must not block on I/O:
// a networked store queues and batches them. Members may block (bounded by
// ctx) and is always called off the event loop.
//
// Liveness is the store's own business: an idle connection must cost no
// per-connection work per interval, so a networked store keeps its members
// alive through one per-instance heartbeat and reports LastSeen as the time
// this instance last confirmed them (the memory store: the time of the call).
type Store interface {
	// Join adds m to its session.
	Join(m Member) error
	// Leave removes a member.
	Leave(r Ref) error
	// Members lists the members of a session across all instances.
	Members(ctx context.Context, sessionID string) ([]Member, error)
	// Close flushes what is queued and releases resources.
	Close() error
}
