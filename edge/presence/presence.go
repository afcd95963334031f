// Package presence records which connections are members of a session, on
// every instance of a deployment.
//
// The memory store serves a single instance; the Redis store keeps the seed's
// key layout (ws:presence:session:<id> set, ws:presence:conn:<conn_id> hash) so
// that existing tools that read those keys keep working.
package presence

import (
	"context"
	"errors"
)

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

// Ref names a member for refreshes and removal.
type Ref struct {
	SessionID    string
	ConnectionID string
}

// Store is a presence backend.
//
// Join, Leave and Touch are called from gnet event loops or the edge's sweeper
// and must not block on I/O: a networked store queues and batches them.
// Members may block (bounded by ctx) and is always called off the event loop.
type Store interface {
	// Join adds m to its session.
	Join(m Member) error
	// Leave removes a member.
	Leave(r Ref) error
	// Touch marks members as alive at now (Unix seconds). The edge calls it
	// in one batch per refresh interval with every local member it holds.
	Touch(refs []Ref, now int64) error
	// Members lists the members of a session across all instances.
	Members(ctx context.Context, sessionID string) ([]Member, error)
	// Close flushes what is queued and releases resources.
	Close() error
}
