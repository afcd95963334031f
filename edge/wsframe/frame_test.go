package wsframe

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/gobwas/ws"
)

var testMask = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// clientFrame compiles a masked client frame with gobwas/ws, the way a
// browser would send it.
func clientFrame(t testing.TB, fin bool, op ws.OpCode, payload []byte) []byte {
	t.Helper()
	return compile(t, ws.MaskFrameWith(ws.NewFrame(op, fin, payload), testMask))
}

func compile(t testing.TB, f ws.Frame) []byte {
	t.Helper()
	b, err := ws.CompileFrame(f)
	if err != nil {
		t.Fatalf("compile frame: %v", err)
	}
	return b
}

// parsed returns the Frame Parse yields for a compiled client frame.
func parsed(t testing.TB, fin bool, op ws.OpCode, payload []byte) Frame {
	t.Helper()
	b := clientFrame(t, fin, op, payload)
	f, n, _, err := Parse(b, 1<<30)
	if err != nil || n != len(b) {
		t.Fatalf("parse %v frame: n=%d err=%v", op, n, err)
	}
	return f
}

func wantCode(t *testing.T, err error, code ws.StatusCode) {
	t.Helper()
	var v *Error
	if !errors.As(err, &v) {
		t.Fatalf("err = %v, want *Error with code %d", err, code)
	}
	if v.Code != code {
		t.Fatalf("close code = %d (%s), want %d", v.Code, v.Reason, code)
	}
	if v.Error() == "" || v.Reason == "" {
		t.Fatalf("violation without a reason: %#v", v)
	}
}

func TestHeaderLen(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
		want int
	}{
		{"empty", nil, 0},
		{"one byte", []byte{0x81}, 0},
		{"7-bit unmasked", []byte{0x81, 0x05}, 2},
		{"7-bit masked", []byte{0x81, 0x85}, 6},
		{"7-bit 125 masked", []byte{0x81, 0x80 | 125}, 6},
		{"16-bit unmasked", []byte{0x82, 126}, 4},
		{"16-bit masked", []byte{0x82, 0x80 | 126}, 8},
		{"64-bit unmasked", []byte{0x82, 127}, 10},
		{"64-bit masked", []byte{0x82, 0x80 | 127}, 14},
		{"ignores what follows", []byte{0x81, 0x80 | 127, 0xff, 0xff}, 14},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := HeaderLen(tc.b); got != tc.want {
				t.Fatalf("HeaderLen(% x) = %d, want %d", tc.b, got, tc.want)
			}
		})
	}
	// Agrees with gobwas/ws for every length encoding.
	for _, n := range []int{0, 1, 125, 126, 127, 65535, 65536} {
		f := ws.MaskFrameWith(ws.NewBinaryFrame(make([]byte, n)), testMask)
		if got, want := HeaderLen(compile(t, f)), ws.HeaderSize(f.Header); got != want {
			t.Errorf("payload %d: HeaderLen = %d, ws.HeaderSize = %d", n, got, want)
		}
	}
}

