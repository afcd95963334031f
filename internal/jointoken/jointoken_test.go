package jointoken

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var secret = []byte("0123456789abcdef0123456789abcdef-test")

func pemOf(t *testing.T, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func sign(t *testing.T, m jwt.SigningMethod, key any, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerify(t *testing.T) {
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	hs, err := New(Config{Secret: secret, Audience: "wsedge"})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := New(Config{PublicKeyPEM: pemOf(t, &rk.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	es, err := New(Config{PublicKeyPEM: pemOf(t, &ek.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour).Unix()
	ok := func() jwt.MapClaims {
		return jwt.MapClaims{"sid": "s1", "user_type": "agent", "exp": exp, "aud": "wsedge", "sub": "u1"}
	}
	with := func(k string, v any) jwt.MapClaims { c := ok(); c[k] = v; return c }
	without := func(k string) jwt.MapClaims { c := ok(); delete(c, k); return c }
	noneTok := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, ok())
	for _, tc := range []struct {
		name   string
		v      *Verifier
		token  string
		reason string
	}{
		{"hs256 valid", hs, sign(t, jwt.SigningMethodHS256, secret, ok()), ""},
		{"rs256 valid", rs, sign(t, jwt.SigningMethodRS256, rk, ok()), ""},
		{"es256 valid", es, sign(t, jwt.SigningMethodES256, ek, ok()), ""},
		{"sid list", hs, sign(t, jwt.SigningMethodHS256, secret, with("sid", []string{"a", "s*"})), ""},
		{"missing", hs, "", ReasonMissing},
		{"garbage", hs, "not.a.jwt", ReasonMalformed},
		{"wrong secret", hs, sign(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-xx"), ok()), ReasonSignature},
		{"alg none", hs, noneTok, ReasonAlgorithm},
		{"hs512 not allowed", hs, sign(t, jwt.SigningMethodHS512, secret, ok()), ReasonAlgorithm},
		{"rs256 to an hs256 server", hs, sign(t, jwt.SigningMethodRS256, rk, ok()), ReasonAlgorithm},
		{"hs256 to an rs256 server (key confusion)", rs, sign(t, jwt.SigningMethodHS256, pemOf(t, &rk.PublicKey), ok()), ReasonAlgorithm},
		{"expired", hs, sign(t, jwt.SigningMethodHS256, secret, with("exp", time.Now().Add(-time.Minute).Unix())), ReasonExpired},
		{"no exp", hs, sign(t, jwt.SigningMethodHS256, secret, without("exp")), ReasonClaims},
		{"nbf in the future", hs, sign(t, jwt.SigningMethodHS256, secret, with("nbf", time.Now().Add(time.Hour).Unix())), ReasonNotYetValid},
		{"wrong audience", hs, sign(t, jwt.SigningMethodHS256, secret, with("aud", "other")), ReasonAudience},
		{"no sid", hs, sign(t, jwt.SigningMethodHS256, secret, without("sid")), ReasonClaims},
		{"sid a number", hs, sign(t, jwt.SigningMethodHS256, secret, with("sid", 7)), ReasonClaims},
		{"no user_type", hs, sign(t, jwt.SigningMethodHS256, secret, without("user_type")), ReasonClaims},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.v.Verify(tc.token)
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				if c.UserType != "agent" || c.Subject != "u1" || !c.Covers("s1") {
					t.Fatalf("claims %+v", c)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || e.Reason != tc.reason {
				t.Fatalf("want %s, got %v", tc.reason, err)
			}
		})
	}
}

func TestCovers(t *testing.T) {
	c := &Claims{SIDs: []string{"exact", "team-7:*"}}
	for id, want := range map[string]bool{"exact": true, "exact2": false, "team-7:a": true, "team-7:": true, "team-8:a": false, "": false} {
		if got := c.Covers(id); got != want {
			t.Errorf("Covers(%q) = %v, want %v", id, got, want)
		}
	}
}

func TestNewRefusesWeakKeys(t *testing.T) {
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	for name, cfg := range map[string]Config{
		"nothing":      {},
		"short secret": {Secret: []byte("short")},
		"rsa 1024":     {PublicKeyPEM: pemOf(t, &small.PublicKey)},
		"p384":         {PublicKeyPEM: pemOf(t, &p384.PublicKey)},
		"not pem":      {PublicKeyPEM: []byte("hello")},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// Verify takes attacker-chosen bytes: it must never panic, and anything it
// accepts must be signed with the key and carry the required claims.
func FuzzVerify(f *testing.F) {
	v, err := New(Config{Secret: secret})
	if err != nil {
		f.Fatal(err)
	}
	good, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sid": []string{"a", "b*"}, "user_type": "agent", "exp": time.Now().Add(time.Hour).Unix()}).SignedString(secret)
	f.Add(good)
	f.Add("eyJhbGciOiJub25lIn0.eyJzaWQiOiJhIn0.")
	f.Add("..")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := v.Verify(tok)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Reason == "" {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		if c.UserType == "" || len(c.SIDs) == 0 || c.Expires.IsZero() {
			t.Fatalf("accepted incomplete claims %+v", c)
		}
	})
}
