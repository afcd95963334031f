package broker

import (
	"strconv"
	"strings"
)

// What travels on a session's channel. Version 1 (history off) names the
// publishing process, whose own copies are dropped on the way back (it
// delivered them at publish); version 2 (history on) carries the seq.

// Envelope layout: version byte 1, origin length byte, origin, payload.
const envelopeVersion = 1

func encodeEnvelope(origin string, payload []byte) []byte {
	b := make([]byte, 0, 2+len(origin)+len(payload))
	b = append(b, envelopeVersion, byte(len(origin)))
	b = append(b, origin...)
	return append(b, payload...)
}

// decodeEnvelope parses what arrives from Redis; anything malformed (another
// writer on our channels, a future version) is rejected, not guessed at.
func decodeEnvelope(s string) (origin, payload string, ok bool) {
	if len(s) < 2 || s[0] != envelopeVersion {
		return "", "", false
	}
	n := int(s[1])
	if n == 0 || len(s) < 2+n {
		return "", "", false
	}
	return s[2 : 2+n], s[2+n:], true
}

// Envelope version 2 carries a seq instead of an origin: with history on,
// every instance (the publisher included) delivers from Redis, in seq order.
// Layout: byte 2, the seq in decimal, a space, the payload. The publish
// script writes it.
const envelopeV2 = 2

func encodeEnvelopeV2(seq uint64, payload []byte) []byte {
	b := make([]byte, 0, 22+len(payload))
	b = append(b, envelopeV2)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, ' ')
	return append(b, payload...)
}

// decodeEnvelopeV2 parses a version 2 envelope; seq must be canonical
// decimal (no sign, no leading zero) and positive.
func decodeEnvelopeV2(s string) (seq uint64, payload string, ok bool) {
	if len(s) < 3 || s[0] != envelopeV2 || s[1] == '0' {
		return 0, "", false
	}
	sp := strings.IndexByte(s, ' ')
	if sp < 2 || sp > 21 {
		return 0, "", false
	}
	for i := 1; i < sp; i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, "", false
		}
	}
	seq, err := strconv.ParseUint(s[1:sp], 10, 64)
	if err != nil {
		return 0, "", false
	}
	return seq, s[sp+1:], true
}
