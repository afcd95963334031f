package broker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/rueidis"

	"github.com/wsedge/wsedge/internal/redisconn"
	"github.com/wsedge/wsedge/internal/testenv"
)

// recorder is a Handler that keeps what it receives.
type recorder struct {
	mu  sync.Mutex
	got map[string][]string // session -> payloads in arrival order
}

func newRecorder() *recorder { return &recorder{got: make(map[string][]string)} }

func (r *recorder) handle(session string, _ uint64, payload []byte) {
	r.mu.Lock()
	r.got[session] = append(r.got[session], string(payload))
	r.mu.Unlock()
}

func (r *recorder) messages(session string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got[session]...)
}

func (r *recorder) has(session, payload string) bool {
	for _, p := range r.messages(session) {
		if p == payload {
			return true
		}
	}
	return false
}

// backend is a Redis deployment the broker runs against.
type backend struct {
	name    string
	addrs   []string
	sharded bool
	stop    func()
	start   func()
}

func backends(t *testing.T) []backend {
	r := testenv.StartRedis(t)
	c := testenv.StartRedisCluster(t, 3)
	return []backend{
		{name: "standalone", addrs: []string{r.Addr}, stop: r.Stop, start: r.Start},
		{name: "cluster", addrs: c.Addrs, sharded: true, stop: c.Stop, start: c.Start},
	}
}

func newClient(t testing.TB, addrs []string) rueidis.Client {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: addrs, DisableCache: true})
	if err != nil {
		t.Fatalf("rueidis client for %v: %v", addrs, err)
	}
	t.Cleanup(c.Close)
	return c
}

// openConn opens the connection a broker named name runs on.
func openConn(t testing.TB, be backend, name string) *redisconn.Conn {
	t.Helper()
	mode := redisconn.Standalone
	if be.sharded {
		mode = redisconn.Cluster
	}
	c, err := redisconn.Open(context.Background(), redisconn.Options{
		Client: rueidis.ClientOption{InitAddress: be.addrs, DisableCache: true}, Mode: mode, Instance: name,
	})
	if err != nil {
		t.Fatalf("redis connection for %v: %v", be.addrs, err)
	}
	t.Cleanup(c.Close)
	return c
}

// testBroker is a Redis broker with what the edge's hub does around it: it
// knows which sessions are subscribed here and drops the others' messages.
type testBroker struct {
	*Redis
	mu   sync.Mutex
	subs map[string]bool
}

func (b *testBroker) Subscribe(session string) error {
	b.mu.Lock()
	b.subs[session] = true
	b.mu.Unlock()
	return b.Redis.Subscribe(session)
}

func (b *testBroker) Unsubscribe(session string) error {
	b.mu.Lock()
	delete(b.subs, session)
	b.mu.Unlock()
	return b.Redis.Unsubscribe(session)
}

// handler passes messages of subscribed sessions to h.
func (b *testBroker) handler(h func(string, uint64, []byte)) Handler {
	return func(session string, seq uint64, payload []byte) bool {
		b.mu.Lock()
		ok := b.subs[session]
		b.mu.Unlock()
		if ok {
			h(session, seq, payload)
		}
		return ok
	}
}

