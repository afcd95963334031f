package edge

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/wsedge/wsedge/internal/jointoken"
)

var testSecret = []byte("edge-test-secret-edge-test-secret-0123")

func hsVerifier(t testing.TB) *jointoken.Verifier {
	t.Helper()
	v, err := jointoken.New(jointoken.Config{Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func mint(t testing.TB, m jwt.SigningMethod, key any, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claims(sid any, userType string, ttl time.Duration) jwt.MapClaims {
	return jwt.MapClaims{"sid": sid, "user_type": userType, "exp": time.Now().Add(ttl).Unix(), "sub": "u-1"}
}

// upgradeResp sends a WebSocket upgrade over a raw socket and returns the
// response (body read) without treating a refusal as an error.
func upgradeResp(t testing.TB, addr, path string, hdr map[string]string) (*http.Response, map[string]any) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := "GET " + path + " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
	for k, v := range hdr {
		req += k + ": " + v + "\r\n"
	}
	if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	if resp.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(b, &body); err != nil {
			t.Fatalf("%d body is not JSON: %q", resp.StatusCode, b)
		}
	}
	return resp, body
}

// Every token rule at the upgrade, over real sockets: refusals are 401 with
// a JSON reason and never a 101; a valid token also passes a foreign Origin.
func TestJoinTokenUpgrade(t *testing.T) {
	t.Parallel()
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&ek.PublicKey)
	es, err := jointoken.New(jointoken.Config{Secret: testSecret, PublicKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})})
	if err != nil {
		t.Fatal(err)
	}
	ts := startServerWith(t, func(c *Config) {
		c.Debug = false
		c.AllowedHosts = []string{"app.example.com"}
	}, Deps{Tokens: es})
	good := mint(t, jwt.SigningMethodHS256, testSecret, claims("room-1", "agent", time.Hour))
	other := []byte("not-the-secret-not-the-secret-not-the")
	for _, tc := range []struct {
		name   string
		path   string
		hdr    map[string]string
		status int
		reason string
	}{
		{"query token", "/ws/session/room-1/?token=" + good, nil, 101, ""},
		{"bearer header, lower-case name", "/ws/session/room-1/", map[string]string{"authorization": "bearer " + good}, 101, ""},
		{"es256", "/ws/session/room-1/?token=" + mint(t, jwt.SigningMethodES256, ek, claims("room-1", "agent", time.Hour)), nil, 101, ""},
		{"prefix sid", "/ws/session/team-7:abc/?token=" + mint(t, jwt.SigningMethodHS256, testSecret, claims([]string{"x", "team-7:*"}, "agent", time.Hour)), nil, 101, ""},
		{"foreign origin with a token", "/ws/session/room-1/?token=" + good, map[string]string{"Origin": "https://evil.example"}, 101, ""},
		{"no token", "/ws/session/room-1/", nil, 401, jointoken.ReasonMissing},
		{"no token, allowed origin", "/ws/session/room-1/", map[string]string{"Origin": "https://app.example.com"}, 401, jointoken.ReasonMissing},
		{"expired", "/ws/session/room-1/?token=" + mint(t, jwt.SigningMethodHS256, testSecret, claims("room-1", "agent", -time.Minute)), nil, 401, jointoken.ReasonExpired},
		{"wrong sid", "/ws/session/room-2/?token=" + good, nil, 401, jointoken.ReasonWrongSession},
		{"prefix does not match", "/ws/session/team-8:abc/?token=" + mint(t, jwt.SigningMethodHS256, testSecret, claims("team-7:*", "agent", time.Hour)), nil, 401, jointoken.ReasonWrongSession},
		{"wrong signature", "/ws/session/room-1/?token=" + mint(t, jwt.SigningMethodHS256, other, claims("room-1", "agent", time.Hour)), nil, 401, jointoken.ReasonSignature},
		{"alg none", "/ws/session/room-1/?token=" + mint(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims("room-1", "agent", time.Hour)), nil, 401, jointoken.ReasonAlgorithm},
		{"wrong alg", "/ws/session/room-1/?token=" + mint(t, jwt.SigningMethodHS384, testSecret, claims("room-1", "agent", time.Hour)), nil, 401, jointoken.ReasonAlgorithm},
		{"garbage", "/ws/session/room-1/?token=abc", nil, 401, jointoken.ReasonMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := upgradeResp(t, ts.addr, tc.path, tc.hdr)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d %v, want %d", resp.StatusCode, body, tc.status)
			}
			if tc.reason != "" && (body["error"] != tc.reason || body["message"] == "") {
				t.Fatalf("body %v, want error %q", body, tc.reason)
			}
		})
	}
}

