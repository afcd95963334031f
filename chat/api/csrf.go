package api

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"time"
)

// csrf issues and checks stateless CSRF tokens: base64url(expiry ‖ nonce)
// "." base64url(HMAC-SHA256(secret, "wsedge-csrf" ‖ expiry ‖ nonce)). A
// token is valid from the header alone (no cookie, as the original's curl
// example sends none), on every instance that shares the secret, until its
// expiry. What it proves is that the caller fetched it from us; the API key
// does the authenticating.
type csrf struct {
	secret []byte
	ttl    time.Duration
}

const csrfPayload = 16 // 8-byte expiry (Unix seconds) + 8-byte nonce

// Strict: a token has exactly one encoding (no ignored trailing bits).
var b64 = base64.RawURLEncoding.Strict()

func (c csrf) mac(payload []byte) []byte {
	m := hmac.New(sha256.New, c.secret)
	m.Write([]byte("wsedge-csrf"))
	m.Write(payload)
	return m.Sum(nil)
}

func (c csrf) issue(now time.Time) string {
	var p [csrfPayload]byte
	binary.BigEndian.PutUint64(p[:8], uint64(now.Add(c.ttl).Unix()))
	_, _ = rand.Read(p[8:])
	return b64.EncodeToString(p[:]) + "." + b64.EncodeToString(c.mac(p[:]))
}

func (c csrf) valid(token []byte, now time.Time) bool {
	if len(token) == 0 || len(token) > 128 {
		return false
	}
	// The decoder skips \r and \n even in strict mode; a token is only
	// the base64url alphabet and one dot.
	for _, ch := range token {
		switch {
		case ch >= 'A' && ch <= 'Z', ch >= 'a' && ch <= 'z', ch >= '0' && ch <= '9', ch == '-', ch == '_', ch == '.':
		default:
			return false
		}
	}
	i := bytes.IndexByte(token, '.')
	if i < 0 {
		return false
	}
	p := make([]byte, b64.DecodedLen(i))
	if n, err := b64.Decode(p, token[:i]); err != nil || n != csrfPayload {
		return false
	}
	sig := make([]byte, b64.DecodedLen(len(token)-i-1))
	n, err := b64.Decode(sig, token[i+1:])
	if err != nil || !hmac.Equal(sig[:n], c.mac(p)) {
		return false
	}
	return now.Unix() < int64(binary.BigEndian.Uint64(p[:8]))
}
