// Package broker moves session messages between wsedge instances.
//
// The memory broker serves a single instance; the Redis broker (rueidis) fans
// out across every instance that has local members of a session.
package broker

import "errors"

// ErrBacklogFull is returned by Publish when the broker's outgoing queue is at
// its cap. The caller tells the client (the message is not sent) instead of
// letting memory grow while Redis is slow or away.
var ErrBacklogFull = errors.New("broker: publish backlog full")

// ErrClosed is returned by calls made after Close.
var ErrClosed = errors.New("broker: closed")

// Handler receives every message published to a session this instance is
// subscribed to, in the order of publication per publisher. It runs on a broker
// goroutine (or, for the memory broker, on the publisher's goroutine) and must
// not block. payload is immutable and may be retained.
type Handler func(session string, payload []byte)

// Broker is the cross-instance transport for session broadcasts.
//
// No method may block its caller on I/O: the edge calls them from gnet event
// loops. Implementations queue work and report a full queue with ErrBacklogFull.
type Broker interface {
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