// Hello must carry the token's identity; the token's client_type is used
// when hello leaves it out.
func TestJoinTokenHelloIdentity(t *testing.T) {
	t.Parallel()
	ts := startServerWith(t, nil, Deps{Tokens: hsVerifier(t)})
	c := claims("room", "agent", time.Hour)
	c["client_type"] = "console"
	tok := mint(t, jwt.SigningMethodHS256, testSecret, c)
	for _, tc := range []struct{ name, hello, err string }{
		{"other user_type", `{"type":"hello","user_type":"admin","client_type":"console"}`, "identity_mismatch"},
		{"other client_type", `{"type":"hello","user_type":"agent","client_type":"web"}`, "identity_mismatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws := ts.dial(t, "/ws/session/room/?token="+tok, nil)
			ws.expectType("connected")
			ws.send(tc.hello)
			ws.expectError(tc.err)
			ws.expectClose(4001)
		})
	}
	a := ts.dial(t, "/ws/session/room/?token="+tok, nil)
	a.expectType("connected")
	a.send(`{"type":"hello","user_type":"agent"}`)
	a.send(`{"type":"presence"}`)
	p := a.expectType("presence")
	members, _ := p["members"].([]any)
	if len(members) != 1 || members[0].(map[string]any)["client_type"] != "console" {
		t.Fatalf("presence %v: want one member with the token's client_type", p)
	}
	a.send(`{"type":"broadcast","msg":"hi"}`)
	if m := a.expectType("session_message"); m["user_type"] != "agent" || m["client_type"] != "console" {
		t.Fatalf("broadcast %v", m)
	}
}

// A token expiring while connected: token_expired, then close 4003 after the
// grace; a refresh in time keeps the socket, a refresh for another identity
// is refused.
func TestJoinTokenExpiryWhileConnected(t *testing.T) {
	t.Parallel()
	ts := startServerWith(t, func(c *Config) { c.TokenExpiryGrace = 300 * time.Millisecond }, Deps{Tokens: hsVerifier(t)})
	short := func() string {
		return mint(t, jwt.SigningMethodHS256, testSecret, claims("room", "agent", 1500*time.Millisecond))
	}

	t.Run("no refresh", func(t *testing.T) {
		t.Parallel()
		c := ts.dial(t, "/ws/session/room/?token="+short(), nil)
		c.expectType("connected")
		c.hello("agent", "web")
		c.expectType("token_expired")
		c.expectClose(4003)
	})
	t.Run("refresh in time", func(t *testing.T) {
		t.Parallel()
		c := ts.dial(t, "/ws/session/room/?token="+short(), nil)
		c.expectType("connected")
		c.hello("agent", "web")
		c.expectType("token_expired")
		c.send(`{"type":"refresh","token":"` + mint(t, jwt.SigningMethodHS256, testSecret, claims("room", "admin", time.Hour)) + `"}`)
		c.expectError("refresh_refused")
		c.send(`{"type":"refresh","token":"` + mint(t, jwt.SigningMethodHS256, testSecret, claims("room", "agent", time.Hour)) + `"}`)
		c.expectType("refreshed")
		c.send(`{"type":"ping-me"}`)
		c.expectType("echo")
		c.quiet(time.Second) // several sweeps past the grace: still open
		c.send(`{"type":"broadcast","msg":"still here"}`)
		c.expectType("session_message")
	})
}

