package edge

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
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
	c.send(`{"type":"after"}`)
	pongs, limited := 0, 0
	for {
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
			continue
		}
		if !bytes.Contains(p, []byte(`"echo"`)) {
			t.Fatalf("unexpected frame %s", p)
		}
		break
	}
	burst2 := Defaults().MessageBurst
	if pongs == 0 || pongs > n {
		t.Fatalf("%d pongs for %d pings", pongs, n)
	}
	// The default burst (2,000) holds fewer than 5,000 pings: the rest were
	// dropped, and the client was told.
	if pongs >= n || limited != 1 {
		t.Fatalf("%d pongs and %d rate_limited answers for %d pings with burst %d", pongs, limited, n, burst2)
	}
}
