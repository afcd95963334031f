package presence

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/wsedge/wsedge/internal/redisconn"
	"github.com/wsedge/wsedge/internal/testenv"
)

type backend struct {
	name  string
	addrs []string
	stop  func()
	start func()
	// command runs a command on the node that owns key.
	command func(key string, args ...string) (string, error)
}

func standalone(t *testing.T) backend {
	r := testenv.StartRedis(t)
	return backend{name: "standalone", addrs: []string{r.Addr}, stop: r.Stop, start: r.Start,
		command: func(_ string, args ...string) (string, error) { return r.Command(args...) }}
}

func cluster(t *testing.T) backend {
	c := testenv.StartRedisCluster(t, 3)
	cl := newClient(t, c.Addrs)
	return backend{name: "cluster", addrs: c.Addrs, stop: c.Stop, start: c.Start,
		command: func(key string, args ...string) (string, error) {
			// Route through a cluster client so the right node answers.
			cmd := cl.B().Arbitrary(args[0]).Keys(key).Args(args[2:]...).Build()
			v, err := cl.Do(context.Background(), cmd).ToAny()
			return fmt.Sprint(v), err
		}}
}

// newClient returns a plain rueidis client.
func newClient(t testing.TB, addrs []string) rueidis.Client {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: addrs})
	if err != nil {
		t.Fatalf("rueidis client for %v: %v", addrs, err)
	}
	t.Cleanup(c.Close)
	return c
}

