package hostile

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// rssBoundMiB is the most resident memory the server may use at any moment
// of the suite. Its parts: the Go runtime and an idle server (~15 MiB);
// 20 tricklers pinning at most one 1 MiB frame each until FRAME_TIMEOUT
// (20 MiB); stalled readers bounded by OUTBOUND_QUEUE_CAP (2 MiB each, a few
// at a time); 2,000 idle TCP sockets; pipelined HTTP bounded by its outbound
// cap; and the garbage collector's headroom (GOGC=100 lets the heap reach
// twice the live data).
const rssBoundMiB = 160

// suiteEnv: production defaults except the deadlines, shortened so that the
// suite runs in seconds, and a presence maximum small enough to reach.
var suiteEnv = map[string]string{
	"FRAME_TIMEOUT":        "1s",
	"HANDSHAKE_TIMEOUT":    "2s",
	"PRESENCE_MAX_MEMBERS": "50",
}

// TestHostileClients runs every attack against one server, one after the
// other, while well-behaved clients on the same event loop keep receiving a
// steady stream of broadcasts; at the end every one of them must have
// received every broadcast in order, and the server's RSS must have stayed
// under rssBoundMiB.
func TestHostileClients(t *testing.T) {
	runAttacks(t, suiteEnv, "good", rssBoundMiB, []attack{
		{"broadcast flood in one write", floodBroadcasts},
		{"ping flood in one write", floodPings},
		{"trickled frames", trickleFrames},
		{"trickled fragments", trickleFragments},
		{"stalled reader", stalledReader},
		{"echo pipelining without reading", echoWithoutReading},
		{"oversize presence", oversizePresence},
		{"lies in hello", liesInHello},
		{"protocol garbage", protocolGarbage},
		{"thousands of idle sockets", idleSockets},
		{"HTTP pipelining without reading", httpPipelining},
		{"lower-case headers", lowerCaseHeaders},
		{"smuggling attempts", smuggling},
	})
}

// 1,100 broadcasts in one TCP write (more frames than one writev takes):
// every listener receives all of them, in order.
func floodBroadcasts(t *testing.T, s *server) {
	const n = 1100
	var ls []*wsConn
	for i := 0; i < 3; i++ {
		ls = append(ls, s.session(t, "flood", "listener"))
	}
	sender := s.session(t, "flood", "flooder")
	var burst bytes.Buffer
	for i := 0; i < n; i++ {
		burst.Write(clientFrame(ws.OpText, true, fmt.Appendf(nil, `{"type":"broadcast","msg":%d}`, i)))
	}
	if _, err := sender.Write(burst.Bytes()); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for li, l := range append(ls, sender) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n; i++ {
				m, err := l.readJSON(10 * time.Second)
				if err != nil {
					t.Errorf("flood listener %d, message %d: %v", li, i, err)
					return
				}
				if m["msg"] != float64(i) {
					t.Errorf("flood listener %d: got %s, want message %d", li, short(m), i)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// 5,000 pings in one write: the socket is not reset; pings within
// MESSAGE_BURST are answered, the rest dropped with one rate_limited.
func floodPings(t *testing.T, s *server) {
	c := s.session(t, "pings", "pinger")
	var burst bytes.Buffer
	for i := 0; i < 5000; i++ {
		burst.Write(clientFrame(ws.OpPing, true, []byte("p")))
	}
	if _, err := c.Write(burst.Bytes()); err != nil {
		t.Fatal(err)
	}
	pongs, limited := 0, 0
	for limited == 0 {
		h, p, err := c.readFrame(10 * time.Second)
		if err != nil {
			t.Fatalf("after %d pongs: %v", pongs, err)
		}
		switch {
		case h.OpCode == ws.OpPong:
			pongs++
		case bytes.Contains(p, []byte(`"rate_limited"`)):
			limited++
		default:
			t.Fatalf("unexpected frame %v %q", h.OpCode, p)
		}
	}
	time.Sleep(50 * time.Millisecond) // the bucket refills at MESSAGE_RATE
	if err := c.sendText(`{"type":"still-open"}`); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := c.readJSON(10 * time.Second)
		if err != nil {
			t.Fatalf("after the flood: %v", err)
		}
		if m["type"] == "echo" {
			break
		}
	}
	if pongs < 1000 || pongs >= 5000 {
		t.Fatalf("%d pongs for 5,000 pings at MESSAGE_BURST=2000", pongs)
	}
}

// 20 sockets each send all but the last KiB of a 1 MiB frame and then
// trickle one byte every 300 ms: every one is closed 1008 at FRAME_TIMEOUT (1 s), although bytes
// keep arriving.
func trickleFrames(t *testing.T, s *server) {
	const n = 20
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		c := s.session(t, "trickle", "trickler")
		frame := clientFrame(ws.OpText, true, bytes.Repeat([]byte("x"), 1<<20-100))
		// All but the last KiB at once: the server holds ~1 MiB for each.
		start := len(frame) - 1024
		if _, err := c.Write(frame[:start]); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			stop := make(chan struct{})
			go func() {
				for off := start; off < len(frame); off++ {
					select {
					case <-stop:
						return
					case <-time.After(300 * time.Millisecond):
					}
					if _, err := c.Write(frame[off : off+1]); err != nil {
						return
					}
				}
			}()
			defer close(stop)
			// Only the frame deadline closes with 1008.
			if code := c.expectClose(t, 20*time.Second); code != 1008 {
				t.Errorf("trickler: close %d, want 1008", code)
			}
		}()
	}
	wg.Wait()
}