func newBroker(t testing.TB, be backend, name string, h func(string, uint64, []byte), mod func(*RedisOptions)) *testBroker {
	t.Helper()
	var o RedisOptions
	if mod != nil {
		mod(&o)
	}
	r, err := NewRedis(openConn(t, be, name), o)
	if err != nil {
		t.Fatalf("NewRedis: %v", err)
	}
	b := &testBroker{Redis: r, subs: map[string]bool{}}
	if err := r.Start(b.handler(h)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// waitReady publishes probes from `from` until every recorder has seen one,
// which proves the subscriptions of session are active in Redis.
func waitReady(t testing.TB, from *testBroker, session string, recs ...*recorder) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		probe := "probe:" + strconv.Itoa(i)
		if err := from.Publish(session, []byte(probe)); err != nil && !errors.Is(err, ErrBacklogFull) {
			t.Fatalf("probe publish: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
		all := true
		for _, r := range recs {
			if !r.has(session, probe) {
				all = false
			}
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("session %s: subscriptions not active after 10s", session)
		}
	}
}

// withoutProbes drops readiness probes from a message list.
// publishRetry publishes, waiting while the backlog is full; it reports
// false (after t.Errorf) on any other error.
func publishRetry(t *testing.T, b *testBroker, session, payload string) bool {
	for {
		err := b.Publish(session, []byte(payload))
		if err == nil {
			return true
		}
		if !errors.Is(err, ErrBacklogFull) {
			t.Errorf("publish: %v", err)
			return false
		}
		time.Sleep(time.Millisecond)
	}
}

func withoutProbes(ms []string) []string {
	out := ms[:0:0]
	for _, m := range ms {
		if !strings.HasPrefix(m, "probe:") {
			out = append(out, m)
		}
	}
	return out
}

// checkOrder verifies that every publisher's messages arrived complete and in
// order. Messages are "<publisher>:<seq>".
func checkOrder(t *testing.T, who string, ms []string, publishers []string, n int) {
	t.Helper()
	next := make(map[string]int)
	for _, m := range withoutProbes(ms) {
		pub, seqs, _ := strings.Cut(m, ":")
		seq, err := strconv.Atoi(seqs)
		if err != nil {
			t.Fatalf("%s: bad message %q", who, m)
		}
		if seq != next[pub] {
			t.Fatalf("%s: publisher %s: got seq %d, want %d (lost or reordered)", who, pub, seq, next[pub])
		}
		next[pub]++
	}
	for _, p := range publishers {
		if next[p] != n {
			t.Fatalf("%s: publisher %s: got %d messages, want %d", who, p, next[p], n)
		}
	}
}

func TestRedisBroker(t *testing.T) {
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			t.Run("OrderAcrossInstances", func(t *testing.T) { testOrderAcrossInstances(t, be) })
			t.Run("ManySessions", func(t *testing.T) { testManySessions(t, be) })
			t.Run("Unsubscribe", func(t *testing.T) { testUnsubscribe(t, be) })
			t.Run("RedisDown", func(t *testing.T) { testRedisDown(t, be) })
		})
	}
}

