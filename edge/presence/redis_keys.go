package presence

import (
	"strconv"
	"strings"
)

// The Redis store's key layout and the encodings of its values.

// Key layout. The session set and the connection hash are the original Django
// server's, read by existing tools; the rest is this store's liveness
// bookkeeping.
const (
	keySession   = "ws:presence:session:"  // SET of connection ids
	keyConn      = "ws:presence:conn:"     // HASH user_type, client_type, connected_at, last_seen, session_id, instance
	keyMembers   = "ws:presence:members:"  // HASH connection id -> encodeMember(...): what Members reads
	keyInstance  = "ws:presence:instance:" // STRING: unix seconds of the last heartbeat, EX ttl; + ":conns" SET of "<conn> <session>"
	keyInstances = "ws:presence:instances" // SET of instance ids that may own entries
	keyJanitor   = "ws:presence:janitor"   // STRING lock: which instance cleans up dead ones this round
)

// indexEntry names a member in an instance's index; connection ids never
// contain a space.
func indexEntry(conn, session string) string { return conn + " " + session }

// encodeMember is the aggregate hash's value: connection id, instance and
// connection time separated by NUL, then the user_type's length, NUL, and
// user_type and client_type back to back (they are client-chosen text, so
// they are framed by length, not by a separator).
func encodeMember(m Member, inst string) string {
	var b strings.Builder
	b.Grow(len(m.ConnectionID) + len(inst) + len(m.UserType) + len(m.ClientType) + 24)
	b.WriteString(m.ConnectionID)
	b.WriteByte(0)
	b.WriteString(inst)
	b.WriteByte(0)
	b.WriteString(strconv.FormatInt(m.ConnectedAt, 10))
	b.WriteByte(0)
	b.WriteString(strconv.Itoa(len(m.UserType)))
	b.WriteByte(0)
	b.WriteString(m.UserType)
	b.WriteString(m.ClientType)
	return b.String()
}

// decodeMember parses encodeMember's output. The strings it returns share
// v's memory.
func decodeMember(v string) (m Member, inst string, ok bool) {
	var at, ulen string
	if m.ConnectionID, v, ok = strings.Cut(v, "\x00"); !ok || m.ConnectionID == "" {
		return Member{}, "", false
	}
	if inst, v, ok = strings.Cut(v, "\x00"); !ok || inst == "" {
		return Member{}, "", false
	}
	if at, v, ok = strings.Cut(v, "\x00"); !ok {
		return Member{}, "", false
	}
	if ulen, v, ok = strings.Cut(v, "\x00"); !ok {
		return Member{}, "", false
	}
	var err error
	if m.ConnectedAt, err = strconv.ParseInt(at, 10, 64); err != nil {
		return Member{}, "", false
	}
	n, err := strconv.Atoi(ulen)
	if err != nil || n < 0 || n > len(v) {
		return Member{}, "", false
	}
	m.UserType, m.ClientType = v[:n], v[n:]
	return m, inst, true
}
