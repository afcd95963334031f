// Package wsframe reads and writes RFC 6455 frames out of bytes already held
// in memory, for a non-blocking event loop.
//
// gobwas/ws parses the header layout; everything RFC 6455 asks of an endpoint
// beyond that (reserved bits and opcodes, control-frame rules, client masking,
// fragmentation state, UTF-8 of text and close reasons, close codes, message
// size) is enforced here.
package wsframe

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// Close codes used by the edge (RFC 6455 §7.4.1 and PROTOCOL.md).
const (
	CloseNormal        ws.StatusCode = 1000
	CloseGoingAway     ws.StatusCode = 1001
	CloseProtocolError ws.StatusCode = 1002
	CloseNoStatus      ws.StatusCode = 1005
	CloseInvalidData   ws.StatusCode = 1007
	// ClosePolicyViolation: a frame or fragmented message that did not
	// complete within the frame deadline.
	ClosePolicyViolation ws.StatusCode = 1008
	CloseTooBig          ws.StatusCode = 1009
	CloseInternalError   ws.StatusCode = 1011
	CloseTryAgainLater   ws.StatusCode = 1013
	CloseHelloRequired   ws.StatusCode = 4001
)

// Error is a protocol violation: the connection must be closed with Code.
type Error struct {
	Code   ws.StatusCode
	Reason string
}

func (e *Error) Error() string { return fmt.Sprintf("websocket %d: %s", e.Code, e.Reason) }

func violation(code ws.StatusCode, reason string) *Error { return &Error{Code: code, Reason: reason} }

// ErrIncomplete means more bytes are needed before a frame can be parsed.
var ErrIncomplete = errors.New("wsframe: incomplete frame")

// Frame is one parsed client frame. Payload is unmasked in place and aliases
// the input buffer: it is valid only as long as that buffer is.
type Frame struct {
	Header  ws.Header
	Payload []byte
}

// HeaderLen returns the header length announced by the first two bytes of a
// frame, or 0 when fewer than two bytes are held.
func HeaderLen(b []byte) int {
	if len(b) < 2 {
		return 0
	}
	n := 2
	switch b[1] & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b[1]&0x80 != 0 {
		n += 4
	}
	return n
}

// Parse reads one complete client frame from the front of b. It returns the
// frame and the number of bytes it spans; ErrIncomplete with need > 0 when b
// does not yet hold the whole frame (need is the total length required, or
// the header length when even that is missing); or an *Error for a frame that
// violates RFC 6455 or exceeds maxPayload.
//
// The payload is unmasked in place, so b is modified.
func Parse(b []byte, maxPayload int64) (f Frame, n int, need int, err error) {
	hl := HeaderLen(b)
	if hl == 0 || len(b) < hl {
		if hl == 0 {
			hl = 2
		}
		return f, 0, hl, ErrIncomplete
	}
	h, err := ws.ReadHeader(bytes.NewReader(b[:hl]))
	if err != nil {
		// Only a 64-bit length with its top bit set fails here.
		return f, 0, 0, violation(CloseProtocolError, "malformed frame header")
	}
	if verr := checkHeader(h, maxPayload); verr != nil {
		return f, 0, 0, verr
	}
	total := int64(hl) + h.Length
	if int64(len(b)) < total {
		return f, 0, int(total), ErrIncomplete
	}
	payload := b[hl:total]
	ws.Cipher(payload, h.Mask, 0)
	return Frame{Header: h, Payload: payload}, int(total), 0, nil
}

// peekHeader validates the header at the front of b, when it is complete, so
// that a frame too large or invalid is refused before its payload arrives.
// It returns the total frame length, or 0 with a nil error if the header is
// not complete yet.
func peekHeader(b []byte, maxPayload int64) (int64, error) {
	hl := HeaderLen(b)
	if hl == 0 || len(b) < hl {
		return 0, nil
	}
	h, err := ws.ReadHeader(bytes.NewReader(b[:hl]))
	if err != nil {
		return 0, violation(CloseProtocolError, "malformed frame header")
	}
	if verr := checkHeader(h, maxPayload); verr != nil {
		return 0, verr
	}
	return int64(hl) + h.Length, nil
}

