package wsframe

import (
	"bytes"
	"testing"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// pushFragments sends msg as text fragments cut at cuts; it returns the index
// of the fragment that failed (-1: none), the message once complete, and the
// error.
func pushFragments(t *testing.T, msg []byte, cuts []int) (failedAt int, got []byte, err error) {
	t.Helper()
	var a Assembler
	prev := 0
	bounds := append(append([]int{}, cuts...), len(msg))
	for i, end := range bounds {
		op := ws.OpContinuation
		if i == 0 {
			op = ws.OpText
		}
		_, m, done, err := a.Push(parsed(t, i == len(bounds)-1, op, msg[prev:end]), 1<<20)
		if err != nil {
			return i, nil, err
		}
		if done {
			got = m
		}
		prev = end
	}
	return -1, got, nil
}

// A fragmented text message fails in the fragment that holds the first byte
// that no continuation can make valid, not only at the end; valid text cut
// anywhere (even inside a character) passes.
func TestAssemblerUTF8FailFast(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		msg      string
		cuts     []int
		failedAt int
	}{
		{"ascii", "hello world", []int{3, 6}, -1},
		{"2-byte split", "aé b", []int{2}, -1},
		{"3-byte split after lead", "a€b", []int{2}, -1},
		{"3-byte split after second", "a€b", []int{3}, -1},
		{"4-byte split everywhere", "a😀b", []int{2, 3, 4}, -1},
		{"bad byte in first fragment", "ab\xffcd", []int{3}, 0},
		{"bad byte in middle fragment", "abcd\xfeef", []int{2, 5}, 1},
		{"invalid lead alone at the end", "ab\xc0", []int{3}, 0},
		{"overlong 3-byte second byte", "a\xe0\x80", []int{3}, 0},
		{"surrogate prefix", "a\xed\xa0", []int{3}, 0},
		{"beyond U+10FFFF prefix", "a\xf4\x90", []int{3}, 0},
		{"truncated at the end", "ab\xe2\x82", nil, 0},
		{"truncated character completed later", "a\xe2\x82\xacz", []int{2, 3}, -1},
		{"continuation without lead", "a\x80", []int{2}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			failedAt, got, err := pushFragments(t, []byte(tc.msg), tc.cuts)
			if failedAt != tc.failedAt {
				t.Fatalf("failed at fragment %d, want %d", failedAt, tc.failedAt)
			}
			if err != nil {
				wantCode(t, err, CloseInvalidData)
			}
			if tc.failedAt < 0 && string(got) != tc.msg {
				t.Fatalf("message %q, want %q", got, tc.msg)
			}
		})
	}
}

// validPrefix agrees with utf8.Valid on every two-way cut of short byte
// strings: a cut passes iff some valid string starts with the first part.
func TestValidPrefixAgreesWithUTF8(t *testing.T) {
	t.Parallel()
	canExtend := func(b []byte) bool {
		if utf8.Valid(b) {
			return true
		}
		for _, c := range [][]byte{{0x80}, {0x90}, {0xA0}, {0xBF}} {
			for k := 1; k <= 3; k++ {
				ext := append([]byte{}, b...)
				for j := 0; j < k; j++ {
					ext = append(ext, c[0])
				}
				if utf8.Valid(ext) {
					return true
				}
				// The second byte's range varies with the lead: try the
				// given byte first, then 0x80.
				ext = append(append([]byte{}, b...), c[0])
				for j := 1; j < k; j++ {
					ext = append(ext, 0x80)
				}
				if utf8.Valid(ext) {
					return true
				}
			}
		}
		return false
	}
	samples := []byte{0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC2, 0xDF, 0xE0, 0xE1, 0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xFF}
	for _, a := range samples {
		for _, b := range samples {
			for _, c := range samples {
				s := []byte{a, b, c}
				for n := 1; n <= 3; n++ {
					_, ok := validPrefix(s[:n], false)
					if want := canExtend(s[:n]); ok != want {
						t.Errorf("validPrefix(% x) = %v, want %v", s[:n], ok, want)
					}
				}
			}
		}
	}
}

// FuzzAssemblerUTF8 cuts text into fragments at fuzzed points: the streaming
// check must accept exactly the messages utf8.Valid accepts, wherever the cuts
// fall (inside characters included).
func FuzzAssemblerUTF8(f *testing.F) {
	f.Add([]byte("héllo wörld €😀"), []byte{1, 2, 3})
	f.Add([]byte("a\xed\xa0\x80b"), []byte{2})
	f.Add([]byte("\xf4\x90\x80\x80"), []byte{1, 1, 1})
	f.Add([]byte("ok\xc0"), []byte{})
	f.Fuzz(func(t *testing.T, msg, cuts []byte) {
		if len(msg) > 4096 || len(cuts) > 64 {
			return
		}
		var bounds []int
		at := 0
		for _, c := range cuts {
			at += int(c % 8)
			if at > len(msg) {
				break
			}
			bounds = append(bounds, at)
		}
		failedAt, got, err := pushFragments(t, msg, bounds)
		if err != nil {
			if utf8.Valid(msg) {
				t.Fatalf("valid text %q refused at fragment %d of %v: %v", msg, failedAt, bounds, err)
			}
			return
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("assembled %q, want %q", got, msg)
		}
		if !utf8.Valid(msg) {
			t.Fatalf("invalid text %q accepted with cuts %v", msg, bounds)
		}
	})
}
