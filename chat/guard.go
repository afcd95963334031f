package chat

import "github.com/wsedge/wsedge/internal/ids"

// codeThreadForbidden: the socket may not continue that thread_id.
const codeThreadForbidden = "thread_forbidden"

// ThreadGuard is implemented by a Sink whose socket is subject to join
// tokens (docs/SECURITY.md): it says which existing threads the socket may
// continue, and whom its new threads belong to. Both run on the socket's
// event loop. A Sink without it may continue any thread, as before tokens.
type ThreadGuard interface {
	// MayContinue reports whether the socket may continue thread.
	MayContinue(thread string) bool
	// Owner is the token's sub, or "" without one.
	Owner() string
}

// mayContinue: a thread the socket is already on (it started or was
// allowed it) needs no new check.
func (c *Conn) mayContinue(thread string) bool {
	if thread == c.thread {
		return true
	}
	g, ok := c.sink.(ThreadGuard)
	return !ok || g.MayContinue(thread)
}

// newThread names a new thread. Under a token with a sub, the id is
// "<sub>:<random>", so a token with sid "<sub>:*" resumes every thread of
// that user and nobody else's; a sub that is not id-safe gets a bare id.
func (c *Conn) newThread() string {
	id := newThreadID()
	if g, ok := c.sink.(ThreadGuard); ok {
		if sub := g.Owner(); sub != "" && ids.Valid(sub+":"+id) {
			return sub + ":" + id
		}
	}
	return id
}
