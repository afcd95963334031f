package jointoken

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func benchToken(b *testing.B) (*Verifier, string) {
	v, err := New(Config{Secret: secret})
	if err != nil {
		b.Fatal(err)
	}
	tok, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sid": "s1", "user_type": "agent", "sub": "u", "exp": time.Now().Add(time.Hour).Unix()}).SignedString(secret)
	return v, tok
}

// A full verification: a token not seen before.
func BenchmarkVerifyHS256(b *testing.B) {
	v, tok := benchToken(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}

// The same token again within the cache's TTL (a reconnect).
func BenchmarkVerifyHS256Cached(b *testing.B) {
	v, tok := benchToken(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}