func TestParseValid(t *testing.T) {
	for _, tc := range []struct {
		name    string
		fin     bool
		op      ws.OpCode
		payload []byte
		lenByte byte // the 7-bit length field the encoding must use
	}{
		{"empty text", true, ws.OpText, nil, 0},
		{"text", true, ws.OpText, []byte(`{"type":"hello"}`), 16},
		{"text 125 (largest 7-bit)", true, ws.OpText, bytes.Repeat([]byte("a"), 125), 125},
		{"binary 126 (smallest 16-bit)", true, ws.OpBinary, bytes.Repeat([]byte{0xff}, 126), 126},
		{"binary 65535 (largest 16-bit)", true, ws.OpBinary, bytes.Repeat([]byte{7}, 65535), 126},
		{"binary 65536 (smallest 64-bit)", true, ws.OpBinary, bytes.Repeat([]byte{9}, 65536), 127},
		{"text first fragment", false, ws.OpText, []byte("frag"), 4},
		{"continuation", false, ws.OpContinuation, []byte("more"), 4},
		{"final continuation", true, ws.OpContinuation, []byte("end"), 3},
		{"ping", true, ws.OpPing, []byte("are you there"), 13},
		{"ping 125", true, ws.OpPing, bytes.Repeat([]byte("p"), 125), 125},
		{"pong empty", true, ws.OpPong, nil, 0},
		{"close", true, ws.OpClose, ws.NewCloseFrameBody(1000, "bye"), 5},
		{"close empty", true, ws.OpClose, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := clientFrame(t, tc.fin, tc.op, tc.payload)
			if got := b[1] & 0x7f; got != tc.lenByte {
				t.Fatalf("encoding uses length byte %d, want %d", got, tc.lenByte)
			}
			// A second frame behind the first must not be consumed.
			next := clientFrame(t, true, ws.OpPing, []byte("next"))
			buf := append(append([]byte{}, b...), next...)
			f, n, need, err := Parse(buf, 1<<20)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if n != len(b) || need != 0 {
				t.Fatalf("n=%d need=%d, want n=%d need=0", n, need, len(b))
			}
			h := f.Header
			if h.Fin != tc.fin || h.OpCode != tc.op || h.Rsv != 0 || !h.Masked || h.Mask != testMask || h.Length != int64(len(tc.payload)) {
				t.Fatalf("header = %+v", h)
			}
			if !bytes.Equal(f.Payload, tc.payload) {
				t.Fatalf("payload not unmasked: got % x, want % x", head(f.Payload), head(tc.payload))
			}
			// The payload is unmasked in place and aliases the input.
			if len(f.Payload) > 0 && &f.Payload[0] != &buf[HeaderLen(buf)] {
				t.Fatal("payload does not alias the input buffer")
			}
			f2, n2, _, err := Parse(buf[n:], 1<<20)
			if err != nil || n2 != len(next) || string(f2.Payload) != "next" {
				t.Fatalf("second frame: n=%d err=%v payload=%q", n2, err, f2.Payload)
			}
		})
	}
}

func head(b []byte) []byte {
	if len(b) > 16 {
		return b[:16]
	}
	return b
}

