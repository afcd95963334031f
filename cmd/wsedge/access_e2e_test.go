package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/golang-jwt/jwt/v5"
)

// The built binary with SESSION_TOKEN_SECRET: a session upgrade without a
// token is 401 with its reason, with one it is admitted; the token's identity
// is enforced at hello.
func TestCLIJoinTokens(t *testing.T) {
	secret := "cli-test-join-secret-cli-test-join-secret"
	s := startBinary(t, t.TempDir(), cleanEnv("DEBUG=1", "SESSION_TOKEN_SECRET="+secret, "TOKEN_EXPIRY_GRACE=5s"))
	req, _ := http.NewRequest("GET", "http://"+s.addr+"/ws/session/room/", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(string(body), `"token_missing"`) {
		t.Fatalf("no token: %d %s", resp.StatusCode, body)
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sid": "room", "user_type": "agent", "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	conn, br, _, err := ws.Dial(context.Background(), "ws://"+s.addr+"/ws/session/room/?token="+tok)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := &wsConn{t: t, conn: conn, r: conn}
	if br != nil {
		c.r = io.MultiReader(br, conn)
	}
	c.expect("connected")
	c.send(`{"type":"hello","user_type":"admin"}`)
	if m := c.expect("error"); m["error"] != "identity_mismatch" {
		t.Fatalf("%v", m)
	}
	if code := c.closeCode(); code != 4001 {
		t.Fatalf("close %d", code)
	}
}
