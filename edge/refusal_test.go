package edge

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wsedge/wsedge/internal/testenv"
)

// logBuffer collects JSON log lines from a running server.
type logBuffer struct{ testenv.Buffer }

// lines returns the decoded lines whose msg starts with prefix.
func (b *logBuffer) lines(t testing.TB, prefix string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if msg, _ := m["msg"].(string); strings.HasPrefix(msg, prefix) {
			out = append(out, m)
		}
	}
	return out
}

// nopChat stands in for the chat service: these tests are about the upgrade.
type nopChat struct{}

func (nopChat) OnText([]byte) {}
func (nopChat) OnBinary()     {}
func (nopChat) OnClose()      {}

func startOriginServer(t *testing.T, allowMissing bool) (*testServer, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	ts := startServerWith(t, func(c *Config) {
		c.Debug = false
		c.AllowedHosts = []string{"app.example.com"}
		c.AllowMissingOrigin = allowMissing
	}, Deps{
		Logger:   slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
		OpenChat: func(string, ChatSink) ChatConn { return nopChat{} },
	})
	return ts, logs
}

var goodOrigin = http.Header{"Origin": {"https://app.example.com"}}

// With DEBUG=0 the Origin check decides, ALLOW_MISSING_ORIGIN lets native
// clients (no Origin header) through and nothing else, and every refusal is
// logged with its reason, route and origin.
func TestOriginCheckAndRefusalLog(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name         string
		allowMissing bool
		path         string
		origin       string // "" sends no Origin header
		want         string // "" accepted, else the logged reason
		route        string // logged route
	}{
		{"listed origin", false, "/ws/session/o1/", "https://app.example.com", "", ""},
		{"listed origin, upper case", false, "/ws/session/o1/", "https://APP.example.com", "", ""},
		{"missing origin refused by default", false, "/ws/session/o1/", "", reasonOriginMissing, "session"},
		{"foreign origin", false, "/ws/session/o1/", "https://evil.example.org", reasonOriginNotAllowed, "session"},
		{"null origin", false, "/ws/session/o1/", "null", reasonOriginNotAllowed, "session"},
		{"missing origin allowed", true, "/ws/session/o1/", "", "", ""},
		{"missing origin allowed on chat route", true, "/ws/chat/", "", "", ""},
		{"missing origin refused on chat route", false, "/ws/chat/", "", reasonOriginMissing, "chat"},
		{"foreign origin still refused", true, "/ws/session/o1/", "https://evil.example.org", reasonOriginNotAllowed, "session"},
		{"null origin still refused", true, "/ws/session/o1/", "null", reasonOriginNotAllowed, "session"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts, logs := startOriginServer(t, tc.allowMissing)
			var hdr http.Header
			if tc.origin != "" {
				hdr = http.Header{"Origin": {tc.origin}}
			}
			c, err := ts.tryDial(t, tc.path, hdr)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("upgrade refused: %v", err)
				}
				c.conn.Close()
				if got := logs.lines(t, "websocket upgrade refused"); len(got) != 0 {
					t.Fatalf("accepted upgrade logged as refused: %v", got)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "403") {
				t.Fatalf("upgrade: %v, want 403", err)
			}
			got := logs.lines(t, "websocket upgrade refused")
			if len(got) != 1 {
				t.Fatalf("refusal log lines: %v, want 1", got)
			}
			if got[0]["reason"] != tc.want || got[0]["route"] != tc.route || got[0]["origin"] != tc.origin ||
				got[0]["level"] != "WARN" || got[0]["remote"] == "" {
				t.Fatalf("refusal logged as %v", got[0])
			}
			if n := counterValue(t, ts.reg, "wsedge_rejected_total"); n != 1 {
				t.Fatalf("wsedge_rejected_total = %v, want 1", n)
			}
		})
	}
}

// A flood of refused upgrades writes a bounded number of log lines, every
// refusal is accounted for (logged, or counted in a later "suppressed"
// field), and a well-behaved client on the same server keeps working.
func TestRefusalLogFlood(t *testing.T) {
	t.Parallel()
	ts, logs := startOriginServer(t, false)
	good := ts.dial(t, "/ws/session/flood/", goodOrigin)
	good.expectType("connected")
	good.hello("agent", "web")

	const attempts = 300
	long := "https://" + strings.Repeat("abcdefgh.", 200) + "example.org"
	for i := range attempts {
		var hdr http.Header
		if i%2 == 0 {
			hdr = http.Header{"Origin": {long}}
		}
		if _, err := ts.tryDial(t, "/ws/session/flood/", hdr); err == nil {
			t.Fatal("refused origin accepted")
		}
		if i%50 == 0 {
			good.send(`{"type":"broadcast","msg":"still here"}`)
			good.expectType("session_message")
		}
	}
	// The sweeper reports the tail of the flood once the bucket refills.
	var logged, suppressed int
	deadline := time.Now().Add(10 * time.Second)
	for {
		logged, suppressed = 0, 0
		for _, l := range logs.lines(t, "websocket upgrade") {
			if _, ok := l["reason"]; ok {
				logged++
				if o, _ := l["origin"].(string); len(o) > maxLoggedOrigin {
					t.Fatalf("origin logged with %d bytes", len(o))
				}
			}
			n, _ := l["suppressed"].(float64)
			suppressed += int(n)
		}
		if logged+suppressed == attempts {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("logged %d + suppressed %d refusals, want %d", logged, suppressed, attempts)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The bucket holds refusalLogBurst lines and refills one a second; the
	// flood may take a few seconds on a busy machine, hence the margin.
	if logged > attempts/4 {
		t.Fatalf("%d of %d refusals logged one by one: the log is not rate-limited", logged, attempts)
	}
	good.send(`{"type":"broadcast","msg":"after"}`)
	good.expectType("session_message")
	if n := counterValue(t, ts.reg, "wsedge_rejected_total"); n != attempts {
		t.Fatalf("wsedge_rejected_total = %v, want %d", n, attempts)
	}
}

// A /ws/chat/ upgrade with a wrong API key is refused 401, counted and
// logged like an Origin refusal, without the key.
func TestUnauthorizedUpgradeLogged(t *testing.T) {
	t.Parallel()
	logs := &logBuffer{}
	ts := startServerWith(t, func(c *Config) { c.AuthAPIKey = "the-right-key" }, Deps{
		Logger:   slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
		OpenChat: func(string, ChatSink) ChatConn { return nopChat{} },
	})
	_, err := ts.tryDial(t, "/ws/chat/?authorization=a-wrong-key", goodOrigin)
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("upgrade: %v, want 401", err)
	}
	got := logs.lines(t, "websocket upgrade refused")
	if len(got) != 1 || got[0]["reason"] != reasonUnauthorized || got[0]["route"] != "chat" ||
		got[0]["origin"] != "https://app.example.com" {
		t.Fatalf("refusal logged as %v", got)
	}
	if strings.Contains(logs.String(), "a-wrong-key") {
		t.Fatal("the offered key was logged")
	}
	c, err := ts.tryDial(t, "/ws/chat/?authorization=the-right-key", goodOrigin)
	if err != nil {
		t.Fatalf("right key refused: %v", err)
	}
	c.conn.Close()
	if n := counterValue(t, ts.reg, "wsedge_rejected_total"); n != 1 {
		t.Fatalf("wsedge_rejected_total = %v, want 1", n)
	}
}