// Reserved identities: with chat served, no client may claim the mirror's
// client_type, with or without tokens.
func TestReservedIdentity(t *testing.T) {
	t.Parallel()
	ts := startChatServer(t)
	c := ts.dial(t, "/ws/session/th-9/", nil)
	c.expectType("connected")
	c.hello("assistant", "chat")
	c.expectError("identity_reserved")
	c.expectClose(4001)
	ok, _ := ts.session(t, "th-9", "assistant", "web")
	ok.send(`{"type":"broadcast","msg":"fine"}`)
	if m := ok.expectType("session_message"); m["client_type"] != "web" {
		t.Fatalf("%v", m)
	}
}

func dialAs(t *testing.T, ts *testServer, path, xff string) (*http.Response, map[string]any) {
	t.Helper()
	return upgradeResp(t, ts.addr, path, map[string]string{"X-Forwarded-For": xff})
}

// holdWS keeps an upgraded raw socket open for the test's duration.
func holdWS(t *testing.T, ts *testServer, xff string) {
	t.Helper()
	hdr := http.Header{}
	hdr.Set("x-forwarded-for", xff)
	c := ts.dial(t, "/ws/session/ip-test/", hdr)
	c.expectType("connected")
}

// X-Forwarded-For is believed only from TRUSTED_PROXIES, read right to left.
func TestClientIPFromTrustedProxies(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		trusted []string
		xff     [2]string // two clients' headers
		second  int       // status of the second, with one socket per IP
	}{
		{"untrusted peer: XFF ignored, one IP", []string{"10.0.0.0/8"}, [2]string{"203.0.113.1", "203.0.113.2"}, 429},
		{"trusted peer: two clients", []string{"127.0.0.0/8"}, [2]string{"203.0.113.1", "203.0.113.2"}, 101},
		{"trusted peer: same client", []string{"127.0.0.0/8"}, [2]string{"203.0.113.1", "203.0.113.1"}, 429},
		{"spoofed left entry ignored", []string{"127.0.0.0/8"}, [2]string{"1.1.1.1, 203.0.113.1", "9.9.9.9, 203.0.113.1"}, 429},
		{"trusted hops skipped", []string{"127.0.0.0/8", "10.0.0.0/8"}, [2]string{"203.0.113.1, 10.0.0.5", "203.0.113.2, 10.0.0.5"}, 101},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts := startServer(t, func(c *Config) {
				c.MaxConnectionsPerIP = 1
				for _, p := range tc.trusted {
					c.TrustedProxies = append(c.TrustedProxies, netip.MustParsePrefix(p))
				}
			})
			holdWS(t, ts, tc.xff[0])
			resp, body := dialAs(t, ts, "/ws/session/ip-test/", tc.xff[1])
			if resp.StatusCode != tc.second {
				t.Fatalf("second client: %d %v, want %d", resp.StatusCode, body, tc.second)
			}
			if tc.second == 429 && resp.Header.Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
		})
	}
}

