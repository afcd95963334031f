package api

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/wsedge/wsedge/chat/history"
	"github.com/wsedge/wsedge/internal/jointoken"
)

// A join token whose sid covers the thread stands in for the API key.
func TestAPIJoinTokens(t *testing.T) {
	secret := []byte("api-test-secret-api-test-secret-0123")
	v, err := jointoken.New(jointoken.Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	b := &fakeBackend{threads: map[string][]history.Message{
		"alice:1": {{Role: "user", Content: "hi", CreatedAt: time.Now()}},
		"bob:1":   {{Role: "user", Content: "hi", CreatedAt: time.Now()}},
	}}
	c := serve(t, Config{APIKey: "k3y", CSRFSecret: []byte("secret"), Tokens: v}, b)
	csrfTok, _ := do(t, c, "GET", "/api/csrf-token/", nil, "").body["csrfToken"].(string)
	mint := func(sid string, ttl time.Duration) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"sid": sid, "user_type": "user", "sub": "alice", "exp": time.Now().Add(ttl).Unix()}).SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, tc := range []struct {
		name, auth, thread string
		status             int
		code               string
	}{
		{"api key still works", "k3y", "bob:1", 200, ""},
		{"covering token", "Bearer " + mint("alice:*", time.Hour), "alice:1", 200, ""},
		{"token for another thread", "Bearer " + mint("alice:*", time.Hour), "bob:1", 403, "thread_forbidden"},
		{"expired token", "Bearer " + mint("alice:*", -time.Minute), "alice:1", 401, jointoken.ReasonExpired},
		{"forged token", "Bearer " + mint("alice:*", time.Hour) + "x", "alice:1", 401, jointoken.ReasonSignature},
		{"neither", "nope", "alice:1", 401, "unauthorized"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, c, "POST", "/api/thread/history", map[string]string{"Authorization": tc.auth, "X-CSRFToken": csrfTok},
				`{"thread_id":"`+tc.thread+`"}`)
			if r.status != tc.status || (tc.code != "" && r.body["error"] != tc.code) {
				t.Fatalf("%d %v, want %d %s", r.status, r.body, tc.status, tc.code)
			}
		})
	}
}