// openConn opens the connection a store named name runs on; its lost
// connections trigger the store's recheck, as in cmd/wsedge.
func openConn(t testing.TB, be backend, name string) *redisconn.Conn {
	t.Helper()
	c, err := redisconn.Open(context.Background(), redisconn.Options{
		Client: rueidis.ClientOption{InitAddress: be.addrs}, Instance: name, Timeout: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("redis connection for %v: %v", be.addrs, err)
	}
	t.Cleanup(c.Close)
	return c
}

func newStore(t testing.TB, be backend, name string, mod func(*RedisOptions)) *Redis {
	t.Helper()
	var o RedisOptions
	if mod != nil {
		mod(&o)
	}
	s, err := NewRedis(openConn(t, be, name), o)
	if err != nil {
		t.Fatalf("NewRedis: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func member(session, conn, ut string) Member {
	return Member{SessionID: session, ConnectionID: conn, UserType: ut, ClientType: "web", ConnectedAt: time.Now().Unix()}
}

// ids returns the connection ids of s's answer, or an error string.
func ids(s *Redis, session string) string {
	ms, err := s.Members(context.Background(), session)
	if err != nil {
		return "error: " + err.Error()
	}
	var out []string
	for _, m := range ms {
		out = append(out, m.ConnectionID)
	}
	return strings.Join(out, ",")
}

func waitIDs(t testing.TB, s *Redis, session, want string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		got := ids(s, session)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("members of %s = %q after %s, want %q", session, got, d, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRedisStore(t *testing.T) {
	for _, be := range []backend{standalone(t), cluster(t)} {
		t.Run(be.name, func(t *testing.T) {
			t.Run("AcrossInstances", func(t *testing.T) { testAcrossInstances(t, be) })
			t.Run("CacheInvalidation", func(t *testing.T) { testCacheInvalidation(t, be) })
			t.Run("LargeSessionMemo", func(t *testing.T) { testLargeSessionMemo(t, be) })
			t.Run("Crash", func(t *testing.T) { testCrash(t, be) })
			t.Run("Close", func(t *testing.T) { testClose(t, be) })
			t.Run("RedisDown", func(t *testing.T) { testRedisDown(t, be) })
		})
	}
}

func testAcrossInstances(t *testing.T, be backend) {
	stores := []*Redis{newStore(t, be, "a", nil), newStore(t, be, "b", nil), newStore(t, be, "c", nil)}
	var want []string
	for i, s := range stores {
		for j := range 3 {
			id := fmt.Sprintf("c%d%d", i, j)
			m := member("s1", id, "admin")
			m.ConnectedAt = int64(1000 + 3*i + j) // answers are sorted by connection time
			if err := s.Join(m); err != nil {
				t.Fatal(err)
			}
			want = append(want, id)
		}
	}
	for _, s := range stores {
		waitIDs(t, s, "s1", strings.Join(want, ","), 5*time.Second)
	}
	ms, err := stores[0].Members(context.Background(), "s1")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	for _, m := range ms {
		if m.UserType != "admin" || m.ClientType != "web" || m.SessionID != "s1" {
			t.Fatalf("member %+v", m)
		}
		if m.LastSeen < now-int64(DefaultRedisTTL/time.Second) || m.LastSeen > now+1 {
			t.Fatalf("last_seen %d not within the TTL of now %d", m.LastSeen, now)
		}
	}
	// The original Django server's keys are there for tools that read them.
	if v, err := be.command("ws:presence:conn:c00", "HGET", "ws:presence:conn:c00", "user_type"); err != nil || v != "admin" {
		t.Fatalf("HGET ws:presence:conn:c00 user_type = %q, %v", v, err)
	}
	if v, err := be.command("ws:presence:session:s1", "SCARD", "ws:presence:session:s1"); err != nil || v != "9" {
		t.Fatalf("SCARD ws:presence:session:s1 = %q, %v", v, err)
	}
	_ = stores[1].Leave(Ref{SessionID: "s1", ConnectionID: "c10"})
	want = append(want[:3:3], want[4:]...)
	for _, s := range stores {
		waitIDs(t, s, "s1", strings.Join(want, ","), 5*time.Second)
	}
	if v, err := be.command("ws:presence:conn:c10", "EXISTS", "ws:presence:conn:c10"); err != nil || v != "0" {
		t.Fatalf("conn hash after Leave: EXISTS = %q, %v", v, err)
	}
	if got := ids(stores[0], "nobody"); got != "" {
		t.Fatalf("empty session: %q", got)
	}
}

// A warm client-side cache must not hide changes made by another instance.
func testCacheInvalidation(t *testing.T, be backend) {
	a := newStore(t, be, "a", func(o *RedisOptions) { o.CacheTTL = time.Hour })
	b := newStore(t, be, "b", nil)
	_ = a.Join(member("ci", "x1", "u"))
	waitIDs(t, a, "ci", "x1", 5*time.Second)
	for range 3 {
		_ = ids(a, "ci") // served from the cache now
	}
	m := member("ci", "x2", "u")
	m.ConnectedAt++
	_ = b.Join(m)
	waitIDs(t, a, "ci", "x1,x2", 2*time.Second)
	_ = b.Leave(Ref{SessionID: "ci", ConnectionID: "x2"})
	waitIDs(t, a, "ci", "x1", 2*time.Second)
}

// Large sessions are memoized after decoding; changes must still show.
func testLargeSessionMemo(t *testing.T, be backend) {
	a := newStore(t, be, "a", func(o *RedisOptions) { o.CacheTTL = time.Hour })
	b := newStore(t, be, "b", nil)
	n := memoMinMembers + 10
	for i := range n {
		_ = a.Join(member("big", fmt.Sprintf("m%04d", i), "u"))
	}
	count := func() int {
		ms, err := a.Members(context.Background(), "big")
		if err != nil {
			return -1
		}
		return len(ms)
	}
	testenv.WaitFor(t, "all members", 5*time.Second, func() bool { return count() == n })
	for range 3 {
		if got := count(); got != n { // memo hits
			t.Fatalf("count %d, want %d", got, n)
		}
	}
	a.memoMu.Lock()
	memoized := a.memo["big"] != nil
	a.memoMu.Unlock()
	if !memoized {
		t.Fatal("large session not memoized")
	}
	_ = b.Join(member("big", "zz-new", "u"))
	testenv.WaitFor(t, "a join on another instance", 2*time.Second, func() bool { return count() == n+1 })
	_ = b.Leave(Ref{SessionID: "big", ConnectionID: "zz-new"})
	_ = a.Leave(Ref{SessionID: "big", ConnectionID: "m0000"})
	testenv.WaitFor(t, "leaves", 2*time.Second, func() bool { return count() == n-1 })
	if got := ids(a, "big"); strings.Contains(got, "m0000") || strings.Contains(got, "zz-new") {
		t.Fatal("left members still listed")
	}
}

// An instance that dies without Leave disappears from answers within its TTL,
// and the janitor deletes its keys.
func testCrash(t *testing.T, be backend) {
	const ttl = 3 * time.Second
	a := newStore(t, be, "a", func(o *RedisOptions) { o.TTL = ttl })
	dead := newStore(t, be, "dead", func(o *RedisOptions) { o.TTL = ttl })
	_ = a.Join(member("cr", "alive", "u"))
	m := member("cr", "doomed", "u")
	m.ConnectedAt++
	_ = dead.Join(m)
	waitIDs(t, a, "cr", "alive,doomed", 5*time.Second)

	// Crash: the writer stops, nothing is removed.
	dead.cancel()
	<-dead.done
	crashed := time.Now()
	waitIDs(t, a, "cr", "alive", ttl+time.Second)
	t.Logf("crashed instance gone from answers after %s (TTL %s)", time.Since(crashed), ttl)
	deadline := time.Now().Add(4 * ttl)
	for {
		v, err := be.command("ws:presence:conn:doomed", "EXISTS", "ws:presence:conn:doomed")
		if err == nil && v == "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("janitor did not delete the dead instance's hash: EXISTS = %q, %v", v, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// In a Cluster the hash and the session set live in different slots, so
	// the janitor removes them with separate commands: wait for the second.
	for {
		v, err := be.command("ws:presence:session:cr", "SISMEMBER", "ws:presence:session:cr", "doomed")
		if err == nil && v == "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("janitor left the dead member in the session set: %q, %v", v, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	dead.closed.Store(true) // its Close would try to retire; it is dead
}

func testClose(t *testing.T, be backend) {
	a := newStore(t, be, "a", nil)
	b := newStore(t, be, "b", nil)
	_ = a.Join(member("cl", "a1", "u"))
	m := member("cl", "b1", "u")
	m.ConnectedAt++
	_ = b.Join(m)
	waitIDs(t, a, "cl", "a1,b1", 5*time.Second)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	waitIDs(t, a, "cl", "a1", time.Second)
	if err := b.Join(member("cl", "b2", "u")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Join after Close = %v, want ErrClosed", err)
	}
}

// Redis stopped: Members fails fast with ErrUnavailable, Join/Leave stay
// bounded; Redis restarted empty: presence is re-populated within 2 s.
func testRedisDown(t *testing.T, be backend) {
	a := newStore(t, be, "a", func(o *RedisOptions) { o.MaxPending = 100 })
	b := newStore(t, be, "b", nil)
	_ = a.Join(member("rd", "a1", "u"))
	m := member("rd", "b1", "u")
	m.ConnectedAt++
	_ = b.Join(m)
	waitIDs(t, a, "rd", "a1,b1", 5*time.Second)

	be.stop()
	// Right after the stop, a read may still be served from the client-side
	// cache until the client notices the closed connection; then every read
	// must fail within its timeout.
	deadline := time.Now().Add(2 * time.Second)
	for {
		start := time.Now()
		_, err := a.Members(context.Background(), "rd")
		if el := time.Since(start); el > 2*time.Second {
			t.Fatalf("Members took %s with Redis down; it must fail within its timeout", el)
		}
		if err != nil {
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("Members with Redis down = %v, want ErrUnavailable", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Members still answers 2 s after Redis stopped")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Churn while down: pending changes stay capped.
	for i := range 10000 {
		id := "tmp" + strconv.Itoa(i)
		_ = a.Join(member("rd", id, "u"))
		_ = a.Leave(Ref{SessionID: "rd", ConnectionID: id})
		a.mu.Lock()
		n := len(a.pending)
		a.mu.Unlock()
		if n > 101 {
			t.Fatalf("pending grew to %d with MaxPending 100", n)
		}
	}
	be.start()
	back := time.Now()
	waitIDs(t, a, "rd", "a1,b1", 2*time.Second)
	waitIDs(t, b, "rd", "a1,b1", 2*time.Second)
	t.Logf("presence back %s after Redis returned", time.Since(back))
}

// A re-sync removes entries this instance no longer has (a Leave lost while
// its pending changes were voided).
func TestRedisStoreResyncRemovesStale(t *testing.T) {
	be := standalone(t)
	a := newStore(t, be, "a", nil)
	_ = a.Join(member("st", "k1", "u"))
	m := member("st", "k2", "u")
	m.ConnectedAt++
	_ = a.Join(m)
	waitIDs(t, a, "st", "k1,k2", 5*time.Second)
	a.mu.Lock()
	delete(a.local, "k1") // a Leave whose write was lost
	a.voidLocked()
	a.mu.Unlock()
	a.wake()
	waitIDs(t, a, "st", "k2", 5*time.Second)
	if v, _ := be.command("", "EXISTS", "ws:presence:conn:k1"); v != "0" {
		t.Fatalf("stale hash still there: EXISTS = %q", v)
	}
}

// Idle members cost no Redis work per member: over a few heartbeats, the
// commands Redis runs do not depend on the number of members.
func TestRedisStoreIdleCost(t *testing.T) {
	r := testenv.StartRedis(t)
	be := backend{addrs: []string{r.Addr}, command: func(_ string, a ...string) (string, error) { return r.Command(a...) }}
	const ttl = 3 * time.Second // heartbeat every second
	a := newStore(t, be, "a", func(o *RedisOptions) { o.TTL = ttl })
	const n = 2000
	for i := range n {
		_ = a.Join(member("idle"+strconv.Itoa(i%50), "m"+strconv.Itoa(i), "u"))
	}
	// Every session's members, not just the first's: under load the batched
	// writes of later sessions could otherwise land in the measured window.
	testenv.WaitFor(t, "members written", 15*time.Second, func() bool {
		for i := range 50 {
			v, _ := r.Command("SCARD", "ws:presence:session:idle"+strconv.Itoa(i))
			if v != strconv.Itoa(n/50) {
				return false
			}
		}
		return true
	})
	before := totalCalls(t, r)
	time.Sleep(3 * time.Second)
	calls := totalCalls(t, r) - before - 1 // minus our own INFO
	// 3 heartbeats, at most one janitor round (lock + scan), client pings.
	if calls > 15 {
		t.Fatalf("%d Redis commands in 3 s with %d idle members: per-member work", calls, n)
	}
	t.Logf("%d idle members: %d Redis commands in 3 s (TTL %s)", n, calls, ttl)
}

func totalCalls(t testing.TB, r *testenv.Redis) int {
	t.Helper()
	info, err := r.Command("INFO", "commandstats")
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, line := range strings.Split(info, "\n") {
		_, rest, ok := strings.Cut(line, "calls=")
		if !ok {
			continue
		}
		v, _, _ := strings.Cut(rest, ",")
		n, _ := strconv.Atoi(v)
		total += n
	}
	return total
}

func TestRedisStoreOptions(t *testing.T) {
	tests := []struct {
		name string
		o    RedisOptions
		ok   bool
	}{
		{"TTL below 3s", RedisOptions{TTL: time.Second}, false},
	}
	if _, err := NewRedis(nil, RedisOptions{}); err == nil {
		t.Fatal("NewRedis(nil): want an error")
	}
	r := testenv.StartRedis(t)
	conn := openConn(t, backend{addrs: []string{r.Addr}}, "a")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewRedis(conn, tt.o)
			if (err == nil) != tt.ok {
				t.Fatalf("NewRedis err = %v, want ok=%v", err, tt.ok)
			}
			if s != nil {
				_ = s.Close()
			}
		})
	}
}

func BenchmarkRedisMembers(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			r := testenv.StartRedis(b)
			be := backend{addrs: []string{r.Addr}}
			stores := []*Redis{newStore(b, be, "a", nil), newStore(b, be, "b", nil), newStore(b, be, "c", nil)}
			for i := range n {
				// Connection ids are random hex, as the edge makes them.
				_ = stores[i%3].Join(member("big", fmt.Sprintf("%016x%016x", rand.Uint64(), i), "u"))
			}
			testenv.WaitFor(b, "members", 10*time.Second, func() bool {
				ms, err := stores[0].Members(context.Background(), "big")
				return err == nil && len(ms) == n
			})
			b.ResetTimer()
			for b.Loop() {
				if _, err := stores[1].Members(context.Background(), "big"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestMemberEncoding(t *testing.T) {
	tests := []struct {
		name string
		m    Member
		inst string
	}{
		{"plain", Member{ConnectionID: "abc", UserType: "admin", ClientType: "web", ConnectedAt: 1700000000}, "i/1"},
		{"empty client type", Member{ConnectionID: "abc", UserType: "u", ConnectedAt: 1}, "i"},
		{"separators in text", Member{ConnectionID: "abc", UserType: "a\x00b", ClientType: "\x00", ConnectedAt: -5}, "i"},
		{"unicode", Member{ConnectionID: "c", UserType: "agent·é", ClientType: "📱", ConnectedAt: 42}, "pod-7/ab"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, inst, ok := decodeMember(encodeMember(tt.m, tt.inst))
			if !ok || m != tt.m || inst != tt.inst {
				t.Fatalf("round trip = %+v %q %v; want %+v %q", m, inst, ok, tt.m, tt.inst)
			}
		})
	}
	for _, bad := range []string{"", "a", "a\x00i", "a\x00i\x00x\x001\x00u", "a\x00i\x001\x009\x00u", "\x00i\x001\x000\x00", "a\x00\x001\x000\x00", "a\x00i\x001\x00-1\x00u"} {
		if _, _, ok := decodeMember(bad); ok {
			t.Errorf("decodeMember(%q) accepted", bad)
		}
	}
}

func FuzzDecodeMember(f *testing.F) {
	f.Add(encodeMember(Member{ConnectionID: "abc", UserType: "admin", ClientType: "web", ConnectedAt: 1}, "i/1"))
	f.Add("a\x00i\x001\x009\x00u")
	f.Fuzz(func(t *testing.T, v string) {
		m, inst, ok := decodeMember(v)
		if !ok {
			return
		}
		if m.ConnectionID == "" || inst == "" {
			t.Fatalf("accepted empty id: %+v %q", m, inst)
		}
		// What decodes re-encodes to an equivalent value.
		m2, inst2, ok := decodeMember(encodeMember(m, inst))
		if !ok || m2 != m || inst2 != inst {
			t.Fatalf("re-encode of %q: %+v %q %v", v, m2, inst2, ok)
		}
	})
}