func checkHeader(h ws.Header, maxPayload int64) error {
	switch {
	case h.Rsv != 0:
		return violation(CloseProtocolError, "reserved bits set without a negotiated extension")
	case h.OpCode.IsReserved():
		return violation(CloseProtocolError, "reserved opcode")
	case !h.Masked:
		return violation(CloseProtocolError, "client frames must be masked")
	case h.OpCode.IsControl() && !h.Fin:
		return violation(CloseProtocolError, "fragmented control frame")
	case h.OpCode.IsControl() && h.Length > 125:
		return violation(CloseProtocolError, "control frame payload over 125 bytes")
	case h.Length > maxPayload:
		return violation(CloseTooBig, "message too big")
	}
	return nil
}

// Assembler joins fragmented data frames into messages and enforces the
// fragmentation rules. Its zero value is ready; it holds memory only while a
// fragmented message is in flight.
type Assembler struct {
	op  ws.OpCode
	buf []byte
	// checked is how much of a fragmented text message's buf is known to be
	// valid UTF-8: everything but a trailing incomplete character, so that
	// a bad byte fails the message as soon as its fragment arrives.
	checked int
}

// InProgress reports whether a fragmented message is being assembled.
func (a *Assembler) InProgress() bool { return a.op != 0 }

// Push takes one data frame (text, binary or continuation). When it completes
// a message it returns the opcode and the message; msg aliases either the
// frame's payload (unfragmented) or the assembler's buffer, and is valid until
// the next call. Text is checked for valid UTF-8, fragment by fragment.
func (a *Assembler) Push(f Frame, maxMessage int64) (op ws.OpCode, msg []byte, done bool, err error) {
	h := f.Header
	switch h.OpCode {
	case ws.OpContinuation:
		if a.op == 0 {
			return 0, nil, false, violation(CloseProtocolError, "continuation frame without a message to continue")
		}
		if int64(len(a.buf))+int64(len(f.Payload)) > maxMessage {
			a.Reset()
			return 0, nil, false, violation(CloseTooBig, "message too big")
		}
		a.buf = append(a.buf, f.Payload...)
	case ws.OpText, ws.OpBinary:
		if a.op != 0 {
			return 0, nil, false, violation(CloseProtocolError, "new data frame inside a fragmented message")
		}
		if h.Fin {
			if h.OpCode == ws.OpText && !utf8.Valid(f.Payload) {
				return 0, nil, false, violation(CloseInvalidData, "text message is not valid UTF-8")
			}
			return h.OpCode, f.Payload, true, nil
		}
		a.op = h.OpCode
		a.buf = append(a.buf[:0], f.Payload...)
		a.checked = 0
	default:
		return 0, nil, false, violation(CloseProtocolError, "not a data frame")
	}
	if a.op == ws.OpText {
		if n, ok := validPrefix(a.buf[a.checked:], h.Fin); ok {
			a.checked += n
		} else {
			a.Reset()
			return 0, nil, false, violation(CloseInvalidData, "text message is not valid UTF-8")
		}
	}
	if !h.Fin {
		return 0, nil, false, nil
	}
	op, msg = a.op, a.buf
	a.op, a.buf, a.checked = 0, a.buf[:0], 0
	return op, msg, true, nil
}

// validPrefix reports whether b can begin valid UTF-8 (final: whether it is
// valid UTF-8), and how many of its bytes are whole valid characters; the
// rest, at most three bytes, is an incomplete character that the next
// fragment may complete.
func validPrefix(b []byte, final bool) (int, bool) {
	if final {
		return len(b), utf8.Valid(b)
	}
	// Find the start of a trailing incomplete character, if any.
	cut := len(b)
	for i := len(b) - 1; i >= 0 && i >= len(b)-3; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				cut = i
			}
			break
		}
	}
	if !utf8.Valid(b[:cut]) {
		return 0, false
	}
	tail := b[cut:]
	if len(tail) == 0 {
		return cut, true
	}
	// Does some continuation make tail a valid character? The lead byte
	// fixes the length; once the second byte is given (it carries the
	// only range restriction: overlongs, surrogates, > U+10FFFF), 0x80
	// completes any valid prefix.
	var n int
	switch l := tail[0]; {
	case l >= 0xC2 && l <= 0xDF:
		n = 2
	case l >= 0xE0 && l <= 0xEF:
		n = 3
	case l >= 0xF0 && l <= 0xF4:
		n = 4
	default:
		return 0, false
	}
	if len(tail) == 1 {
		return cut, true
	}
	var r [4]byte
	copy(r[:], tail)
	for i := len(tail); i < n; i++ {
		r[i] = 0x80
	}
	return cut, utf8.Valid(r[:n])
}

