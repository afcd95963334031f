package edge

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/redis/rueidis"

	"github.com/wsedge/wsedge/edge/broker"
	"github.com/wsedge/wsedge/internal/redisconn"
	"github.com/wsedge/wsedge/internal/testenv"
)

// histEnv is a deployment with session history: one server on the memory
// broker, or two servers sharing Redis (a resume then lands on the other
// instance than the one the client left).
type histEnv struct {
	name    string
	servers []*testServer
	flush   func(t *testing.T) // loses the history; nil when not possible
}

const testHistorySize = 256

func historyEnvs(t *testing.T) []func(t *testing.T) histEnv {
	return []func(t *testing.T) histEnv{
		func(t *testing.T) histEnv { return memoryHistEnv(t) },
		func(t *testing.T) histEnv {
			r := testenv.StartRedis(t)
			return redisHistEnv(t, "redis", []string{r.Addr}, false)
		},
		func(t *testing.T) histEnv {
			c := testenv.StartRedisCluster(t, 3)
			return redisHistEnv(t, "cluster", c.Addrs, true)
		},
	}
}

func memoryHistEnv(t *testing.T) histEnv {
	b := broker.NewMemoryHistory(broker.HistoryOptions{Size: testHistorySize, TTL: time.Minute})
	t.Cleanup(func() { _ = b.Close() })
	ts := startServerWith(t, nil, Deps{Broker: b, History: b.History()})
	return histEnv{name: "memory", servers: []*testServer{ts}}
}