func TestParseViolations(t *testing.T) {
	withRsv := func(rsv byte) []byte {
		f := ws.MaskFrameWith(ws.NewTextFrame([]byte("x")), testMask)
		f.Header.Rsv = rsv
		return compile(t, f)
	}
	// 64-bit length with the most significant bit set (RFC 6455 §5.2),
	// crafted by hand: gobwas/ws refuses to encode it.
	msb := append([]byte{0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 1}, testMask[:]...)
	// The same length minus the MSB is merely too big.
	huge := append([]byte{0x82, 0x80 | 127, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, testMask[:]...)

	for _, tc := range []struct {
		name string
		b    []byte
		max  int64
		code ws.StatusCode
	}{
		{"rsv1", withRsv(ws.Rsv(true, false, false)), 1 << 20, CloseProtocolError},
		{"rsv2", withRsv(ws.Rsv(false, true, false)), 1 << 20, CloseProtocolError},
		{"rsv3", withRsv(ws.Rsv(false, false, true)), 1 << 20, CloseProtocolError},
		{"all rsv", withRsv(7), 1 << 20, CloseProtocolError},
		{"opcode 3", clientFrame(t, true, 0x3, []byte("x")), 1 << 20, CloseProtocolError},
		{"opcode 7", clientFrame(t, true, 0x7, nil), 1 << 20, CloseProtocolError},
		{"opcode 0xb", clientFrame(t, true, 0xb, nil), 1 << 20, CloseProtocolError},
		{"opcode 0xf", clientFrame(t, true, 0xf, []byte("x")), 1 << 20, CloseProtocolError},
		{"unmasked text", compile(t, ws.NewTextFrame([]byte("hi"))), 1 << 20, CloseProtocolError},
		{"unmasked close", compile(t, ws.NewCloseFrame(ws.NewCloseFrameBody(1000, ""))), 1 << 20, CloseProtocolError},
		{"fragmented ping", clientFrame(t, false, ws.OpPing, []byte("x")), 1 << 20, CloseProtocolError},
		{"fragmented close", clientFrame(t, false, ws.OpClose, nil), 1 << 20, CloseProtocolError},
		{"fragmented pong", clientFrame(t, false, ws.OpPong, nil), 1 << 20, CloseProtocolError},
		{"ping 126 bytes", clientFrame(t, true, ws.OpPing, make([]byte, 126)), 1 << 20, CloseProtocolError},
		{"close 126 bytes", clientFrame(t, true, ws.OpClose, append([]byte{3, 232}, make([]byte, 124)...)), 1 << 20, CloseProtocolError},
		{"pong 65536 bytes", clientFrame(t, true, ws.OpPong, make([]byte, 65536)), 1 << 20, CloseProtocolError},
		{"text over max", clientFrame(t, true, ws.OpText, make([]byte, 101)), 100, CloseTooBig},
		{"binary over max 16-bit", clientFrame(t, true, ws.OpBinary, make([]byte, 1000)), 999, CloseTooBig},
		{"continuation over max", clientFrame(t, false, ws.OpContinuation, make([]byte, 200)), 100, CloseTooBig},
		{"64-bit length with msb", msb, 1 << 20, CloseProtocolError},
		{"largest 63-bit length", huge, 1 << 20, CloseTooBig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hl := HeaderLen(tc.b)
			// The header alone is enough to refuse the frame: no payload
			// is buffered for a frame that will be rejected.
			for _, b := range [][]byte{tc.b, tc.b[:hl]} {
				_, n, need, err := Parse(append([]byte{}, b...), tc.max)
				wantCode(t, err, tc.code)
				if n != 0 || need != 0 {
					t.Fatalf("n=%d need=%d on error", n, need)
				}
				total, err := peekHeader(b, tc.max)
				wantCode(t, err, tc.code)
				if total != 0 {
					t.Fatalf("peekHeader total = %d on error", total)
				}
			}
		})
	}
}

func TestParseMaxPayloadBoundary(t *testing.T) {
	b := clientFrame(t, true, ws.OpText, bytes.Repeat([]byte("a"), 100))
	if _, n, _, err := Parse(append([]byte{}, b...), 100); err != nil || n != len(b) {
		t.Fatalf("payload == max: n=%d err=%v", n, err)
	}
	_, _, _, err := Parse(append([]byte{}, b...), 99)
	wantCode(t, err, CloseTooBig)
	// A control frame is bounded by 125 whatever the message limit.
	ping := clientFrame(t, true, ws.OpPing, make([]byte, 125))
	if _, _, _, err := Parse(ping, 1<<20); err != nil {
		t.Fatalf("ping 125: %v", err)
	}
}

