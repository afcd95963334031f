package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/wsedge/wsedge/internal/testenv"
)

// A SIGTERM drain of one of three instances (real binaries, history on)
// during a 200 msg/s stream: every listener honours the reconnect hint,
// resumes on another instance with since and epoch, and ends with every
// message exactly once, in order.
func TestE2EDrainResume(t *testing.T) {
	r := testenv.StartRedis(t)
	c := testenv.StartRedisCluster(t, 3)
	for _, tt := range []struct{ name, url string }{{"standalone", r.URL()}, {"cluster", c.URL()}} {
		t.Run(tt.name, func(t *testing.T) { e2eDrainResume(t, tt.url) })
	}
}

func e2eDrainResume(t *testing.T, url string) {
	const (
		session   = "drain-resume"
		total     = 800 // 4 s at 200/s
		perNode   = 4
		drainedAt = 300 // messages sent before SIGTERM
	)
	env := []string{"SESSION_HISTORY_SIZE=2000", "SESSION_HISTORY_TTL=1m", "DRAIN_SPREAD=1s",
		"RECONNECT_JITTER=300ms", "DRAIN_TIMEOUT=10s", "LOG_LEVEL=info"}
	var ins []*e2eInstance
	for i := range 3 {
		ins = append(ins, startInstance(t, fmt.Sprintf("dr%d", i), url, env...))
	}
	drained := ins[2]
	var alive sync.Map // addr -> bool
	for _, in := range ins {
		alive.Store(in.addr, true)
	}
	addrs := []string{ins[0].addr, ins[1].addr, ins[2].addr}

	var listeners []*resumer
	for i := range 3 * perNode {
		l := &resumer{t: t, session: session, addrs: addrs, alive: &alive, start: i % 3, want: total}
		listeners = append(listeners, l)
	}
	var wg sync.WaitGroup
	ready := make(chan struct{}, len(listeners))
	for _, l := range listeners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.run(ready)
		}()
	}
	for range listeners {
		select {
		case <-ready:
		case <-time.After(20 * time.Second):
			t.Fatal("listeners did not join")
		}
	}
	for i, l := range listeners {
		if l.err != nil {
			t.Fatalf("listener %d: %v", i, l.err)
		}
	}

	pub := dialSession(t, ins[0], session, "publisher", "test")
	go func() { // the publisher's own copies are not needed
		for range pub.frames {
		}
	}()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for n := range total {
		<-tick.C
		pub.send(map[string]any{"type": "broadcast", "msg": "m-" + strconv.Itoa(n)})
		if n == drainedAt {
			alive.Store(drained.addr, false)
			go drained.signal(syscall.SIGTERM)
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("listeners did not receive every message within 60s")
	}
	moved := 0
	for i, l := range listeners {
		if l.err != nil {
			t.Errorf("listener %d: %v", i, l.err)
			continue
		}
		if l.resumes > 0 {
			moved++
		}
	}
	if moved < perNode {
		t.Fatalf("%d listeners resumed after the drain, want at least the %d of the drained instance", moved, perNode)
	}
	t.Logf("%d listeners resumed; each has all %d messages exactly once, in order", moved, total)
}

// resumer is a well-behaved client: it records every session_message, and
// on a reconnect hint (or a lost connection) waits after_ms and resumes on
// another live instance with since and epoch.
type resumer struct {
	t       *testing.T
	session string
	addrs   []string
	alive   *sync.Map
	start   int
	want    int

	epoch   string
	last    uint64
	next    int // the next m-<n> expected
	resumes int
	err     error
}

func (r *resumer) run(ready chan<- struct{}) {
	idx := r.start
	joined := false
	defer func() {
		if !joined {
			ready <- struct{}{} // failed before joining: r.err says why
		}
	}()
	deadline := time.Now().Add(50 * time.Second)
	for r.next < r.want && time.Now().Before(deadline) {
		addr := r.addrs[idx%len(r.addrs)]
		idx++
		if ok, _ := r.alive.Load(addr); ok != true {
			continue
		}
		after, err := r.session1(addr, func() {
			if !joined {
				joined = true
				ready <- struct{}{}
			}
		})
		if r.err != nil {
			return
		}
		if err != nil && !joined {
			r.err = err
			return
		}
		time.Sleep(after)
	}
	if r.next < r.want {
		r.err = fmt.Errorf("received %d of %d messages", r.next, r.want)
	}
}

// session1 runs one connection; it returns how long to wait before the
// next one.
func (r *resumer) session1(addr string, joined func()) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	conn, br, _, err := ws.Dial(ctx, "ws://"+addr+"/ws/session/"+r.session+"/")
	cancel()
	if err != nil {
		return 50 * time.Millisecond, err
	}
	defer conn.Close()
	rw := e2eConn{Reader: conn, Writer: conn}
	if br != nil {
		rw.Reader = br
	}
	read := func() (map[string]any, error) {
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		data, err := wsutil.ReadServerText(rw)
		if err != nil {
			return nil, err
		}
		var f map[string]any
		return f, json.Unmarshal(data, &f)
	}
	f, err := read()
	if err != nil || f["type"] != "connected" {
		return 50 * time.Millisecond, fmt.Errorf("connected: %v %v", f, err)
	}
	hello := map[string]any{"type": "hello", "user_type": "listener", "client_type": "test"}
	if r.epoch != "" {
		hello["since"], hello["epoch"] = r.last, r.epoch
		r.resumes++
	} else {
		r.epoch, _ = f["epoch"].(string)
	}
	b, _ := json.Marshal(hello)
	if err := wsutil.WriteClientText(conn, b); err != nil {
		return 50 * time.Millisecond, err
	}
	_ = wsutil.WriteClientText(conn, []byte(`{"type":"presence"}`))
	for r.next < r.want {
		f, err := read()
		if err != nil {
			return 50 * time.Millisecond, err // lost: resume elsewhere
		}
		switch f["type"] {
		case "presence":
			joined()
		case "reconnect":
			ms, _ := f["after_ms"].(float64)
			return time.Duration(ms) * time.Millisecond, nil
		case "recovery_failed":
			r.err = fmt.Errorf("recovery_failed after seq %d: %v", r.last, f)
			return 0, r.err
		case "session_message":
			seq, _ := f["seq"].(float64)
			msg, _ := f["msg"].(string)
			if err := r.record(uint64(seq), msg); err != nil {
				r.err = err
				return 0, err
			}
		}
	}
	return 0, nil
}

// record checks that seqs are consecutive and messages in order, once.
func (r *resumer) record(seq uint64, msg string) error {
	if r.last != 0 && seq != r.last+1 {
		return fmt.Errorf("seq %d after %d (gap or duplicate)", seq, r.last)
	}
	r.last = seq
	n, ok := strings.CutPrefix(msg, "m-")
	if !ok {
		return errors.New("unexpected message " + msg)
	}
	if n != strconv.Itoa(r.next) {
		return fmt.Errorf("message %s, want m-%d", msg, r.next)
	}
	r.next++
	return nil
}