// Per-IP connect rate and connection cap: 429 with Retry-After, while a
// client from another address on the same loops keeps working; a closed
// socket gives its slot back.
func TestPerIPLimits(t *testing.T) {
	t.Parallel()
	ts := startServer(t, func(c *Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		c.ConnectRatePerIP = 0.001 // one token per ~17 minutes: no refill during the test
		c.ConnectBurstPerIP = 3
		c.MaxConnectionsPerIP = 2
	})
	good, _ := ts.session(t, "busy", "agent", "web")
	hdr := http.Header{}
	hdr.Set("X-Forwarded-For", "198.51.100.7")
	a := ts.dial(t, "/ws/session/busy/", hdr)
	a.expectType("connected")
	b := ts.dial(t, "/ws/session/busy/", hdr)
	b.expectType("connected")
	resp, body := dialAs(t, ts, "/ws/session/busy/", "198.51.100.7")
	if resp.StatusCode != 429 || body["error"] != "too_many_requests" || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("third socket: %d %v %q, want 429 (connection cap)", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	_ = a.conn.Close()
	// The slot comes back once the server has seen the close; the bucket is
	// now empty (3 upgrades taken), so the next one is refused by the rate,
	// with a Retry-After of about 1/rate.
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, body = dialAs(t, ts, "/ws/session/busy/", "198.51.100.7")
		if resp.StatusCode == 429 && body["error"] == "too_many_requests" && resp.Header.Get("Retry-After") != "1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("want a rate refusal, got %d %v Retry-After %q", resp.StatusCode, body, resp.Header.Get("Retry-After"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	good.send(`{"type":"broadcast","msg":"unaffected"}`)
	good.expectType("session_message")
	if n := counterValue(t, ts.reg, "wsedge_rejected_total"); n < 2 {
		t.Fatalf("rejected_total %v", n)
	}
}

// The per-IP table never exceeds its cap: a spread source evicts idle
// entries, and when every entry holds a socket new addresses get 429.
func TestPerIPTableBounded(t *testing.T) {
	t.Parallel()
	ts := startServer(t, func(c *Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		c.MaxConnectionsPerIP = 5
		c.MaxTrackedIPs = 4
	})
	for i := 0; i < 4; i++ {
		holdWS(t, ts, fmt.Sprintf("192.0.2.%d", i))
	}
	resp, body := dialAs(t, ts, "/ws/session/ip-test/", "192.0.2.200")
	if resp.StatusCode != 429 || body["error"] != "server_busy" {
		t.Fatalf("fifth address with a full table: %d %v", resp.StatusCode, body)
	}
	if n := ts.srv.ips.size(); n > 4 {
		t.Fatalf("table holds %d entries, cap 4", n)
	}
}

// MAX_SESSION_MEMBERS: 403 at upgrade beyond the cap; other sessions are
// unaffected; a leaving member frees its place.
func TestSessionMemberCap(t *testing.T) {
	t.Parallel()
	ts := startServer(t, func(c *Config) { c.MaxSessionMembers = 2 })
	a, _ := ts.session(t, "small", "agent", "web")
	ts.session(t, "small", "agent", "web")
	resp, body := upgradeResp(t, ts.addr, "/ws/session/small/", nil)
	if resp.StatusCode != 403 || body["error"] != "session_full" {
		t.Fatalf("third member: %d %v", resp.StatusCode, body)
	}
	ts.session(t, "other", "agent", "web")
	_ = a.conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, _ = upgradeResp(t, ts.addr, "/ws/session/small/", nil)
		if resp.StatusCode == 101 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("place not freed: %d", resp.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The per-session broadcast rate holds for all senders together.
func TestSessionBroadcastRate(t *testing.T) {
	t.Parallel()
	ts := startServer(t, func(c *Config) {
		c.SessionBroadcastRate = 0.001
		c.SessionBroadcastBurst = 3
	})
	a, _ := ts.session(t, "chatty", "agent", "web")
	b, _ := ts.session(t, "chatty", "agent", "web")
	for i := 0; i < 3; i++ {
		a.send(`{"type":"broadcast","msg":"x"}`)
		a.expectType("session_message")
		b.expectType("session_message")
	}
	b.send(`{"type":"broadcast","msg":"over"}`)
	b.expectError("rate_limited")
	a.quiet(300 * time.Millisecond)
	q, _ := ts.session(t, "quiet-room", "agent", "web")
	q.send(`{"type":"broadcast","msg":"other session"}`)
	q.expectType("session_message")
}

// drainTurn reads a chat turn's frames up to its end.
func drainTurn(c *wsClient) {
	c.t.Helper()
	for {
		if m := c.next(); m["type"] == "end" {
			return
		}
	}
}

// Chat threads under tokens: a new thread is bound to the token's sub; only a
// token whose sid covers a thread continues it; the API key still admits a
// socket, which may start threads but not continue others'.
func TestChatThreadsUnderTokens(t *testing.T) {
	t.Parallel()
	ts := startChatServerWith(t, func(c *Config) { c.AuthAPIKey = "edge-test-api-key" }, hsVerifier(t))
	alice := func() string {
		c := claims("alice:*", "user", time.Hour)
		c["sub"] = "alice"
		return mint(t, jwt.SigningMethodHS256, testSecret, c)
	}
	a := ts.dial(t, "/ws/chat/?token="+alice(), nil)
	a.send(`{"type":"chat","message":"Hello"}`)
	m := a.expectType("session_started")
	thread, _ := m["thread_id"].(string)
	if len(thread) != len("alice:")+32 || thread[:6] != "alice:" {
		t.Fatalf("new thread %q is not bound to the token's sub", thread)
	}
	drainTurn(a)

	hdr := http.Header{}
	hdr.Set("Authorization", "edge-test-api-key")
	keyOnly := ts.dial(t, "/ws/chat/", hdr)
	bob := claims("bob:*", "user", time.Hour)
	bob["sub"] = "bob"
	b := ts.dial(t, "/ws/chat/?token="+mint(t, jwt.SigningMethodHS256, testSecret, bob), nil)
	for _, c := range []*wsClient{keyOnly, b} {
		c.send(`{"type":"chat","message":"let me in","thread_id":"` + thread + `"}`)
		c.expectError("thread_forbidden")
	}
	keyOnly.send(`{"type":"chat","message":"my own thread"}`)
	if m := keyOnly.expectType("session_started"); len(m["thread_id"].(string)) != 32 {
		t.Fatalf("thread without a token %v", m)
	}
	drainTurn(keyOnly)

	again := ts.dial(t, "/ws/chat/", http.Header{"Authorization": {"Bearer " + alice()}})
	again.send(`{"type":"chat","message":"me again","thread_id":"` + thread + `"}`)
	if m := again.expectType("session_started"); m["thread_id"] != thread {
		t.Fatalf("continuation %v", m)
	}
	drainTurn(again)

	resp, body := upgradeResp(t, ts.addr, "/ws/chat/?token=expired."+alice()[7:], nil)
	if resp.StatusCode != 401 {
		t.Fatalf("bad token without the key: %d %v", resp.StatusCode, body)
	}
	resp, body = upgradeResp(t, ts.addr, "/ws/chat/", nil)
	if resp.StatusCode != 401 || body["error"] != "unauthorized" {
		t.Fatalf("neither key nor token: %d %v", resp.StatusCode, body)
	}
}

// A chat socket opened under a token is held to its expiry like a session
// socket: token_expired, then close 4003 after the grace unless it
// refreshed (same identity; the new sid list then decides which threads it
// may continue). A socket admitted by the API key alone has no expiry.
func TestChatTokenExpiry(t *testing.T) {
	t.Parallel()
	ts := startChatServerWith(t, func(c *Config) {
		c.AuthAPIKey = "edge-test-api-key"
		c.TokenExpiryGrace = 300 * time.Millisecond
	}, hsVerifier(t))
	tok := func(sid, sub string, ttl time.Duration) string {
		c := claims(sid, "user", ttl)
		c["sub"] = sub
		return mint(t, jwt.SigningMethodHS256, testSecret, c)
	}

	t.Run("no refresh", func(t *testing.T) {
		t.Parallel()
		c := ts.dial(t, "/ws/chat/?token="+tok("alice:*", "alice", 1500*time.Millisecond), nil)
		c.expectType("token_expired")
		c.expectClose(4003)
	})
	t.Run("refresh in time", func(t *testing.T) {
		t.Parallel()
		c := ts.dial(t, "/ws/chat/", http.Header{"Authorization": {"Bearer " + tok("alice:*", "alice", 1500*time.Millisecond)}})
		c.send(`{"type":"chat","message":"Hello"}`)
		thread, _ := c.expectType("session_started")["thread_id"].(string)
		drainTurn(c)
		c.expectType("token_expired")
		// Another user's token cannot take the socket over.
		c.send(`{"type":"refresh","token":"` + tok("bob:*", "bob", time.Hour) + `"}`)
		c.expectError("refresh_refused")
		c.send(`{"type":"refresh","token":"` + tok("alice:*", "alice", time.Hour) + `"}`)
		if m := c.expectType("refreshed"); m["exp"] == nil {
			t.Fatalf("refreshed %v", m)
		}
		c.quiet(time.Second) // several sweeps past the grace: still open
		c.send(`{"type":"chat","message":"again","thread_id":"` + thread + `"}`)
		if m := c.expectType("session_started"); m["thread_id"] != thread {
			t.Fatalf("continuation after refresh %v", m)
		}
		drainTurn(c)
	})
	t.Run("API key only", func(t *testing.T) {
		t.Parallel()
		c := ts.dial(t, "/ws/chat/", http.Header{"Authorization": {"edge-test-api-key"}})
		c.quiet(2500 * time.Millisecond) // past the others' expiry and grace
		c.send(`{"type":"chat","message":"still here"}`)
		c.expectType("session_started")
		drainTurn(c)
		// Without a token, refresh is the chat service's business (an
		// unknown type), as before.
		c.send(`{"type":"refresh","token":"x"}`)
		if m := c.next(); m["type"] == "refreshed" {
			t.Fatalf("refresh on a socket without a token: %v", m)
		}
	})
}

// Tokens travel in URLs (?token=) and headers, and are never logged: not
// on a refused upgrade, an accepted one, a refused refresh or an expiry,
// at debug level.
func TestTokensNeverLogged(t *testing.T) {
	t.Parallel()
	logs := &logBuffer{}
	ts := startServerWith(t, func(c *Config) { c.TokenExpiryGrace = 200 * time.Millisecond }, Deps{
		Tokens: hsVerifier(t),
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	good := mint(t, jwt.SigningMethodHS256, testSecret, claims("room", "agent", 1200*time.Millisecond))
	forged := mint(t, jwt.SigningMethodHS256, []byte("not-the-secret-not-the-secret-0123456"), claims("room", "agent", time.Hour))
	other := mint(t, jwt.SigningMethodHS256, testSecret, claims("room", "admin", time.Hour))
	if resp, body := upgradeResp(t, ts.addr, "/ws/session/room/?token="+forged, nil); resp.StatusCode != 401 {
		t.Fatalf("forged token: %d %v", resp.StatusCode, body)
	}
	if resp, _ := upgradeResp(t, ts.addr, "/ws/session/room/", map[string]string{"Authorization": "Bearer " + forged}); resp.StatusCode != 401 {
		t.Fatalf("forged bearer: %d", resp.StatusCode)
	}
	c := ts.dial(t, "/ws/session/room/?token="+good, nil)
	c.expectType("connected")
	c.hello("agent", "web")
	c.send(`{"type":"refresh","token":"` + other + `"}`)
	c.expectError("refresh_refused")
	c.expectType("token_expired")
	c.expectClose(4003)
	if len(logs.lines(t, "websocket upgrade refused")) != 2 {
		t.Fatalf("the refusals were not logged:\n%s", logs.String())
	}
	for _, tok := range []string{good, forged, other} {
		sig := tok[strings.LastIndexByte(tok, '.')+1:]
		if strings.Contains(logs.String(), sig) {
			t.Fatalf("a token was logged:\n%s", logs.String())
		}
	}
}
