package edge

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// Sockets that come and go in every way (close handshake, abrupt close,
// never a hello, protocol violation) leave nothing behind: no open count, no
// loop or hub membership, no presence record, no broker subscription, no
// goroutine.
func TestChurnLeavesNothing(t *testing.T) {
	ts := startServer(t, nil)
	goroutines := runtime.NumGoroutine()
	var wg sync.WaitGroup
	var sockets atomic.Int64
	deadline := time.Now().Add(2 * time.Second)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(w), 1))
			for time.Now().Before(deadline) {
				c, err := ts.tryDial(t, fmt.Sprintf("/ws/session/churn-%d/", rnd.IntN(4)), nil)
				if err != nil {
					t.Errorf("dial: %v", err)
					return
				}
				if rnd.IntN(5) > 0 {
					_ = wsutil.WriteClientText(c.conn, []byte(`{"type":"hello","user_type":"u"}`))
					for i := rnd.IntN(4); i > 0; i-- {
						_ = wsutil.WriteClientText(c.conn, []byte(`{"type":"broadcast","msg":1}`))
					}
					if rnd.IntN(2) == 0 {
						_ = wsutil.WriteClientText(c.conn, []byte(`{"type":"presence"}`))
					}
				}
				switch rnd.IntN(3) {
				case 0: // close handshake
					_ = wsutil.WriteClientMessage(c.conn, ws.OpClose, ws.NewCloseFrameBody(1000, ""))
				case 1: // protocol violation: an unmasked frame
					_, _ = c.conn.Write(ws.MustCompileFrame(ws.NewTextFrame([]byte("x"))))
				}
				_ = c.conn.Close() // and abrupt in every case
				sockets.Add(1)
			}
		}()
	}
	wg.Wait()
	t.Logf("%d sockets churned", sockets.Load())

	s := ts.srv
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		end := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(end) {
				t.Fatalf("after churn: %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitUntil("open sockets remain", func() bool { return s.open.Load() == 0 })
	onLoops := func(f func(ls *loopState) bool) bool {
		for _, ls := range s.allLoops() {
			ok := make(chan bool, 1)
			ls.run(func() { ok <- f(ls) })
			if !<-ok {
				return false
			}
		}
		return true
	}
	waitUntil("loops still hold sockets or members", func() bool {
		return onLoops(func(ls *loopState) bool { return len(ls.conns) == 0 && len(ls.sessions) == 0 && len(ls.dirty) == 0 })
	})
	waitUntil("hub still indexes sessions", func() bool {
		s.hub.mu.RLock()
		defer s.hub.mu.RUnlock()
		return len(s.hub.sessions) == 0
	})
	for i := 0; i < 4; i++ {
		ms, err := s.presence.Members(context.Background(), fmt.Sprintf("churn-%d", i))
		if err != nil || len(ms) != 0 {
			t.Fatalf("presence of churn-%d after churn: %v %v", i, ms, err)
		}
	}
	// Hundreds to thousands of sockets came and went; a per-socket leak would show as
	// hundreds of goroutines. A few may start once: gnet's worker pool is
	// created on first use.
	waitUntil(fmt.Sprintf("goroutines grew from %d", goroutines), func() bool {
		return runtime.NumGoroutine() <= goroutines+5
	})
}