func redisHistEnv(t *testing.T, name string, addrs []string, sharded bool) histEnv {
	env := histEnv{name: name}
	var clients []rueidis.Client
	for i := range 2 {
		mode := redisconn.Standalone
		if sharded {
			mode = redisconn.Cluster
		}
		conn, err := redisconn.Open(context.Background(), redisconn.Options{
			Client: rueidis.ClientOption{InitAddress: addrs, DisableCache: true}, Mode: mode, Instance: fmt.Sprintf("i%d", i),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(conn.Close)
		clients = append(clients, conn.Client())
		b, err := broker.NewRedis(conn, broker.RedisOptions{
			History: broker.HistoryOptions{Size: testHistorySize, TTL: time.Minute},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		env.servers = append(env.servers, startServerWith(t, nil, Deps{Broker: b, History: b.History()}))
	}
	env.flush = func(t *testing.T) {
		for _, n := range clients[0].Nodes() {
			if err := n.Do(context.Background(), n.B().Flushall().Build()).Error(); err != nil {
				t.Fatalf("FLUSHALL: %v", err)
			}
		}
	}
	return env
}

// other is the server a resuming client goes to.
func (e histEnv) other() *testServer { return e.servers[len(e.servers)-1] }

// connectHist dials a session socket and returns it with the epoch of its
// connected frame.
func connectHist(t *testing.T, ts *testServer, session string) (*wsClient, string) {
	t.Helper()
	c := ts.dial(t, "/ws/session/"+session+"/", nil)
	m := c.expectType("connected")
	epoch, _ := m["epoch"].(string)
	if epoch == "" {
		t.Fatalf("connected without epoch: %v", m)
	}
	return c, epoch
}

// member says hello (resuming when since >= 0) and waits until it is a
// member.
func member(t *testing.T, c *wsClient, since int64, epoch string) {
	t.Helper()
	if since >= 0 {
		c.send(fmt.Sprintf(`{"type":"hello","user_type":"u","client_type":"web","since":%d,"epoch":%q}`, since, epoch))
	} else {
		c.hello("u", "web")
	}
}

// sm reads the next session_message (skipping presence answers) and
// returns its seq and msg.
func sm(t *testing.T, c *wsClient) (uint64, string) {
	t.Helper()
	for {
		m := c.next()
		switch m["type"] {
		case "presence":
			continue
		case "session_message":
			seq, _ := m["seq"].(float64)
			msg, _ := m["msg"].(string)
			if seq < 1 {
				t.Fatalf("session_message without seq: %v", m)
			}
			return uint64(seq), msg
		}
		t.Fatalf("want session_message, got %v", m)
	}
}

// broadcastSeen broadcasts msg from sender and returns its seq, read from
// the sender's own copy.
func broadcastSeen(t *testing.T, sender *wsClient, msg string) uint64 {
	t.Helper()
	sender.send(fmt.Sprintf(`{"type":"broadcast","msg":%q}`, msg))
	seq, got := sm(t, sender)
	if got != msg {
		t.Fatalf("sender got %q, want its own %q", got, msg)
	}
	return seq
}

// expectSeqs reads n session_messages with seqs from, from+1, … and msgs
// prefix<seq>.
func expectSeqs(t *testing.T, c *wsClient, from uint64, n int, msgOf map[uint64]string) {
	t.Helper()
	for i := range n {
		seq, msg := sm(t, c)
		if seq != from+uint64(i) {
			t.Fatalf("message %d: seq %d, want %d", i, seq, from+uint64(i))
		}
		if want, ok := msgOf[seq]; ok && msg != want {
			t.Fatalf("seq %d: msg %q, want %q", seq, msg, want)
		}
	}
}

// joined waits until c's hello is processed (a presence answer follows it).
func joined(t *testing.T, c *wsClient) {
	t.Helper()
	c.send(`{"type":"presence"}`)
	for {
		m := c.next()
		if m["type"] == "presence" {
			return
		}
		if m["type"] != "session_message" && m["type"] != "recovery_failed" {
			t.Fatalf("waiting for presence: %v", m)
		}
	}
}

func TestSessionResume(t *testing.T) {
	for _, mk := range historyEnvs(t) {
		env := mk(t)
		t.Run(env.name, func(t *testing.T) {
			t.Run("Missed50", func(t *testing.T) { testResumeMissed(t, env) })
			t.Run("ConcurrentSenders", func(t *testing.T) { testResumeConcurrent(t, env) })
			t.Run("Failures", func(t *testing.T) { testResumeFailures(t, env) })
		})
	}
}

// A listener disconnected while 50 broadcasts are sent resumes with since
// (on the other instance) and receives exactly the missed ones in order,
// then the live ones.
func testResumeMissed(t *testing.T, env histEnv) {
	const session = "missed"
	sender, epoch := connectHist(t, env.servers[0], session)
	member(t, sender, -1, "")
	joined(t, sender)
	l, e2 := connectHist(t, env.servers[0], session)
	if e2 != epoch {
		t.Fatalf("two sockets of one session got epochs %q and %q", epoch, e2)
	}
	member(t, l, -1, "")
	joined(t, l)
	first := broadcastSeen(t, sender, "before")
	if seq, _ := sm(t, l); seq != first {
		t.Fatalf("listener got seq %d, sender %d", seq, first)
	}
	_ = l.conn.Close()
	msgOf := map[uint64]string{}
	for i := range 50 {
		msg := fmt.Sprintf("missed-%d", i)
		msgOf[broadcastSeen(t, sender, msg)] = msg
	}
	l2, e3 := connectHist(t, env.other(), session)
	if e3 != epoch {
		t.Fatalf("epoch on the other instance %q, want %q", e3, epoch)
	}
	member(t, l2, int64(first), epoch)
	expectSeqs(t, l2, first+1, 50, msgOf)
	for i := range 5 {
		msg := fmt.Sprintf("live-%d", i)
		msgOf[broadcastSeen(t, sender, msg)] = msg
	}
	expectSeqs(t, l2, first+51, 5, msgOf)
	l2.quiet(300 * time.Millisecond)
}

// Three senders keep broadcasting while a listener resumes: it receives
// every seq once, in order, and each sender's messages in its order.
func testResumeConcurrent(t *testing.T, env histEnv) {
	const session = "concurrent"
	const perSender = 150
	l, epoch := connectHist(t, env.servers[0], session)
	member(t, l, -1, "")
	joined(t, l)
	var senders []*wsClient
	for i := range 3 {
		s, _ := connectHist(t, env.servers[i%len(env.servers)], session)
		member(t, s, -1, "")
		joined(t, s)
		senders = append(senders, s)
	}
	start := broadcastSeen(t, senders[0], "start")
	if seq, _ := sm(t, l); seq != start {
		t.Fatalf("listener seq %d, want %d", seq, start)
	}
	for _, s := range senders[1:] {
		if seq, _ := sm(t, s); seq != start {
			t.Fatalf("sender seq %d, want %d", seq, start)
		}
	}
	_ = l.conn.Close()
	var wg sync.WaitGroup
	for i, s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range perSender {
				if err := ws.WriteFrame(s.conn, ws.MaskFrame(ws.NewTextFrame(fmt.Appendf(nil, `{"type":"broadcast","msg":"s%d-%d"}`, i, n)))); err != nil {
					t.Errorf("sender %d: %v", i, err)
					return
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
		// Drain what the sender receives, so that it never stalls.
		go func() { _, _ = ioDiscard(s) }()
	}
	time.Sleep(20 * time.Millisecond) // resume in the middle of the stream
	l2, _ := connectHist(t, env.other(), session)
	member(t, l2, int64(start), epoch)
	wg.Wait()
	next := map[string]int{}
	for i := range 3 * perSender {
		seq, msg := sm(t, l2)
		if seq != start+1+uint64(i) {
			t.Fatalf("message %d: seq %d, want %d", i, seq, start+1+uint64(i))
		}
		who, n, _ := strings.Cut(msg, "-")
		if want := fmt.Sprint(next[who]); n != want {
			t.Fatalf("sender %s: got message %s, want %s", who, n, want)
		}
		next[who]++
	}
	l2.quiet(300 * time.Millisecond)
	// The resume really was in the middle: part replayed, part live.
	if n := counterValue(t, env.other().reg, "wsedge_session_replayed_messages_total"); n == 0 || n >= 3*perSender {
		t.Fatalf("%v of %d messages replayed; want some, not all", n, 3*perSender)
	}
}

func ioDiscard(c *wsClient) (int64, error) {
	_ = c.conn.SetReadDeadline(time.Time{})
	buf := make([]byte, 32<<10)
	var n int64
	for {
		k, err := c.br.Read(buf)
		n += int64(k)
		if err != nil {
			return n, err
		}
	}
}

// recoveryFailed reads the next frame, which must be recovery_failed.
func recoveryFailed(t *testing.T, c *wsClient, reason string) (string, uint64) {
	t.Helper()
	m := c.expectType("recovery_failed")
	if m["reason"] != reason {
		t.Fatalf("recovery_failed reason %v, want %s", m["reason"], reason)
	}
	e, _ := m["epoch"].(string)
	seq, _ := m["seq"].(float64)
	return e, uint64(seq)
}

// A gap older than the history, a wrong or changed epoch, and a since ahead
// of the session give recovery_failed first, then the live stream.
func testResumeFailures(t *testing.T, env histEnv) {
	const session = "failures"
	sender, epoch := connectHist(t, env.servers[0], session)
	member(t, sender, -1, "")
	joined(t, sender)
	first := broadcastSeen(t, sender, "first")
	var last uint64
	for i := range testHistorySize + 10 {
		last = broadcastSeen(t, sender, fmt.Sprint("fill-", i))
	}
	tests := []struct {
		name   string
		since  uint64
		epoch  string
		reason string
	}{
		{"too old", first, epoch, "too_old"},
		{"wrong epoch", last, "not-the-epoch", "epoch_changed"},
		{"since ahead", last + 1000, epoch, "invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := connectHist(t, env.other(), session)
			member(t, c, int64(tt.since), tt.epoch)
			e, seq := recoveryFailed(t, c, tt.reason)
			if e != epoch || seq != last {
				t.Fatalf("recovery_failed epoch %q seq %d, want %q %d", e, seq, epoch, last)
			}
			joined(t, c)
			// Live delivery goes on after it.
			s := broadcastSeen(t, sender, "after-"+tt.name)
			if got, _ := sm(t, c); got != s {
				t.Fatalf("live seq %d, want %d", got, s)
			}
			last = s
		})
	}
	t.Run("malformed", func(t *testing.T) {
		for _, hello := range []string{
			`{"type":"hello","user_type":"u","since":-1,"epoch":"e"}`,
			`{"type":"hello","user_type":"u","since":1.5,"epoch":"e"}`,
			`{"type":"hello","user_type":"u","since":"3","epoch":"e"}`,
			`{"type":"hello","user_type":"u","since":3}`,
			`{"type":"hello","user_type":"u","since":3,"epoch":7}`,
			`{"type":"hello","user_type":"u","since":9007199254740992,"epoch":"e"}`,
		} {
			c, _ := connectHist(t, env.other(), session)
			c.send(hello)
			c.expectError("hello_required")
			c.expectClose(4001)
		}
	})
	if env.flush == nil {
		return
	}
	t.Run("history lost", func(t *testing.T) {
		env.flush(t)
		c := env.other().dial(t, "/ws/session/"+session+"/", nil)
		m := c.expectType("connected")
		if m["epoch"] == epoch {
			t.Fatal("the epoch survived FLUSHALL")
		}
		member(t, c, int64(last), epoch)
		e, seq := recoveryFailed(t, c, "epoch_changed")
		if e != m["epoch"] || seq != 0 {
			t.Fatalf("recovery_failed epoch %q seq %d, want %v 0", e, seq, m["epoch"])
		}
	})
}

// Without history every frame is byte for byte what it was: no epoch, no
// seq, and since/epoch in a hello are ignored.
func TestHistoryOffFramesUnchanged(t *testing.T) {
	ts := startServer(t, nil)
	c := ts.dial(t, "/ws/session/plain/", nil)
	_, p, err := c.frame(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	id := strings.TrimSuffix(strings.TrimPrefix(string(p), `{"type":"connected","session_id":"plain","connection_id":"`), `","user_type_required":true}`)
	if len(id) != 32 || strings.ContainsAny(id, `"{},`) {
		t.Fatalf("connected frame changed: %s", p)
	}
	c.send(`{"type":"hello","user_type":"a","client_type":"web","since":5,"epoch":"x"}`)
	c.send(`{"type":"broadcast","msg":"hi"}`)
	_, p, err = c.frame(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"type":"session_message","user_type":"a","client_type":"web","msg":"hi","data":null}`; string(p) != want {
		t.Fatalf("session_message = %s, want %s", p, want)
	}
	c.quiet(200 * time.Millisecond)
}

// With history on, seq is the last member of session_message.
func TestHistoryFrameBytes(t *testing.T) {
	env := memoryHistEnv(t)
	c, epoch := connectHist(t, env.servers[0], "bytes")
	if len(epoch) != 16 {
		t.Fatalf("epoch %q", epoch)
	}
	c.hello("a", "web")
	c.send(`{"type":"broadcast","msg":"hi"}`)
	_, p, err := c.frame(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"type":"session_message","user_type":"a","client_type":"web","msg":"hi","data":null,"seq":1}`; string(p) != want {
		t.Fatalf("session_message = %s, want %s", p, want)
	}
}

// gatedHistory holds the connect-time read of one session until released,
// so that a test can act while a socket waits for its connected frame.
type gatedHistory struct {
	broker.History
	session string
	gate    chan struct{}
}

func (g gatedHistory) Since(ctx context.Context, session string, since uint64) (broker.Replay, error) {
	if session == g.session && since == sinceNow {
		select {
		case <-g.gate:
		case <-ctx.Done():
			return broker.Replay{}, ctx.Err()
		}
	}
	return g.History.Since(ctx, session, since)
}

// Before its connected frame a socket's input waits, in order, and is capped:
// a client that pipelines hello and a broadcast gets connected first and
// then its message; one that floods is closed 1009; a well-behaved client on
// the same event loop is served meanwhile.
func TestHistoryInputBeforeConnected(t *testing.T) {
	b := broker.NewMemoryHistory(broker.HistoryOptions{Size: 16})
	t.Cleanup(func() { _ = b.Close() })
	g := gatedHistory{History: b.History(), session: "slow", gate: make(chan struct{})}
	ts := startServerWith(t, func(c *Config) {
		c.EventLoops = 1
		c.MaxMessageSize = 4096
		c.HistoryTimeout = 10 * time.Second
	}, Deps{Broker: b, History: g})

	pipelined := ts.dial(t, "/ws/session/slow/", nil)
	pipelined.hello("u", "web")
	pipelined.send(`{"type":"broadcast","msg":"early"}`)

	flooder := ts.dial(t, "/ws/session/slow/", nil)
	big := ws.MaskFrame(ws.NewTextFrame(make([]byte, 3000)))
	for range 4 {
		if err := ws.WriteFrame(flooder.conn, big); err != nil {
			break // the server may close first
		}
	}
	flooder.expectClose(1009)

	good, _ := connectHist(t, ts, "fine")
	good.hello("v", "web")
	good.send(`{"type":"broadcast","msg":"served"}`)
	if seq, msg := sm(t, good); seq != 1 || msg != "served" {
		t.Fatalf("well-behaved client got %d %q", seq, msg)
	}
	pipelined.quiet(100 * time.Millisecond) // still waiting: nothing, not even connected

	close(g.gate)
	if m := pipelined.expectType("connected"); m["epoch"] == nil {
		t.Fatalf("connected without epoch: %v", m)
	}
	if seq, msg := sm(t, pipelined); seq != 1 || msg != "early" {
		t.Fatalf("pipelined client got %d %q after connected", seq, msg)
	}
}

// delayed hands messages to h after a fixed delay, in order, like a pub/sub
// hop that is slower than the history read.
// delayedBroker hands its handler every message d late.
type delayedBroker struct {
	broker.Broker
	t *testing.T
	d time.Duration
}

func (b delayedBroker) Start(h broker.Handler) error { return b.Broker.Start(delayed(b.t, h, b.d)) }

func delayed(t *testing.T, h broker.Handler, d time.Duration) broker.Handler {
	type item struct {
		at      time.Time
		session string
		seq     uint64
		p       []byte
	}
	ch := make(chan item, 1024)
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() {
		for {
			select {
			case <-done:
				return
			case it := <-ch:
				time.Sleep(time.Until(it.at))
				h(it.session, it.seq, it.p)
			}
		}
	}()
	return func(session string, seq uint64, p []byte) bool {
		ch <- item{time.Now().Add(d), session, seq, p}
		return true
	}
}

// The replay's answer can overtake the live delivery of the messages it
// contains: those arrive afterwards and must not be sent twice.
func TestResumeReadOvertakesLive(t *testing.T) {
	b := broker.NewMemoryHistory(broker.HistoryOptions{Size: 64})
	t.Cleanup(func() { _ = b.Close() })
	ts := startServerWith(t, nil, Deps{Broker: delayedBroker{Broker: b, t: t, d: 100 * time.Millisecond}, History: b.History()})
	sender, epoch := connectHist(t, ts, "overtake")
	member(t, sender, -1, "")
	joined(t, sender)
	go func() { _, _ = ioDiscard(sender) }()
	for i := range 20 {
		sender.send(fmt.Sprintf(`{"type":"broadcast","msg":"m%d"}`, i))
	}
	time.Sleep(20 * time.Millisecond) // published and kept; their delivery is 100 ms away
	l, _ := connectHist(t, ts, "overtake")
	member(t, l, 0, epoch)
	msgOf := map[uint64]string{}
	for i := range 20 {
		msgOf[uint64(i+1)] = fmt.Sprintf("m%d", i)
	}
	expectSeqs(t, l, 1, 20, msgOf)
	l.quiet(400 * time.Millisecond)
	if n := counterValue(t, ts.reg, "wsedge_session_replayed_messages_total"); n != 20 {
		t.Fatalf("%v messages replayed, want 20 (all from history)", n)
	}
}

// parseResume reads untrusted hello fields: whatever it accepts is a whole
// number within JSON's exact range and a non-empty epoch of at most 64 bytes.
func FuzzParseResume(f *testing.F) {
	f.Add([]byte(`5`), []byte(`"abc"`))
	f.Add([]byte(`0`), []byte(`""`))
	f.Add([]byte(`1e3`), []byte(`"e"`))
	f.Add([]byte(`-0`), []byte(`"e"`))
	f.Add([]byte(`null`), []byte(`null`))
	f.Fuzz(func(t *testing.T, since, epoch []byte) {
		n, e, has, ok := parseResume(since, epoch)
		if !ok || !has {
			if has {
				t.Fatal("has without ok")
			}
			return
		}
		if n > maxSince || e == "" || len(e) > 64 {
			t.Fatalf("accepted since %d epoch %q from %q %q", n, e, since, epoch)
		}
	})
}
