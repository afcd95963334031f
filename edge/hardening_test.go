package edge

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/wsedge/wsedge/edge/presence"
	"github.com/wsedge/wsedge/edge/wsframe"
	"github.com/wsedge/wsedge/internal/testenv"
)

// Regression tests for issue 7 (hardening), over real sockets.

// A burst of more frames than writev takes (IOV_MAX, 1,024) reaches every
// listener whole and in order: the flush is split, never failed.
func TestFloodOfBroadcastsInOneWrite(t *testing.T) {
	t.Parallel()
	ts := startServer(t, func(c *Config) { c.EventLoops = 1 })
	const n = 1100
	var listeners []*wsClient
	for i := 0; i < 3; i++ {
		c, _ := ts.session(t, "flood", "listener", "web")
		listeners = append(listeners, c)
	}
	sender, _ := ts.session(t, "flood", "sender", "web")
	var burst bytes.Buffer
	for i := 0; i < n; i++ {
		burst.Write(masked(ws.OpText, true, fmt.Appendf(nil, `{"type":"broadcast","msg":%d}`, i)))
	}
	sender.sendRaw(burst.Bytes())
	var wg sync.WaitGroup
	for li, l := range append(listeners, sender) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n; i++ {
				_, p, err := l.frame(15 * time.Second)
				if err != nil {
					t.Errorf("listener %d: message %d: %v", li, i, err)
					return
				}
				if want := fmt.Sprintf(`"msg":%d,`, i); !bytes.Contains(p, []byte(want)) {
					t.Errorf("listener %d: message %d is %s", li, i, p)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// 5,000 pings in one write: each is answered with a pong or, over the
// message budget, dropped with one rate_limited notice; the socket survives.
func TestFloodOfPingsInOneWrite(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	c, _ := ts.session(t, "pings", "admin", "web")
	const n = 5000
	var burst bytes.Buffer
	for i := 0; i < n; i++ {
		burst.Write(masked(ws.OpPing, true, []byte("p")))
	}
	c.sendRaw(burst.Bytes())
	pongs, limited := 0, 0
	for sent := false; ; {
		h, p, err := c.frame(15 * time.Second)
		if err != nil {
			t.Fatalf("after %d pongs: %v", pongs, err)
		}
		if h.OpCode == ws.OpPong {
			pongs++
			continue
		}
		if h.OpCode != ws.OpText {
			t.Fatalf("unexpected opcode %v %q", h.OpCode, p)
		}
		if bytes.Contains(p, []byte(`"rate_limited"`)) {
			limited++
			// The bucket refills at MESSAGE_RATE: the socket is usable.
			time.Sleep(50 * time.Millisecond)
			c.send(`{"type":"after"}`)
			sent = true
			continue
		}
		if !sent || !bytes.Contains(p, []byte(`"echo"`)) {
			t.Fatalf("unexpected frame %s", p)
		}
		break
	}
	// The default burst (2,000) holds fewer than 5,000 pings: the rest were
	// dropped, and the client was told once.
	if burst := Defaults().MessageBurst; pongs < burst-2 || pongs >= n || limited != 1 {
		t.Fatalf("%d pongs and %d rate_limited answers for %d pings with burst %d", pongs, limited, n, burst)
	}
}

// A frame or fragmented message that does not complete within FrameTimeout
// is closed 1008, however often bytes trickle in; a well-behaved client on
// the same event loop is not affected.
func TestFrameTimeout(t *testing.T) {
	t.Parallel()
	ts := startServer(t, func(c *Config) {
		c.EventLoops = 1
		c.FrameTimeout = 600 * time.Millisecond
		c.PingInterval = time.Hour // only the frame deadline can end it
		c.PongTimeout = time.Hour
	})
	good, _ := ts.session(t, "ft", "good", "web")
	bigText := masked(ws.OpText, true, bytes.Repeat([]byte("x"), 64<<10))
	for _, tc := range []struct {
		name  string
		start []byte // sent at once
		drip  []byte // then one byte every 100 ms
	}{
		{"partial header", nil, bigText[:1]},
		{"partial payload", bigText[:100], bigText[100:]},
		{"fragmented message of complete frames", masked(ws.OpText, false, []byte("{")),
			bytes.Repeat(masked(ws.OpContinuation, false, []byte(" ")), 100)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := ts.session(t, "ft", "trickler", "web")
			c.sendRaw(tc.start)
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				for _, b := range tc.drip {
					select {
					case <-stop:
						return
					case <-time.After(100 * time.Millisecond):
					}
					if _, err := c.conn.Write([]byte{b}); err != nil {
						return
					}
				}
			}()
			defer func() { close(stop); <-done }()
			// Meanwhile the well-behaved client is answered.
			good.send(`{"type":"ping-me"}`)
			good.expectType("echo")
			c.expectClose(1008)
		})
	}
	good.send(`{"type":"still-here"}`)
	good.expectType("echo")
	if got := counterValue(t, ts.reg, "wsedge_rejected_total"); got < 3 {
		t.Fatalf("rejected_total %v, want the 3 frame timeouts counted", got)
	}
}

// Whatever the server accepts it can answer: a MAX_MESSAGE_SIZE message is
// echoed (its echo is larger than the message), with default settings.
func TestMaxSizeMessageIsEchoed(t *testing.T) {
	t.Parallel()
	ts := startServer(t, func(c *Config) { c.OutboundCap = c.MinOutboundCap() })
	c, _ := ts.session(t, "big", "admin", "web")
	max := Defaults().MaxMessageSize
	// A JSON string of exactly MAX_MESSAGE_SIZE bytes.
	msg := append(append([]byte{'"'}, bytes.Repeat([]byte("y"), max-2)...), '"')
	c.sendRaw(masked(ws.OpText, true, msg))
	h, p, err := c.frame(15 * time.Second)
	if err != nil || h.OpCode != ws.OpText {
		t.Fatalf("want the echo, got opcode %v, %d bytes, %v", h.OpCode, len(p), err)
	}
	if len(p) != max+len(`{"type":"echo","data":}`) {
		t.Fatalf("echo of %d bytes", len(p))
	}
	c.send(`{"type":"after"}`)
	c.expectType("echo")
}

// A presence answer is bounded: count is the whole session, members and
// by_type hold at most the server's maximum (or the client's limit), and
// "truncated" says so. The client that asked stays connected even with
// members whose types take the most bytes.
func TestPresenceBounded(t *testing.T) {
	t.Parallel()
	ts := startServer(t, func(c *Config) {
		c.PresenceMaxMembers = 10
		c.MaxMessageSize = 4 << 10
		c.OutboundCap = c.MinOutboundCap()
	})
	long := bytes.Repeat([]byte("<"), 64) // 64 bytes, 384 once escaped
	asker, _ := ts.session(t, "pb", "asker", "web")
	for i := 0; i < 30; i++ {
		c := ts.dial(t, "/ws/session/pb/", nil)
		c.expectType("connected")
		c.send(fmt.Sprintf(`{"type":"hello","user_type":%q,"client_type":"%s%02d"}`, long, long[:62], i))
	}
	for _, tc := range []struct {
		req       string
		members   int
		truncated bool
	}{
		{`{"type":"presence"}`, 10, true},
		{`{"type":"presence","limit":3}`, 3, true},
		{`{"type":"presence","limit":1000}`, 10, true},
	} {
		var m map[string]any
		testenv.WaitFor(t, "all 31 members", 5*time.Second, func() bool {
			asker.send(tc.req)
			m = asker.expectType("presence")
			return m["count"] == float64(31)
		})
		members, _ := m["members"].([]any)
		byType, _ := m["by_type"].(map[string]any)
		if len(members) != tc.members || m["truncated"] != tc.truncated || len(byType) > 10 {
			t.Fatalf("%s: %d members, %d types, truncated %v; want %d members, truncated %v",
				tc.req, len(members), len(byType), m["truncated"], tc.members, tc.truncated)
		}
	}
	small, _ := ts.session(t, "pb-small", "solo", "web")
	small.send(`{"type":"presence"}`)
	if m := small.expectType("presence"); m["truncated"] != false || m["count"] != float64(1) {
		t.Fatalf("small session: %v", m)
	}
	for _, bad := range []string{`0`, `-1`, `1.5`, `"3"`, `true`} {
		asker.send(`{"type":"presence","limit":` + bad + `}`)
		asker.expectError("invalid_request")
	}
}

// Control frames and empty continuations take from the message budget, and
// payload bytes from the byte budget: over either, the message is dropped
// and rate_limited answered; the socket stays open.
func TestBudgetsCountEveryFrameAndByte(t *testing.T) {
	t.Parallel()
	t.Run("empty continuations", func(t *testing.T) {
		t.Parallel()
		ts := startServer(t, func(c *Config) { c.MessageRate = 10; c.MessageBurst = 20 })
		c, _ := ts.session(t, "bc", "admin", "web")
		var b bytes.Buffer
		b.Write(masked(ws.OpText, false, []byte(`{"type":"frag"`)))
		for i := 0; i < 1000; i++ {
			b.Write(masked(ws.OpContinuation, false, nil))
		}
		b.Write(masked(ws.OpContinuation, true, []byte(`}`)))
		c.sendRaw(b.Bytes())
		c.expectError("rate_limited")
		c.quiet(200 * time.Millisecond) // the message was dropped, not echoed
	})
	t.Run("pings", func(t *testing.T) {
		t.Parallel()
		ts := startServer(t, func(c *Config) { c.MessageRate = 10; c.MessageBurst = 20 })
		c, _ := ts.session(t, "bp", "admin", "web")
		var b bytes.Buffer
		for i := 0; i < 1000; i++ {
			b.Write(masked(ws.OpPing, true, nil))
		}
		c.sendRaw(b.Bytes())
		pongs := 0
		for {
			h, p, err := c.frame(5 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if h.OpCode == ws.OpPong {
				pongs++
				continue
			}
			if !bytes.Contains(p, []byte(`"rate_limited"`)) {
				t.Fatalf("unexpected %s", p)
			}
			break
		}
		if pongs > 20 {
			t.Fatalf("%d pongs at MESSAGE_BURST=20", pongs)
		}
	})
	t.Run("bytes", func(t *testing.T) {
		t.Parallel()
		ts := startServer(t, func(c *Config) {
			c.MaxMessageSize = 32 << 10
			c.ByteRate = 1 << 10
			c.ByteBurst = 64 << 10
		})
		c, _ := ts.session(t, "bb", "admin", "web")
		msg := `"` + string(bytes.Repeat([]byte("z"), 30<<10)) + `"`
		for i := 0; i < 3; i++ {
			c.send(msg)
		}
		c.expectType("echo")
		c.expectType("echo")
		c.expectError("rate_limited")
		c.send(`{"type":"small"}`) // a few bytes fit again soon
		testenv.WaitFor(t, "small message echoed", 5*time.Second, func() bool {
			m := c.next()
			return m["type"] == "echo"
		})
	})
}

// RFC details: a user_type of only whitespace is empty; invalid UTF-8 in a
// fragmented text message fails with its fragment, before the message ends.
func TestProtocolDetails(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	t.Run("whitespace user_type", func(t *testing.T) {
		for _, ut := range []string{" ", "\t\n ", "\u00a0"} {
			c := ts.dial(t, "/ws/session/pd/", nil)
			c.expectType("connected")
			c.hello(ut, "web")
			c.expectError("user_type_required")
			c.expectClose(4001)
		}
	})
	t.Run("utf-8 fail fast", func(t *testing.T) {
		c, _ := ts.session(t, "pd", "admin", "web")
		c.sendRaw(masked(ws.OpText, false, []byte("{\"a\":\"\xed\xa0"))) // a surrogate's start
		c.expectClose(1007)
	})
}

// smallAnswers lowers the largest answer (message size, presence members)
// so that a test can use an outbound cap far below the default floor.
func smallAnswers(c *Config) {
	c.MaxMessageSize = 16 << 10
	c.PresenceMaxMembers = 10
}

// The worst case of PresenceAnswerMax holds: PresenceMaxMembers members with
// the longest ids, types and times escaping can make all fit (the budget never
// cuts a legal answer short), the frame is valid JSON within the budget, and
// over the member limit the answer is cut and says so.
func TestPresenceAnswerWorstCase(t *testing.T) {
	t.Parallel()
	cfg := Defaults()
	cfg.PresenceMaxMembers = 200
	worst := string(bytes.Repeat([]byte{0x01}, maxTypeLen)) // \u0001: 6 bytes each
	members := make([]presence.Member, cfg.PresenceMaxMembers+5)
	for i := range members {
		members[i] = presence.Member{
			ConnectionID: fmt.Sprintf("%032x", i),
			UserType:     worst,
			ClientType:   worst[:maxTypeLen-4] + fmt.Sprintf("%04d", i), // all distinct
			ConnectedAt:  math.MinInt64,
			LastSeen:     math.MinInt64,
		}
	}
	budget := cfg.PresenceAnswerMax()
	for _, tc := range []struct {
		n, limit, want int
		truncated      bool
	}{
		{cfg.PresenceMaxMembers, cfg.PresenceMaxMembers, cfg.PresenceMaxMembers, false},
		{len(members), cfg.PresenceMaxMembers, cfg.PresenceMaxMembers, true},
		{len(members), 7, 7, true},
	} {
		frame, _ := presenceFrame(nil, strings.Repeat("s", 128), members[:tc.n], tc.limit, budget)
		if len(frame) > budget {
			t.Fatalf("frame of %d bytes over the budget %d", len(frame), budget)
		}
		payload := frame[wsframe.HeaderLen(frame):]
		var m struct {
			Count     int
			ByType    map[string]int `json:"by_type"`
			Members   []presence.Member
			Truncated bool
		}
		if err := json.Unmarshal(payload, &m); err != nil {
			t.Fatalf("answer is not JSON: %v", err)
		}
		if m.Count != tc.n || len(m.Members) != tc.want || m.Truncated != tc.truncated || len(m.ByType) > tc.limit {
			t.Fatalf("n=%d limit=%d: count %d, %d members, %d types, truncated %v", tc.n, tc.limit,
				m.Count, len(m.Members), len(m.ByType), m.Truncated)
		}
	}
}