// Three instances, concurrent publishers on each: every listener on every
// instance gets every message, in order per publisher.
func testOrderAcrossInstances(t *testing.T, be backend) {
	const perPub = 300
	const session = "order"
	recs := []*recorder{newRecorder(), newRecorder(), newRecorder()}
	var bs []*testBroker
	for i, r := range recs {
		b := newBroker(t, be, "i"+strconv.Itoa(i), r.handle, nil)
		if err := b.Subscribe(session); err != nil {
			t.Fatal(err)
		}
		bs = append(bs, b)
	}
	waitReady(t, bs[0], session, recs...)
	for _, r := range recs {
		r.mu.Lock()
		r.got = make(map[string][]string)
		r.mu.Unlock()
	}
	var publishers []string
	var wg sync.WaitGroup
	for i, b := range bs {
		for p := range 3 {
			name := fmt.Sprintf("i%dp%d", i, p)
			publishers = append(publishers, name)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for seq := range perPub {
					if !publishRetry(t, b, session, name+":"+strconv.Itoa(seq)) {
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	want := perPub * len(publishers)
	for i, r := range recs {
		testenv.WaitFor(t, fmt.Sprintf("instance %d to receive %d messages", i, want), 10*time.Second, func() bool {
			return len(withoutProbes(r.messages(session))) >= want
		})
		checkOrder(t, fmt.Sprintf("instance %d", i), r.messages(session), publishers, perPub)
	}
}

// Many sessions spread over channel groups: each instance receives exactly
// the sessions it subscribed to.
func testManySessions(t *testing.T, be backend) {
	const sessions = 400
	ra, rb := newRecorder(), newRecorder()
	a := newBroker(t, be, "a", ra.handle, nil)
	b := newBroker(t, be, "b", rb.handle, nil)
	for i := range sessions {
		s := "s" + strconv.Itoa(i)
		if i%2 == 0 {
			_ = b.Subscribe(s)
		}
	}
	// Readiness: every even session must be live on b.
	for i := 0; i < sessions; i += 2 {
		s := "s" + strconv.Itoa(i)
		testenv.WaitFor(t, "subscription "+s, 10*time.Second, func() bool {
			_ = a.Publish(s, []byte("probe:x"))
			time.Sleep(time.Millisecond)
			return rb.has(s, "probe:x")
		})
	}
	for i := range sessions {
		s := "s" + strconv.Itoa(i)
		if err := a.Publish(s, []byte("a:0")); err != nil {
			t.Fatal(err)
		}
	}
	for i := range sessions {
		s := "s" + strconv.Itoa(i)
		if i%2 == 0 {
			testenv.WaitFor(t, "message on "+s, 5*time.Second, func() bool { return rb.has(s, "a:0") })
		}
	}
	// Not-subscribed sessions never arrive, and a has no local subscribers.
	time.Sleep(50 * time.Millisecond)
	for i := 1; i < sessions; i += 2 {
		if ms := rb.messages("s" + strconv.Itoa(i)); len(ms) != 0 {
			t.Fatalf("b received %v for a session it never subscribed to", ms)
		}
	}
	if len(ra.got) != 0 {
		t.Fatalf("a delivered locally without subscribers: %v", ra.got)
	}
}

func testUnsubscribe(t *testing.T, be backend) {
	ra, rb := newRecorder(), newRecorder()
	a := newBroker(t, be, "a", ra.handle, nil)
	b := newBroker(t, be, "b", rb.handle, nil)
	_ = a.Subscribe("u")
	_ = b.Subscribe("u")
	waitReady(t, a, "u", ra, rb)
	_ = b.Unsubscribe("u")
	if err := a.Publish("u", []byte("a:after")); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "local delivery on a", time.Second, func() bool { return ra.has("u", "a:after") })
	time.Sleep(100 * time.Millisecond)
	if rb.has("u", "a:after") {
		t.Fatal("b received a message after Unsubscribe")
	}
	// Subscribing again works on the same connection.
	_ = b.Subscribe("u")
	waitReady(t, a, "u", rb)
}

// Redis stopped: local delivery goes on, the queue stays at its cap, and
// cross-instance delivery comes back by itself within 2 s of Redis returning.
func testRedisDown(t *testing.T, be backend) {
	const backlog = 64
	reg := prometheus.NewRegistry()
	ra, rb := newRecorder(), newRecorder()
	a := newBroker(t, be, "a", ra.handle, func(o *RedisOptions) {
		o.Backlog = backlog
		o.Registerer = reg
		o.Timeout = 300 * time.Millisecond
	})
	b := newBroker(t, be, "b", rb.handle, nil)
	_ = a.Subscribe("d")
	_ = b.Subscribe("d")
	waitReady(t, a, "d", ra, rb)

	be.stop()
	// Let the publisher notice the outage.
	for i := 0; !a.down.Load(); i++ {
		if err := a.Publish("d", []byte("warm:"+strconv.Itoa(i))); err != nil && !errors.Is(err, ErrBacklogFull) {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
		if i > 2000 {
			t.Fatal("publisher never noticed that Redis is down")
		}
	}
	const n = 5000
	for i := range n {
		if err := a.Publish("d", []byte("down:"+strconv.Itoa(i))); err != nil {
			t.Fatalf("publish %d while Redis is down: %v (local delivery must go on)", i, err)
		}
		if d := len(a.queue); d > backlog {
			t.Fatalf("queue depth %d above cap %d", d, backlog)
		}
	}
	local := 0
	for _, m := range ra.messages("d") {
		if strings.HasPrefix(m, "down:") {
			local++
		}
	}
	if local != n {
		t.Fatalf("local delivery while Redis is down: %d of %d", local, n)
	}
	if got := counterValue(t, a.m.Dropped.WithLabelValues("publish", "redis_down")); got == 0 {
		t.Fatal("no drops counted while Redis is down")
	}

	be.start()
	back := time.Now()
	waitReady(t, a, "d", rb)
	waitReady(t, b, "d", ra)
	if el := time.Since(back); el > 2*time.Second {
		t.Fatalf("cross-instance delivery resumed %s after Redis returned, want ≤ 2s", el)
	}
	if got := counterValue(t, a.m.reconnects); got == 0 {
		t.Fatal("reconnect not counted")
	}
	t.Logf("cross-instance delivery back %s after Redis returned", time.Since(back))
}

// A full queue while Redis is up but slow refuses the message and delivers
// nothing, so the sender can be told. The queue is full at its message count
// or at its byte budget, whichever comes first.
func TestRedisBrokerBacklogFull(t *testing.T) {
	r := testenv.StartRedis(t)
	be := backend{addrs: []string{r.Addr}}
	for _, tc := range []struct {
		name    string
		opts    func(*RedisOptions)
		padding int // digits of the sequence number: the payload's size
	}{
		{"messages", func(o *RedisOptions) { o.Backlog = 8 }, 1},
		// 64 KiB of 4 KiB payloads: about 16 fit, far below the count cap.
		{"bytes", func(o *RedisOptions) { o.BacklogBytes = 64 << 10 }, 4096},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ra, rb := newRecorder(), newRecorder()
			a := newBroker(t, be, "a", ra.handle, func(o *RedisOptions) { tc.opts(o); o.Timeout = 5 * time.Second })
			b := newBroker(t, be, "b", rb.handle, nil)
			_ = a.Subscribe("f")
			_ = b.Subscribe("f")
			waitReady(t, a, "f", ra, rb)
			ra.mu.Lock()
			ra.got = map[string][]string{}
			ra.mu.Unlock()
			rb.mu.Lock()
			rb.got = map[string][]string{}
			rb.mu.Unlock()

			// PUBLISH counts as a write for CLIENT PAUSE: Redis holds it for 500 ms.
			if _, err := r.Command("CLIENT", "PAUSE", "500", "WRITE"); err != nil {
				t.Fatalf("CLIENT PAUSE: %v", err)
			}
			var accepted []string
			full := 0
			for i := range 200 {
				p := fmt.Sprintf("a:%0*d", tc.padding, len(accepted))
				err := a.Publish("f", []byte(p))
				switch {
				case err == nil:
					accepted = append(accepted, p)
				case errors.Is(err, ErrBacklogFull):
					full++
				default:
					t.Fatalf("publish %d: %v", i, err)
				}
			}
			if full == 0 {
				t.Fatal("no ErrBacklogFull with a paused Redis and a small backlog")
			}
			if tc.name == "bytes" && len(accepted) > 100 {
				t.Fatalf("%d payloads of %d bytes accepted with a 64 KiB backlog", len(accepted), tc.padding)
			}
			if got := len(ra.messages("f")); got != len(accepted) {
				t.Fatalf("local deliveries %d, want %d (refused messages must not be delivered)", got, len(accepted))
			}
			testenv.WaitFor(t, "remote delivery after the pause", 5*time.Second, func() bool { return len(rb.messages("f")) >= len(accepted) })
			checkOrder(t, "b", rb.messages("f"), []string{"a"}, len(accepted))
			// Everything sent: the byte budget is whole again.
			testenv.WaitFor(t, "byte budget released", 5*time.Second, func() bool { return a.queuedBytes.Load() == 0 })
		})
	}
}

func TestRedisBrokerClose(t *testing.T) {
	r := testenv.StartRedis(t)
	be := backend{addrs: []string{r.Addr}}
	rec := newRecorder()
	b := newBroker(t, be, "a", rec.handle, nil)
	_ = b.Subscribe("c")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := b.Publish("c", []byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Publish after Close = %v, want ErrClosed", err)
	}
	if err := b.Subscribe("c"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Subscribe after Close = %v, want ErrClosed", err)
	}
}

func TestRedisBrokerMetricsRegister(t *testing.T) {
	r := testenv.StartRedis(t)
	reg := prometheus.NewRegistry()
	c := openConn(t, backend{addrs: []string{r.Addr}}, "a")
	b, err := NewRedis(c, RedisOptions{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := NewRedis(c, RedisOptions{Registerer: reg}); err == nil {
		t.Fatal("second broker on one registry: want an error")
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() == "wsedge_redis_queue_depth" {
			found = len(mf.GetMetric()) == 1 && mf.GetMetric()[0].GetGauge().GetValue() == 0
		}
	}
	if !found {
		t.Fatal("wsedge_redis_queue_depth{component=broker} missing or not 0")
	}
}

func counterValue(t testing.TB, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetCounter().GetValue()
}

func TestEnvelope(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		origin  string
		payload string
		ok      bool
	}{
		{"empty", "", "", "", false},
		{"version only", "\x01", "", "", false},
		{"wrong version", "\x02\x01ax", "", "", false},
		{"zero origin", "\x01\x00x", "", "", false},
		{"short origin", "\x01\x05abc", "", "", false},
		{"empty payload", "\x01\x01a", "a", "", true},
		{"ok", "\x01\x03abc{\"x\":1}", "abc", "{\"x\":1}", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, p, ok := decodeEnvelope(tt.in)
			if ok != tt.ok || o != tt.origin || p != tt.payload {
				t.Fatalf("decodeEnvelope(%q) = %q, %q, %v; want %q, %q, %v", tt.in, o, p, ok, tt.origin, tt.payload, tt.ok)
			}
		})
	}
	env := encodeEnvelope("inst/1234", []byte(`{"type":"session_message"}`))
	if o, p, ok := decodeEnvelope(string(env)); !ok || o != "inst/1234" || p != `{"type":"session_message"}` {
		t.Fatalf("round trip: %q %q %v", o, p, ok)
	}
}

func FuzzDecodeEnvelope(f *testing.F) {
	f.Add("\x01\x03abc{}")
	f.Add("")
	f.Add("\x01\xffa")
	f.Fuzz(func(t *testing.T, s string) {
		o, p, ok := decodeEnvelope(s)
		if !ok {
			return
		}
		if len(o) == 0 || len(o) > 255 {
			t.Fatalf("origin length %d", len(o))
		}
		if got := string(encodeEnvelope(o, []byte(p))); got != s {
			t.Fatalf("re-encode %q != %q", got, s)
		}
	})
}

// Subscribing to a session and dropping it again must not leave a
// connection: an idle shard holds nothing.
func TestRedisBrokerIdleShardReleasesConnection(t *testing.T) {
	r := testenv.StartRedis(t)
	be := backend{addrs: []string{r.Addr}}
	b := newBroker(t, be, "a", newRecorder().handle, nil)
	_ = b.Subscribe("x")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := newClient(t, []string{r.Addr})
	count := func() int64 {
		res, err := c.Do(ctx, c.B().PubsubNumsub().Channel("ws:session:x").Build()).ToArray()
		if err != nil || len(res) != 2 {
			return -1
		}
		n, _ := res[1].AsInt64()
		return n
	}
	testenv.WaitFor(t, "subscription in Redis", 5*time.Second, func() bool { return count() == 1 })
	_ = b.Unsubscribe("x")
	testenv.WaitFor(t, "unsubscription in Redis", 5*time.Second, func() bool { return count() == 0 })
}

// A cluster moving the slot of a channel group unsubscribes its listeners
// (sunsubscribe); the group must subscribe again on the new owner, and
// publishers must follow the MOVED redirect.
func TestRedisBrokerSlotMigration(t *testing.T) {
	c := testenv.StartRedisCluster(t, 3)
	be := backend{addrs: c.Addrs, sharded: true}
	ra, rb := newRecorder(), newRecorder()
	one := func(o *RedisOptions) { o.Shards = 1 } // every channel in slot of "{0}"
	a := newBroker(t, be, "a", ra.handle, one)
	b := newBroker(t, be, "b", rb.handle, one)
	_ = b.Subscribe("mig")
	waitReady(t, a, "mig", rb)

	slotS, err := c.Nodes[0].Command("CLUSTER", "KEYSLOT", "ws:session:{0}:mig")
	if err != nil {
		t.Fatal(err)
	}
	slot, _ := strconv.Atoi(slotS)
	ids := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		if ids[i], err = n.Command("CLUSTER", "MYID"); err != nil {
			t.Fatal(err)
		}
	}
	src := -1
	nodes, err := c.Nodes[0].Command("CLUSTER", "NODES")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(nodes, "\n") {
		f := strings.Fields(line)
		for _, r := range f[min(len(f), 8):] {
			lo, hi, _ := strings.Cut(r, "-")
			l, _ := strconv.Atoi(lo)
			h, err := strconv.Atoi(hi)
			if err != nil {
				h = l
			}
			if slot >= l && slot <= h {
				for i, id := range ids {
					if id == f[0] {
						src = i
					}
				}
			}
		}
	}
	if src < 0 {
		t.Fatalf("owner of slot %d not found in\n%s", slot, nodes)
	}
	dst := (src + 1) % len(c.Nodes)
	s := strconv.Itoa(slot)
	for _, step := range []struct {
		node int
		args []string
	}{
		{dst, []string{"CLUSTER", "SETSLOT", s, "IMPORTING", ids[src]}},
		{src, []string{"CLUSTER", "SETSLOT", s, "MIGRATING", ids[dst]}},
		{dst, []string{"CLUSTER", "SETSLOT", s, "NODE", ids[dst]}},
		{src, []string{"CLUSTER", "SETSLOT", s, "NODE", ids[dst]}},
		{3 - src - dst, []string{"CLUSTER", "SETSLOT", s, "NODE", ids[dst]}},
	} {
		if _, err := c.Nodes[step.node].Command(step.args...); err != nil {
			t.Fatalf("%v on node %d: %v", step.args, step.node, err)
		}
	}
	moved := time.Now()
	waitReady(t, a, "mig", rb)
	t.Logf("delivery back %s after the slot moved", time.Since(moved))
	if got := counterValue(t, b.m.reconnects); got == 0 {
		t.Fatal("the subscriber did not notice that its slot moved")
	}
}