// Release drops the assembly buffer after a large fragmented message so that
// an idle connection keeps no grown buffer.
func (a *Assembler) Release() {
	if cap(a.buf) > 4096 {
		a.buf = nil
	}
}

// Reset abandons any message in progress.
func (a *Assembler) Reset() { a.op, a.buf, a.checked = 0, nil, 0 }

// ParseClose validates a close frame's payload (RFC 6455 §5.5.1, §7.4).
// An empty payload yields CloseNoStatus.
func ParseClose(p []byte) (ws.StatusCode, string, error) {
	switch {
	case len(p) == 0:
		return CloseNoStatus, "", nil
	case len(p) == 1:
		return 0, "", violation(CloseProtocolError, "close payload of one byte")
	}
	code := ws.StatusCode(binary.BigEndian.Uint16(p))
	if !validCloseCode(code) {
		return 0, "", violation(CloseProtocolError, fmt.Sprintf("invalid close code %d", code))
	}
	reason := p[2:]
	if !utf8.Valid(reason) {
		return 0, "", violation(CloseInvalidData, "close reason is not valid UTF-8")
	}
	return code, string(reason), nil
}

// validCloseCode: codes a peer may send. 1004-1006 and 1015 are reserved for
// local use, 1016-2999 are unassigned or for extensions, 0-999 unused.
func validCloseCode(c ws.StatusCode) bool {
	switch {
	case c >= 1000 && c <= 1003, c >= 1007 && c <= 1014:
		return true
	case c >= 3000 && c <= 4999:
		return true
	}
	return false
}

// AppendFrame appends an unmasked server frame with a single fin fragment.
func AppendFrame(dst []byte, op ws.OpCode, payload []byte) []byte {
	h := ws.Header{Fin: true, OpCode: op, Length: int64(len(payload))}
	n := ws.HeaderSize(h)
	dst = append(dst, make([]byte, n)...)
	hdr := dst[len(dst)-n:]
	w := sliceWriter{b: hdr[:0]}
	_ = ws.WriteHeader(&w, h)
	return append(dst, payload...)
}

// Headroom is the space to leave in front of a payload built in place (the
// largest server frame header), for TextInPlace.
const Headroom = 10

// TextInPlace turns buf, whose first Headroom bytes are free and whose rest
// is the payload, into a text frame without copying the payload: the header
// is written just before it. Large frames (presence answers) are built this
// way.
func TextInPlace(buf []byte) []byte {
	payload := buf[Headroom:]
	h := ws.Header{Fin: true, OpCode: ws.OpText, Length: int64(len(payload))}
	n := ws.HeaderSize(h)
	w := sliceWriter{b: buf[Headroom-n : Headroom-n]}
	_ = ws.WriteHeader(&w, h)
	return buf[Headroom-n:]
}

// Text returns a new text frame holding payload.
func Text(payload []byte) []byte {
	return AppendFrame(make([]byte, 0, len(payload)+10), ws.OpText, payload)
}

// CloseFrame returns a close frame with code and reason (reason is cut to fit
// the 125-byte control frame limit).
func CloseFrame(code ws.StatusCode, reason string) []byte {
	if len(reason) > 123 {
		reason = reason[:123]
		for !utf8.ValidString(reason) {
			reason = reason[:len(reason)-1]
		}
	}
	return AppendFrame(nil, ws.OpClose, ws.NewCloseFrameBody(code, reason))
}

type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}
