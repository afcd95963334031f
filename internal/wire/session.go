package wire

import (
	"bytes"
	"encoding/json"
	"strconv"

	"github.com/wsedge/wsedge/edge/presence"
)

// Connected is a session socket's first frame (PROTOCOL.md §1); the epoch is
// added with session history on. session and id need no escaping (ids.Valid,
// hex).
func Connected(session, id, epoch string, withEpoch bool) []byte {
	b := make([]byte, 0, 128)
	b = append(b, `{"type":"connected","session_id":"`...)
	b = append(b, session...)
	b = append(b, `","connection_id":"`...)
	b = append(b, id...)
	b = append(b, `","user_type_required":true`...)
	if withEpoch {
		b = append(b, `,"epoch":`...)
		b = append(b, String(epoch)...)
	}
	return append(b, '}')
}

// AppendSessionMessage appends a session_message. userType and clientType
// are JSON strings, msg and data JSON values, all copied as they are (a
// broadcast's msg and data reach listeners byte for byte as the sender wrote
// them); empty msg or data is null.
func AppendSessionMessage(dst []byte, userType, clientType string, msg, data []byte) []byte {
	if len(msg) == 0 {
		msg = null
	}
	if len(data) == 0 {
		data = null
	}
	dst = append(dst, `{"type":"session_message","user_type":`...)
	dst = append(dst, userType...)
	dst = append(dst, `,"client_type":`...)
	dst = append(dst, clientType...)
	dst = append(dst, `,"msg":`...)
	dst = append(dst, msg...)
	dst = append(dst, `,"data":`...)
	dst = append(dst, data...)
	return append(dst, '}')
}

// SessionMessageLen is the length of AppendSessionMessage's output, for
// sizing its buffer.
func SessionMessageLen(userType, clientType string, msg, data []byte) int {
	return len(`{"type":"session_message","user_type":,"client_type":,"msg":,"data":}`) +
		len(userType) + len(clientType) + max(len(msg), 4) + max(len(data), 4)
}

var null = []byte("null")

// AppendSeq returns payload (a JSON object) with "seq" as its last member.
// seq 0 (history off) leaves payload as it is, byte for byte.
func AppendSeq(payload []byte, seq uint64) []byte {
	n := len(payload)
	if seq == 0 || n < 2 || payload[n-1] != '}' {
		return payload
	}
	out := make([]byte, 0, n+28)
	out = append(out, payload[:n-1]...)
	if n > 2 || payload[0] != '{' {
		out = append(out, ',')
	}
	out = append(out, `"seq":`...)
	out = strconv.AppendUint(out, seq, 10)
	return append(out, '}')
}

// AppendEcho appends the echo of a client message that is not a command:
// {"type":"echo","data":<msg without surrounding white space>}.
func AppendEcho(dst, msg []byte) []byte {
	dst = append(dst, `{"type":"echo","data":`...)
	dst = append(dst, bytes.TrimSpace(msg)...)
	return append(dst, '}')
}

// Reconnect tells a client to reconnect after afterMS milliseconds (drain).
func Reconnect(afterMS int64) []byte {
	b := strconv.AppendInt([]byte(`{"type":"reconnect","after_ms":`), afterMS, 10)
	return append(b, '}')
}

// RecoveryFailed answers a resume that cannot be served (PROTOCOL.md §1.7);
// the current epoch and last seq are added when known. reason needs no
// escaping (one of the documented reasons).
func RecoveryFailed(reason, epoch string, last uint64, known bool) []byte {
	b := make([]byte, 0, 96)
	b = append(b, `{"type":"recovery_failed","reason":"`...)
	b = append(b, reason...)
	b = append(b, '"')
	if known {
		b = append(b, `,"epoch":`...)
		b = append(b, String(epoch)...)
		b = append(b, `,"seq":`...)
		b = strconv.AppendUint(b, last, 10)
	}
	return append(b, '}')
}

// Refreshed confirms a token refresh; exp is the new token's expiry (Unix
// seconds).
func Refreshed(exp int64) []byte {
	b := append([]byte(`{"type":"refreshed","exp":`), strconv.FormatInt(exp, 10)...)
	return append(b, '}')
}

// TokenExpired precedes the close of a socket whose join token expired.
func TokenExpired() []byte { return []byte(`{"type":"token_expired"}`) }

// AppendPresence appends the presence answer of PROTOCOL.md §1. The members
// array is the bulk of a large answer, so it is appended without reflection.
// count is always the whole session; members holds at most limit of them,
// by_type at most limit client types, and dst (what it held before
// included) stays within budget bytes; when anything is left out, "truncated"
// is true. session needs no escaping (ids.Valid).
func AppendPresence(dst []byte, session string, members []presence.Member, limit, budget int) []byte {
	truncated := false
	byType := map[string]int{}
	for _, m := range members {
		if _, seen := byType[m.ClientType]; seen || len(byType) < limit {
			byType[m.ClientType]++
		} else {
			truncated = true
		}
	}
	bt, _ := json.Marshal(byType)
	b := append(dst, `{"type":"presence","session_id":"`...)
	b = append(b, session...)
	b = append(b, `","count":`...)
	b = strconv.AppendInt(b, int64(len(members)), 10)
	b = append(b, `,"by_type":`...)
	if len(b)+len(bt) > budget/2 {
		// Only types longer than the edge allows (written to a shared
		// store by something else) get here.
		bt, truncated = []byte("{}"), true
	}
	b = append(b, bt...)
	b = append(b, `,"members":[`...)
	const tail = len(`],"truncated":false}`)
	for i := range members {
		if i == limit {
			truncated = true
			break
		}
		mark := len(b)
		if i > 0 {
			b = append(b, ',')
		}
		b = presence.AppendMemberJSON(b, &members[i])
		if len(b)+tail > budget {
			b, truncated = b[:mark], true
			break
		}
	}
	b = append(b, `],"truncated":`...)
	b = strconv.AppendBool(b, truncated)
	return append(b, '}')
}