// A fragmented message whose fragments each arrive whole, but slowly, never
// completes: closed 1008 at FRAME_TIMEOUT.
func trickleFragments(t *testing.T, s *server) {
	c := s.session(t, "trickle", "fragmenter")
	if _, err := c.Write(clientFrame(ws.OpText, false, []byte(`{"a":"`))); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if _, err := c.Write(clientFrame(ws.OpContinuation, false, []byte("y"))); err != nil {
				return
			}
		}
	}()
	if code := c.expectClose(t, 10*time.Second); code != 1008 {
		t.Fatalf("close %d, want 1008", code)
	}
}

// A member that never reads while others broadcast large messages into its
// session is closed at its outbound cap (1013); the server does not buffer
// without bound for it.
func stalledReader(t *testing.T, s *server) {
	stalled := s.session(t, "fanout", "stalled")
	payload := strings.Repeat("z", 60<<10)
	var wg sync.WaitGroup
	// Eight senders, each within its own byte budget (2 MiB burst): 15 MiB
	// toward the stalled socket, more than its cap plus kernel buffers.
	for i := 0; i < 8; i++ {
		sender := s.session(t, "fanout", "sender")
		go func() { _, _ = io.Copy(io.Discard, sender) }()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 32; j++ {
				if err := sender.sendText(`{"type":"broadcast","msg":"` + payload + `"}`); err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	// Reading now yields what the kernel held, then the close (or the end
	// of the connection if not even the close frame fitted).
	if code := stalled.expectClose(t, 30*time.Second); code != 1013 && code != 0 {
		t.Fatalf("stalled reader: close %d, want 1013", code)
	}
}

// A client that sends echo requests as fast as it can and never reads: its
// budgets drop what is over them, its outbound cap closes it; it cannot make
// the server buffer without bound.
func echoWithoutReading(t *testing.T, s *server) {
	c := s.session(t, "echoer", "echoer")
	msg := clientFrame(ws.OpText, true, []byte(`{"pad":"`+strings.Repeat("e", 8<<10)+`"}`))
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	sent := 0
	for i := 0; i < 4000; i++ { // 32 MiB offered
		if _, err := c.Write(msg); err != nil {
			break // the server stopped reading us, or closed us
		}
		sent++
	}
	t.Logf("echo pipelining: %d of 4,000 8 KiB messages written before the server pushed back", sent)
}

// 120 members with the longest types escaping can make: a presence answer
// holds PRESENCE_MAX_MEMBERS (50) of them and says "truncated"; the asker is
// not closed.
func oversizePresence(t *testing.T, s *server) {
	long := strings.Repeat("<", 64)
	for i := 0; i < 120; i++ {
		c := s.dialWS(t, "/ws/session/crowd/")
		c.expectType(t, "connected")
		if err := c.sendText(fmt.Sprintf(`{"type":"hello","user_type":%q,"client_type":"%s%03d"}`, long, long[:61], i)); err != nil {
			t.Fatal(err)
		}
	}
	asker := s.session(t, "crowd", "asker")
	var m map[string]any
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := asker.sendText(`{"type":"presence"}`); err != nil {
			t.Fatal(err)
		}
		m = asker.expectType(t, "presence")
		if m["count"] == float64(121) || time.Now().After(deadline) {
			break
		}
	}
	members, _ := m["members"].([]any)
	if m["count"] != float64(121) || len(members) != 50 || m["truncated"] != true {
		t.Fatalf("presence: count %v, %d members, truncated %v", m["count"], len(members), m["truncated"])
	}
	if err := asker.sendText(`{"type":"presence","limit":5}`); err != nil {
		t.Fatal(err)
	}
	if m := asker.expectType(t, "presence"); len(m["members"].([]any)) != 5 {
		t.Fatalf("limit 5: %d members", len(m["members"].([]any)))
	}
}

// A hello that lies (empty, whitespace, too long, wrong types, binary) is
// refused with user_type_required/hello_required and close 4001.
func liesInHello(t *testing.T, s *server) {
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"whitespace user_type", clientFrame(ws.OpText, true, []byte(`{"type":"hello","user_type":"  \t "}`))},
		{"long user_type", clientFrame(ws.OpText, true, []byte(`{"type":"hello","user_type":"`+strings.Repeat("u", 65)+`"}`))},
		{"number user_type", clientFrame(ws.OpText, true, []byte(`{"type":"hello","user_type":5}`))},
		{"long client_type", clientFrame(ws.OpText, true, []byte(`{"type":"hello","user_type":"u","client_type":"`+strings.Repeat("c", 65)+`"}`))},
		{"binary hello", clientFrame(ws.OpBinary, true, []byte(`{"type":"hello","user_type":"u"}`))},
		{"broadcast first", clientFrame(ws.OpText, true, []byte(`{"type":"broadcast","msg":"x"}`))},
	} {
		c := s.dialWS(t, "/ws/session/liars/")
		c.expectType(t, "connected")
		if _, err := c.Write(tc.frame); err != nil {
			t.Fatal(err)
		}
		c.expectType(t, "error")
		if code := c.expectClose(t, 5*time.Second); code != 4001 {
			t.Errorf("%s: close %d, want 4001", tc.name, code)
		}
	}
}