func TestParseIncomplete(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty payload", clientFrame(t, true, ws.OpText, nil)},
		{"7-bit", clientFrame(t, true, ws.OpText, []byte("hello, world"))},
		{"close", clientFrame(t, true, ws.OpClose, ws.NewCloseFrameBody(1001, "going"))},
		{"16-bit", clientFrame(t, true, ws.OpBinary, bytes.Repeat([]byte{1}, 300))},
		{"64-bit", clientFrame(t, true, ws.OpBinary, bytes.Repeat([]byte{2}, 70000))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hl := HeaderLen(tc.b)
			for i := 0; i < len(tc.b); i++ {
				want := len(tc.b)
				switch {
				case i < 2:
					want = 2
				case i < hl:
					want = hl
				}
				// No copy: Parse modifies nothing when it needs more bytes.
				_, n, need, err := Parse(tc.b[:i:i], 1<<20)
				if err != ErrIncomplete || n != 0 || need != want {
					t.Fatalf("Parse(first %d of %d bytes) = n %d, need %d, err %v; want 0, %d, ErrIncomplete", i, len(tc.b), n, need, err, want)
				}
				total, err := peekHeader(tc.b[:i], 1<<20)
				wantTotal := int64(len(tc.b))
				if i < hl {
					wantTotal = 0
				}
				if err != nil || total != wantTotal {
					t.Fatalf("peekHeader(first %d bytes) = %d, %v; want %d, nil", i, total, err, wantTotal)
				}
			}
			f, n, need, err := Parse(append([]byte{}, tc.b...), 1<<20)
			if err != nil || n != len(tc.b) || need != 0 || int64(len(f.Payload)) != f.Header.Length {
				t.Fatalf("complete frame: n=%d need=%d err=%v", n, need, err)
			}
		})
	}
}

func TestMaskingRoundTrip(t *testing.T) {
	payloads := [][]byte{nil, {0}, []byte("abc"), []byte("four"), []byte("fives"), bytes.Repeat([]byte{0xa5, 0x00, 0xff}, 1000)}
	masks := [][4]byte{{0, 0, 0, 0}, {0xff, 0xff, 0xff, 0xff}, {1, 2, 3, 4}, testMask}
	for _, p := range payloads {
		for _, m := range masks {
			f := ws.MaskFrameWith(ws.NewBinaryFrame(p), m)
			b := compile(t, f)
			if m != ([4]byte{}) && len(p) > 0 && bytes.Contains(b, p) {
				t.Fatalf("mask %x left payload in clear", m)
			}
			got, _, _, err := Parse(b, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			if got.Header.Mask != m || !bytes.Equal(got.Payload, p) {
				t.Fatalf("mask %x, payload %d bytes: round trip differs", m, len(p))
			}
		}
	}
}

func TestAppendFrame(t *testing.T) {
	for _, tc := range []struct {
		name    string
		op      ws.OpCode
		n       int
		lenByte byte
	}{
		{"text empty", ws.OpText, 0, 0},
		{"text 125", ws.OpText, 125, 125},
		{"binary 126", ws.OpBinary, 126, 126},
		{"binary 65535", ws.OpBinary, 65535, 126},
		{"binary 65536", ws.OpBinary, 65536, 127},
		{"pong", ws.OpPong, 4, 4},
		{"close", ws.OpClose, 2, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			payload := make([]byte, tc.n)
			for i := range payload {
				payload[i] = byte(i * 7)
			}
			for _, prefix := range [][]byte{nil, []byte("earlier frames"), append(make([]byte, 3, 1<<17), 'x')} {
				before := append([]byte{}, prefix...)
				out := AppendFrame(prefix, tc.op, payload)
				if !bytes.Equal(out[:len(before)], before) {
					t.Fatal("AppendFrame changed what dst held")
				}
				fr := out[len(before):]
				if fr[1]&0x7f != tc.lenByte {
					t.Fatalf("length byte %d, want %d", fr[1]&0x7f, tc.lenByte)
				}
				got, err := ws.ReadFrame(bytes.NewReader(fr))
				if err != nil {
					t.Fatalf("gobwas cannot read it: %v", err)
				}
				h := got.Header
				if !h.Fin || h.Rsv != 0 || h.Masked || h.OpCode != tc.op || h.Length != int64(tc.n) {
					t.Fatalf("header %+v", h)
				}
				if !bytes.Equal(got.Payload, payload) {
					t.Fatal("payload differs")
				}
				if len(fr) != ws.HeaderSize(h)+tc.n {
					t.Fatalf("frame is %d bytes, want %d", len(fr), ws.HeaderSize(h)+tc.n)
				}
			}
		})
	}
}

