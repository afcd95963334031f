package wsframe

import (
	"bytes"
	"errors"
	"testing"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// fuzzMax is small so that the 1009 paths are reached by short inputs.
const fuzzMax = 1024

// FuzzParse feeds arbitrary bytes through Parse and the Assembler the way
// the edge's read loop does, and checks what each step promises.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		orig := append([]byte{}, data...)
		buf := data
		var asm Assembler
		off := 0
		for off < len(buf) {
			rest := buf[off:]
			hl := HeaderLen(rest)
			total, perr := peekHeader(rest, fuzzMax)
			fr, n, need, err := Parse(rest, fuzzMax)
			switch {
			case err == ErrIncomplete:
				if n != 0 || need <= len(rest) || need < 2 || need > maxFrame {
					t.Fatalf("incomplete at %d: n=%d need=%d len=%d", off, n, need, len(rest))
				}
				if !bytes.Equal(rest, orig[off:]) {
					t.Fatal("Parse modified the input it could not parse")
				}
				if hl != 0 && len(rest) >= hl && (perr != nil || total != int64(need)) {
					t.Fatalf("peekHeader = %d, %v; Parse needs %d", total, perr, need)
				}
				if (hl == 0 || len(rest) < hl) && (perr != nil || total != 0) {
					t.Fatalf("peekHeader on a partial header = %d, %v", total, perr)
				}
				return
			case err != nil:
				var v *Error
				if !errors.As(err, &v) || (v.Code != CloseProtocolError && v.Code != CloseTooBig) {
					t.Fatalf("Parse error %v is not a 1002/1009 violation", err)
				}
				var pv *Error
				if !errors.As(perr, &pv) || pv.Code != v.Code || n != 0 || need != 0 {
					t.Fatalf("Parse says %v, peekHeader says %d, %v", err, total, perr)
				}
				return
			}
			if perr != nil || total != int64(n) || n <= 0 || n > len(rest) || need != 0 {
				t.Fatalf("Parse n=%d need=%d, peekHeader %d %v, len=%d", n, need, total, perr, len(rest))
			}
			h := fr.Header
			if h.Rsv != 0 || !h.Masked || h.OpCode.IsReserved() || h.Length > fuzzMax ||
				(h.OpCode.IsControl() && (!h.Fin || h.Length > 125)) {
				t.Fatalf("accepted a header RFC 6455 forbids: %+v", h)
			}
			if n != hl+len(fr.Payload) || int64(len(fr.Payload)) != h.Length {
				t.Fatalf("n=%d, header %d + payload %d (length %d)", n, hl, len(fr.Payload), h.Length)
			}
			checkReencode(t, orig[off:off+n], fr)
			// Every proper prefix of an accepted frame only asks for more.
			for _, k := range []int{n - 1, hl - 1, hl, 1} {
				if k < 0 || k >= n {
					continue
				}
				pre := append([]byte{}, orig[off:off+k]...)
				if _, pn, pneed, perr := Parse(pre, fuzzMax); perr != ErrIncomplete || pn != 0 || pneed <= k || pneed > n {
					t.Fatalf("prefix of %d/%d bytes: n=%d need=%d err=%v", k, n, pn, pneed, perr)
				}
			}

			off += n
			switch h.OpCode {
			case ws.OpPing, ws.OpPong:
				pong := AppendFrame(nil, ws.OpPong, fr.Payload)
				back, err := ws.ReadFrame(bytes.NewReader(pong))
				if err != nil || !bytes.Equal(back.Payload, fr.Payload) {
					t.Fatalf("pong does not carry the ping's payload: %v", err)
				}
			case ws.OpClose:
				checkClose(t, fr.Payload)
				return // nothing is read after a close frame
			default:
				op, msg, done, err := asm.Push(fr, fuzzMax)
				if err != nil {
					var v *Error
					if !errors.As(err, &v) || (v.Code != CloseProtocolError && v.Code != CloseInvalidData && v.Code != CloseTooBig) {
						t.Fatalf("Push error %v is not a 1002/1007/1009 violation", err)
					}
					return
				}
				if !done {
					if !asm.InProgress() || msg != nil {
						t.Fatal("fragment taken but no message in progress")
					}
					continue
				}
				if asm.InProgress() || (op != ws.OpText && op != ws.OpBinary) || len(msg) > fuzzMax {
					t.Fatalf("message op %v, %d bytes, in progress %v", op, len(msg), asm.InProgress())
				}
				if op == ws.OpText && !utf8.Valid(msg) {
					t.Fatal("text message with invalid UTF-8 accepted")
				}
			}
		}
	})
}

// maxFrame bounds what Parse may ask for with fuzzMax: a 14-byte header and
// the largest payload.
const maxFrame = 14 + fuzzMax

// checkReencode: encoding the parsed frame again with gobwas/ws gives a
// frame Parse reads back identically, and the very same bytes when the input
// used the shortest length encoding.
func checkReencode(t *testing.T, raw []byte, fr Frame) {
	t.Helper()
	again, err := ws.CompileFrame(ws.MaskFrameWith(ws.Frame{Header: fr.Header, Payload: fr.Payload}, fr.Header.Mask))
	if err != nil {
		t.Fatalf("re-encode: %v", err)
	}
	if ws.HeaderSize(fr.Header) == HeaderLen(raw) && !bytes.Equal(again, raw) {
		t.Fatalf("re-encoding differs:\n got % x\nwant % x", again, raw)
	}
	fr2, n2, _, err := Parse(again, fuzzMax)
	if err != nil || n2 != len(again) || fr2.Header != fr.Header || !bytes.Equal(fr2.Payload, fr.Payload) {
		t.Fatalf("re-encoded frame parses as %+v, %v", fr2.Header, err)
	}
}

// checkClose: a close payload is refused with 1002/1007, or yields a code
// and reason that our own CloseFrame encodes back unchanged.
func checkClose(t *testing.T, p []byte) {
	t.Helper()
	code, reason, err := ParseClose(p)
	if err != nil {
		var v *Error
		if !errors.As(err, &v) || (v.Code != CloseProtocolError && v.Code != CloseInvalidData) {
			t.Fatalf("ParseClose error %v is not a 1002/1007 violation", err)
		}
		return
	}
	if len(p) == 0 {
		if code != CloseNoStatus || reason != "" {
			t.Fatalf("empty close payload gave %d %q", code, reason)
		}
		return
	}
	if !peerCloseCode(code) || !utf8.ValidString(reason) || len(reason) != len(p)-2 {
		t.Fatalf("accepted close %d %q from % x", code, reason, p)
	}
	back, err := ws.ReadFrame(bytes.NewReader(CloseFrame(code, reason)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back.Payload, p) {
		t.Fatalf("CloseFrame(%d, %q) = % x, want % x", code, reason, back.Payload, p)
	}
}

// peerCloseCode restates RFC 6455 §7.4 independently of the code under test.
func peerCloseCode(c ws.StatusCode) bool {
	return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999)
}
