package jointoken

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func BenchmarkVerifyHS256(b *testing.B) {
	v, err := New(Config{Secret: secret})
	if err != nil {
		b.Fatal(err)
	}
	tok, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sid": "s1", "user_type": "agent", "sub": "u", "exp": time.Now().Add(time.Hour).Unix()}).SignedString(secret)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}