func TestText(t *testing.T) {
	for _, p := range []string{"", `{"type":"connected"}`, strings.Repeat("é", 100)} {
		got := Text([]byte(p))
		if want := AppendFrame(nil, ws.OpText, []byte(p)); !bytes.Equal(got, want) {
			t.Fatalf("Text(%q) = % x, want % x", head([]byte(p)), head(got), head(want))
		}
		f, err := ws.ReadFrame(bytes.NewReader(got))
		if err != nil || f.Header.OpCode != ws.OpText || !f.Header.Fin || string(f.Payload) != p {
			t.Fatalf("Text(%q) reads back as %+v, %v", head([]byte(p)), f.Header, err)
		}
	}
}

func TestCloseFrame(t *testing.T) {
	a := func(n int) string { return strings.Repeat("a", n) }
	for _, tc := range []struct {
		name   string
		code   ws.StatusCode
		reason string
		want   string
	}{
		{"no reason", CloseNormal, "", ""},
		{"short reason", CloseTooBig, "message too big", "message too big"},
		{"123 bytes kept", CloseGoingAway, a(123), a(123)},
		{"124 bytes cut to 123", CloseGoingAway, a(124), a(123)},
		{"long ascii cut to 123", CloseProtocolError, a(500), a(123)},
		{"2-byte rune straddling 123", CloseInvalidData, a(122) + "é", a(122)},
		{"3-byte rune straddling 123", CloseInvalidData, a(121) + "€" + "tail", a(121)},
		{"3-byte rune ending at 123", CloseInvalidData, a(120) + "€" + "tail", a(120) + "€"},
		{"4-byte rune straddling 123", CloseHelloRequired, a(120) + "😀", a(120)},
		{"runes only", CloseTryAgainLater, strings.Repeat("€", 50), strings.Repeat("€", 41)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := CloseFrame(tc.code, tc.reason)
			f, err := ws.ReadFrame(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("read close frame: %v", err)
			}
			if f.Header.OpCode != ws.OpClose || !f.Header.Fin || f.Header.Masked || len(f.Payload) > 125 {
				t.Fatalf("header %+v, payload %d bytes", f.Header, len(f.Payload))
			}
			code, reason, err := ParseClose(f.Payload)
			if err != nil {
				t.Fatalf("our own close frame does not parse: %v", err)
			}
			if code != tc.code || reason != tc.want {
				t.Fatalf("got %d %q, want %d %q", code, reason, tc.code, tc.want)
			}
		})
	}
}

func TestParseClose(t *testing.T) {
	body := func(code uint16, reason string) []byte {
		return append([]byte{byte(code >> 8), byte(code)}, reason...)
	}
	type want struct {
		code   ws.StatusCode
		reason string
		err    ws.StatusCode // close code of the violation, 0 when valid
	}
	cases := []struct {
		name string
		p    []byte
		want want
	}{
		{"empty is no status", nil, want{CloseNoStatus, "", 0}},
		{"one byte", []byte{0x03}, want{err: CloseProtocolError}},
		{"code only", body(1000, ""), want{1000, "", 0}},
		{"code and reason", body(1001, "server restart"), want{1001, "server restart", 0}},
		{"utf-8 reason", body(4001, "héllo €"), want{4001, "héllo €", 0}},
		{"invalid utf-8 reason", body(1000, "bad \xff"), want{err: CloseInvalidData}},
		{"reason with cut rune", body(1000, "\xe2\x82"), want{err: CloseInvalidData}},
		{"surrogate in reason", body(1000, "\xed\xa0\x80"), want{err: CloseInvalidData}},
		{"invalid code wins over bad reason", body(1005, "\xff"), want{err: CloseProtocolError}},
	}
	for _, c := range []uint16{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4001, 4999} {
		cases = append(cases, struct {
			name string
			p    []byte
			want want
		}{"valid code " + itoa(int(c)), body(c, "r"), want{ws.StatusCode(c), "r", 0}})
	}
	for _, c := range []uint16{0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535} {
		cases = append(cases, struct {
			name string
			p    []byte
			want want
		}{"invalid code " + itoa(int(c)), body(c, ""), want{err: CloseProtocolError}})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, reason, err := ParseClose(tc.p)
			if tc.want.err != 0 {
				wantCode(t, err, tc.want.err)
				return
			}
			if err != nil || code != tc.want.code || reason != tc.want.reason {
				t.Fatalf("ParseClose(% x) = %d %q %v, want %d %q", tc.p, code, reason, err, tc.want.code, tc.want.reason)
			}
		})
	}
}