// RFC 6455 violations close the offender with the right code at once.
func protocolGarbage(t *testing.T, s *server) {
	for _, tc := range []struct {
		name  string
		frame []byte
		code  ws.StatusCode
	}{
		{"unmasked", ws.MustCompileFrame(ws.NewTextFrame([]byte("{}"))), 1002},
		{"64-bit length with the top bit", []byte{0x81, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}, 1002},
		{"length over MAX_MESSAGE_SIZE", []byte{0x81, 0xFF, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4}, 1009},
		{"invalid UTF-8 in the first fragment", clientFrame(ws.OpText, false, []byte{'"', 0xC0}), 1007},
	} {
		c := s.session(t, "garbage", "garbage")
		if _, err := c.Write(tc.frame); err != nil {
			t.Fatal(err)
		}
		if code := c.expectClose(t, 5*time.Second); code != tc.code {
			t.Errorf("%s: close %d, want %d", tc.name, code, tc.code)
		}
	}
}

// 2,000 sockets that open and send nothing or half a request head are
// dropped at HANDSHAKE_TIMEOUT (2 s) or idle timeout; meanwhile nothing else
// is held up.
func idleSockets(t *testing.T, s *server) {
	const n = 2000
	conns := make([]net.Conn, 0, n)
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", s.addr, 5*time.Second)
		if err != nil {
			t.Fatalf("socket %d: %v", i, err)
		}
		conns = append(conns, c)
		if i%2 == 0 {
			_, _ = io.WriteString(c, "GET /health/ HTTP/1.1\r\nHost: x\r\n") // never finished
		}
	}
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	var wg sync.WaitGroup
	var mu sync.Mutex
	held := 0
	for i, c := range conns {
		if i%2 == 1 {
			continue // idle keep-alive sockets wait for HTTP_IDLE_TIMEOUT (75 s)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
			if _, err := io.Copy(io.Discard, c); err != nil {
				mu.Lock()
				held++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if held > 0 {
		t.Fatalf("%d half-sent requests outlived HANDSHAKE_TIMEOUT", held)
	}
}