func itoa(n int) string {
	var b [8]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

func TestAssembler(t *testing.T) {
	type step struct {
		fin     bool
		op      ws.OpCode
		payload string
		done    bool          // a message completes
		msg     string        // the message, when done
		err     ws.StatusCode // the violation, if any (the sequence stops)
	}
	text := func(fin bool, p string) step { return step{fin: fin, op: ws.OpText, payload: p} }
	bin := func(fin bool, p string) step { return step{fin: fin, op: ws.OpBinary, payload: p} }
	cont := func(fin bool, p string) step { return step{fin: fin, op: ws.OpContinuation, payload: p} }
	done := func(s step, msg string) step { s.done, s.msg = true, msg; return s }
	fails := func(s step, code ws.StatusCode) step { s.err = code; return s }

	for _, tc := range []struct {
		name  string
		max   int64
		steps []step
	}{
		{"single text", 1 << 20, []step{done(text(true, "hello"), "hello")}},
		{"empty text", 1 << 20, []step{done(text(true, ""), "")}},
		{"single binary, not utf-8", 1 << 20, []step{done(bin(true, "\xff\xfe"), "\xff\xfe")}},
		{"three fragments", 1 << 20, []step{text(false, "a"), cont(false, "b"), done(cont(true, "c"), "abc")}},
		{"empty fragments", 1 << 20, []step{text(false, ""), cont(false, ""), done(cont(true, ""), "")}},
		{"fragmented binary", 1 << 20, []step{bin(false, "\xff"), done(cont(true, "\x00"), "\xff\x00")}},
		{"two messages in a row", 1 << 20, []step{
			text(false, "x"), done(cont(true, "y"), "xy"),
			done(bin(true, "z"), "z"),
			text(false, "1"), done(cont(true, "2"), "12"),
		}},
		{"2-byte rune split across fragments", 1 << 20, []step{text(false, "caf\xc3"), done(cont(true, "\xa9"), "café")}},
		{"3-byte rune split over three fragments", 1 << 20, []step{
			text(false, "\xe2"), cont(false, "\x82"), done(cont(true, "\xac!"), "€!"),
		}},
		{"4-byte rune split 1+3", 1 << 20, []step{text(false, "\xf0"), done(cont(true, "\x9f\x98\x80"), "😀")}},
		{"invalid utf-8 text", 1 << 20, []step{fails(text(true, "bad \xff"), CloseInvalidData)}},
		{"invalid utf-8 across fragments", 1 << 20, []step{text(false, "ok"), fails(cont(true, "\xc0\xaf"), CloseInvalidData)}},
		{"text ends inside a rune", 1 << 20, []step{text(false, "a"), fails(cont(true, "\xe2\x82"), CloseInvalidData)}},
		{"surrogate half", 1 << 20, []step{fails(text(true, "\xed\xa0\x80"), CloseInvalidData)}},
		{"continuation without start", 1 << 20, []step{fails(cont(true, "x"), CloseProtocolError)}},
		{"non-final continuation without start", 1 << 20, []step{fails(cont(false, "x"), CloseProtocolError)}},
		{"continuation after a finished message", 1 << 20, []step{done(text(true, "a"), "a"), fails(cont(true, "b"), CloseProtocolError)}},
		{"new text inside fragmented text", 1 << 20, []step{text(false, "a"), fails(text(true, "b"), CloseProtocolError)}},
		{"new binary inside fragmented text", 1 << 20, []step{text(false, "a"), fails(bin(false, "b"), CloseProtocolError)}},
		{"control frame is not data", 1 << 20, []step{fails(step{fin: true, op: ws.OpPing}, CloseProtocolError)}},
		{"fragments at max", 4, []step{text(false, "ab"), done(cont(true, "cd"), "abcd")}},
		{"fragments over max", 4, []step{text(false, "ab"), cont(false, "cd"), fails(cont(true, "e"), CloseTooBig)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var a Assembler
			for i, s := range tc.steps {
				f := parsed(t, s.fin, s.op, []byte(s.payload))
				op, msg, ok, err := a.Push(f, tc.max)
				if s.err != 0 {
					wantCode(t, err, s.err)
					if ok || msg != nil {
						t.Fatalf("step %d: message returned with an error", i)
					}
					return
				}
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if ok != s.done {
					t.Fatalf("step %d: done = %v, want %v", i, ok, s.done)
				}
				if !ok {
					if !a.InProgress() {
						t.Fatalf("step %d: fragment taken but no message in progress", i)
					}
					continue
				}
				if a.InProgress() {
					t.Fatalf("step %d: still in progress after a complete message", i)
				}
				first := tc.steps[i].op
				for j := i; j >= 0 && first == ws.OpContinuation; j-- {
					first = tc.steps[j].op
				}
				if op != first || string(msg) != s.msg {
					t.Fatalf("step %d: got %v %q, want %v %q", i, op, msg, first, s.msg)
				}
			}
		})
	}
}

func TestAssemblerTooBigResets(t *testing.T) {
	var a Assembler
	if _, _, _, err := a.Push(parsed(t, false, ws.OpText, []byte("abc")), 4); err != nil {
		t.Fatal(err)
	}
	_, _, _, err := a.Push(parsed(t, false, ws.OpContinuation, []byte("de")), 4)
	wantCode(t, err, CloseTooBig)
	if a.InProgress() {
		t.Fatal("message still in progress after 1009")
	}
}

func TestAssemblerReleaseAndReset(t *testing.T) {
	var a Assembler
	big := bytes.Repeat([]byte("x"), 10000)
	if _, _, _, err := a.Push(parsed(t, false, ws.OpBinary, big), 1<<20); err != nil {
		t.Fatal(err)
	}
	_, msg, ok, err := a.Push(parsed(t, true, ws.OpContinuation, big), 1<<20)
	if err != nil || !ok || len(msg) != 20000 {
		t.Fatalf("ok=%v len=%d err=%v", ok, len(msg), err)
	}
	a.Release()
	if a.buf != nil {
		t.Fatalf("Release kept a %d-byte buffer", cap(a.buf))
	}
	// A small buffer is kept for reuse.
	a.Push(parsed(t, false, ws.OpText, []byte("ab")), 1<<20)
	a.Push(parsed(t, true, ws.OpContinuation, []byte("c")), 1<<20)
	a.Release()
	if a.buf == nil {
		t.Fatal("Release dropped a small buffer")
	}
	a.Push(parsed(t, false, ws.OpText, []byte("ab")), 1<<20)
	a.Reset()
	if a.InProgress() || a.buf != nil {
		t.Fatal("Reset kept the message in progress")
	}
	if _, _, _, err := a.Push(parsed(t, true, ws.OpContinuation, []byte("c")), 1<<20); err == nil {
		t.Fatal("continuation accepted after Reset")
	}
}

func TestTextInPlace(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 65535, 65536, 200000} {
		payload := bytes.Repeat([]byte("p"), n)
		buf := append(make([]byte, Headroom), payload...)
		got := TextInPlace(buf)
		if want := Text(payload); !bytes.Equal(got, want) {
			t.Fatalf("%d bytes: in-place frame differs from Text", n)
		}
	}
}
