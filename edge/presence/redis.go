package presence

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"

	"github.com/wsedge/wsedge/internal/backoff"
	"github.com/wsedge/wsedge/internal/redisconn"
)

// Defaults of RedisOptions.
const (
	DefaultRedisTTL        = 15 * time.Second
	DefaultRedisMaxPending = 100000
	DefaultRedisCacheTTL   = time.Minute
	// redisChunk bounds the members named in one SADD or SREM of the
	// instance index, as one pipelined round trip is bounded.
	redisChunk = redisconn.MaxPipeline
	// redisMaxBackoff keeps retries frequent enough that presence is back
	// well within 2 s of Redis returning.
	redisMaxBackoff = 500 * time.Millisecond
)

// Key layout. The session set and the connection hash are the original Django
// server's, read by existing tools; the rest is this store's liveness
// bookkeeping.
const (
	keySession   = "ws:presence:session:"  // SET of connection ids
	keyConn      = "ws:presence:conn:"     // HASH user_type, client_type, connected_at, last_seen, session_id, instance
	keyMembers   = "ws:presence:members:"  // HASH connection id -> encodeMember(...): what Members reads
	keyInstance  = "ws:presence:instance:" // STRING: unix seconds of the last heartbeat, EX ttl; + ":conns" SET of "<conn> <session>"
	keyInstances = "ws:presence:instances" // SET of instance ids that may own entries
	keyJanitor   = "ws:presence:janitor"   // STRING lock: which instance cleans up dead ones this round
)

// ErrClosed is returned by Join and Leave after Close.
var ErrClosed = errors.New("presence: closed")

// RedisOptions configures the Redis store.
type RedisOptions struct {
	// TTL is how long an instance's entries outlive its last heartbeat
	// (heartbeats go every TTL/3). Default DefaultRedisTTL.
	TTL time.Duration
	// Timeout bounds every Redis call; 0: the connection's.
	Timeout time.Duration
	// MaxPending caps Join/Leave waiting to be written. Default
	// DefaultRedisMaxPending. See Join for what happens at the cap.
	MaxPending int
	// CacheTTL bounds how long a client-side cached read is served; Redis
	// invalidates changed keys before that. Default DefaultRedisCacheTTL.
	CacheTTL time.Duration
	// Registerer receives the wsedge_redis_* metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

// Redis is the presence store shared by every instance through Redis.
//
// Liveness is per instance, not per connection: each instance refreshes one
// heartbeat key (SET ... GET EX ttl every TTL/3), and readers only report
// members whose instance's heartbeat is alive. An idle connection therefore
// costs no Redis work at all, and a crashed instance's members vanish from
// answers within TTL; a janitor (one instance at a time, by lock) deletes
// their keys later.
//
// Join and Leave only edit in-memory state (the local members and a map of
// pending changes, one entry per connection) and wake the writer goroutine,
// which writes the pending changes in pipelined batches. When Redis fails or
// has lost data (the heartbeat finds its key gone), the writer re-syncs:
// it rewrites every local member and removes what its index says it no
// longer has. Nothing queues while Redis is away.
type Redis struct {
	conn     *redisconn.Conn
	client   rueidis.Client
	log      *slog.Logger
	id       string
	ttl      time.Duration
	timeout  time.Duration
	cacheTTL time.Duration
	maxPend  int
	m        *redisMetrics

	mu      sync.Mutex
	local   map[string]Member  // connection id -> member, this instance
	pending map[string]*Member // connection id -> member to write, or nil to delete
	leaving map[string]string  // connection id -> session of pending deletes
	resync  bool               // pending is void; rewrite everything
	kick    chan struct{}      // capacity 1
	check   atomic.Bool        // Recheck asked for a heartbeat now
	memoMu  sync.Mutex
	memo    map[string]*decoded // see memoGet
	closed  atomic.Bool
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{}
}

// NewRedis starts the writer goroutine on conn, which names the instance
// (conn.ID) and tells the store when Redis may have lost its entries. Like
// the broker, it succeeds while Redis is away and catches up when it returns.
// The store does not close conn.
func NewRedis(conn *redisconn.Conn, o RedisOptions) (*Redis, error) {
	if conn == nil {
		return nil, errors.New("presence: redis: nil connection")
	}
	if o.TTL <= 0 {
		o.TTL = DefaultRedisTTL
	}
	if o.TTL < 3*time.Second {
		return nil, fmt.Errorf("presence: redis: TTL %s below 3s", o.TTL)
	}
	if o.Timeout <= 0 {
		o.Timeout = conn.Timeout()
	}
	if o.MaxPending <= 0 {
		o.MaxPending = DefaultRedisMaxPending
	}
	if o.CacheTTL <= 0 {
		o.CacheTTL = DefaultRedisCacheTTL
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Redis{
		conn:     conn,
		client:   conn.Client(),
		log:      conn.Logger().With("component", "presence.redis"),
		id:       conn.ID(),
		ttl:      o.TTL,
		timeout:  o.Timeout,
		cacheTTL: o.CacheTTL,
		maxPend:  o.MaxPending,
		local:    make(map[string]Member),
		pending:  make(map[string]*Member),
		leaving:  make(map[string]string),
		memo:     make(map[string]*decoded),
		resync:   true, // registers the instance and its heartbeat
		kick:     make(chan struct{}, 1),
		ctx:      ctx,
		cancel:   cancel,
		done:     make(chan struct{}),
	}
	m, err := newRedisMetrics(o.Registerer, func() float64 {
		s.mu.Lock()
		defer s.mu.Unlock()
		return float64(len(s.pending))
	})
	if err != nil {
		cancel()
		return nil, err
	}
	s.m = m
	// A lost connection or a flushed server is checked at once instead of
	// a heartbeat later: a restarted Redis is re-populated within a round
	// trip of coming back.
	conn.OnLost(s.Recheck)
	s.wake()
	go s.run()
	return s, nil
}

// ID is this process's instance id in Redis keys.
func (s *Redis) ID() string { return s.id }

func (s *Redis) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Recheck asks the writer to verify its heartbeat key now instead of at the
// next interval; NewRedis registers it with the connection's OnLost. It
// never blocks.
func (s *Redis) Recheck() {
	s.check.Store(true)
	s.wake()
}

// Join implements Store. It never blocks. When MaxPending changes are
// already waiting (Redis slow or away), the pending changes are discarded and
// the store falls back to a full re-sync from its local members once Redis
// answers, counted in wsedge_redis_dropped_total{queue="presence"}; the
// member is never lost, only written late.
func (s *Redis) Join(m Member) error {
	if s.closed.Load() {
		return ErrClosed
	}
	s.mu.Lock()
	s.local[m.ConnectionID] = m
	if !s.resync {
		mm := m
		s.pending[m.ConnectionID] = &mm
		delete(s.leaving, m.ConnectionID)
		s.capLocked()
	}
	s.mu.Unlock()
	s.wake()
	return nil
}

// Leave implements Store. It never blocks; see Join for the cap.
func (s *Redis) Leave(r Ref) error {
	if s.closed.Load() {
		return ErrClosed
	}
	s.mu.Lock()
	delete(s.local, r.ConnectionID)
	if !s.resync {
		s.pending[r.ConnectionID] = nil
		s.leaving[r.ConnectionID] = r.SessionID
		s.capLocked()
	}
	s.mu.Unlock()
	s.wake()
	return nil
}

func (s *Redis) capLocked() {
	if len(s.pending) <= s.maxPend {
		return
	}
	s.m.Dropped.WithLabelValues("presence", "backlog_full").Add(float64(len(s.pending)))
	s.voidLocked()
}

// voidLocked discards pending changes in favour of a full re-sync.
func (s *Redis) voidLocked() {
	s.resync = true
	clear(s.pending)
	clear(s.leaving)
}

// Members implements Store. Reads go through rueidis' client-side cache
// (Redis invalidates changed keys), so a repeated read of an unchanged
// session costs no round trip. Every call is bounded by the store's timeout;
// when Redis cannot answer the error wraps ErrUnavailable.
func (s *Redis) Members(ctx context.Context, sessionID string) ([]Member, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	start := time.Now()
	out, err := s.members(ctx, sessionID)
	s.m.Latency.WithLabelValues("members").Observe(time.Since(start).Seconds())
	if err != nil {
		s.m.Errors.WithLabelValues("members").Inc()
		return nil, fmt.Errorf("presence members of %q: %w: %w", sessionID, ErrUnavailable, err)
	}
	return out, nil
}

func (s *Redis) members(ctx context.Context, sessionID string) ([]Member, error) {
	c := s.client
	// One cached HVALS of the session's aggregate hash, rather than the
	// original Django server's set plus one hash per member: with 5,000
	// members, 5,000 cache lookups and map decodes cost ~15 ms; one value
	// list costs a fraction.
	vals, err := c.DoCache(ctx, c.B().Hvals().Key(keyMembers+sessionID).Cache(), s.cacheTTL).AsStrSlice()
	if err != nil {
		return nil, err
	}
	if len(vals) == 0 {
		return []Member{}, nil
	}
	d := s.memoGet(sessionID, vals)
	if d == nil {
		d = decodeSession(sessionID, vals)
		s.memoPut(sessionID, d)
	}
	hb := make([]rueidis.CacheableTTL, len(d.insts))
	for i, inst := range d.insts {
		hb[i] = rueidis.CT(c.B().Get().Key(keyInstance+inst).Cache(), s.cacheTTL)
	}
	alive := make([]int64, len(d.insts)) // 0: dead
	for i, r := range c.DoMultiCache(ctx, hb...) {
		v, err := r.ToString()
		if rueidis.IsRedisNil(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		alive[i], _ = strconv.ParseInt(v, 10, 64)
	}
	out := make([]Member, 0, len(d.members))
	for i, m := range d.members {
		if ts := alive[d.inst[i]]; ts > 0 {
			m.LastSeen = ts
			out = append(out, m)
		}
	}
	return out, nil
}

// decoded is a session's aggregate hash, parsed and sorted.
type decoded struct {
	vals    []string // the answer it was parsed from; see memoGet
	members []Member // sorted by connection time, then id
	inst    []int32  // members[i]'s instance, an index into insts
	insts   []string
}

func decodeSession(sessionID string, vals []string) *decoded {
	type rec struct {
		m    Member
		inst int32
		pfx  uint64
	}
	d := &decoded{vals: vals}
	recs := make([]rec, 0, len(vals))
	seen := make(map[string]int32)
	for _, v := range vals {
		m, inst, ok := decodeMember(v)
		if !ok {
			continue // not ours to guess at
		}
		m.SessionID = sessionID
		idx, ok := seen[inst]
		if !ok {
			idx = int32(len(d.insts))
			seen[inst] = idx
			d.insts = append(d.insts, inst)
		}
		recs = append(recs, rec{m: m, inst: idx, pfx: idPrefix(m.ConnectionID)})
	}
	// Sort indices with the first 8 bytes of the id packed big-endian:
	// they order ids like strings do in all but ties, so comparisons rarely
	// touch the 80-byte members (moving those costs write barriers).
	type key struct {
		at  int64
		pfx uint64
		i   int32
	}
	keys := make([]key, len(recs))
	for i := range recs {
		keys[i] = key{at: recs[i].m.ConnectedAt, pfx: recs[i].pfx, i: int32(i)}
	}
	slices.SortFunc(keys, func(a, b key) int {
		if a.at != b.at {
			return cmp.Compare(a.at, b.at)
		}
		if a.pfx != b.pfx {
			return cmp.Compare(a.pfx, b.pfx)
		}
		return strings.Compare(recs[a.i].m.ConnectionID, recs[b.i].m.ConnectionID)
	})
	d.members = make([]Member, len(keys))
	d.inst = make([]int32, len(keys))
	for j, k := range keys {
		d.members[j], d.inst[j] = recs[k.i].m, recs[k.i].inst
	}
	return d
}

// Memo of decoded large sessions. rueidis serves a cached answer as strings
// that share the cache entry's memory, so an answer whose strings all sit at
// the addresses of the memo's is the very same, unchanged answer: the memo
// keeps those strings alive, so their addresses cannot be reused for other
// content. A changed hash is invalidated by Redis, fetched anew, and lands
// elsewhere.
const (
	memoMinMembers = 256 // smaller sessions decode in microseconds
	memoMaxEntries = 64  // bounds the memo's memory
)

func (s *Redis) memoGet(sessionID string, vals []string) *decoded {
	if len(vals) < memoMinMembers {
		return nil
	}
	s.memoMu.Lock()
	d := s.memo[sessionID]
	s.memoMu.Unlock()
	if d == nil || len(d.vals) != len(vals) {
		return nil
	}
	for i, v := range vals {
		if len(v) != len(d.vals[i]) || unsafe.StringData(v) != unsafe.StringData(d.vals[i]) {
			return nil
		}
	}
	return d
}

func (s *Redis) memoPut(sessionID string, d *decoded) {
	if len(d.vals) < memoMinMembers {
		return
	}
	s.memoMu.Lock()
	defer s.memoMu.Unlock()
	if _, ok := s.memo[sessionID]; !ok && len(s.memo) >= memoMaxEntries {
		for k := range s.memo { // evict one, any
			delete(s.memo, k)
			break
		}
	}
	s.memo[sessionID] = d
}

// Close writes what is pending, then removes this instance's entries (its
// members are gone with it) and its heartbeat, bounded by a few timeouts.
func (s *Redis) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.cancel()
	<-s.done
	ctx, cancel := context.WithTimeout(context.Background(), 3*s.timeout)
	defer cancel()
	s.mu.Lock()
	clear(s.local)
	s.mu.Unlock()
	if err := s.retire(ctx); err != nil {
		s.log.Warn("presence: could not remove this instance's entries; they expire with its heartbeat", "err", err)
		return fmt.Errorf("presence close: %w", err)
	}
	return nil
}

// run is the writer: the only goroutine that writes to Redis.
func (s *Redis) run() {
	defer close(s.done)
	beat := time.NewTicker(s.ttl / 3)
	defer beat.Stop()
	janitor := time.NewTimer(backoff.Spread(s.ttl/2, s.ttl+s.ttl/2))
	defer janitor.Stop()
	var retry <-chan time.Time
	delay := time.Duration(0)
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.kick:
		case <-beat.C:
			s.check.Store(true)
		case <-retry:
		case <-janitor.C:
			if err := s.janitor(); err != nil {
				s.log.Debug("presence janitor", "err", err)
			}
			janitor.Reset(backoff.Spread(s.ttl/2, s.ttl+s.ttl/2))
			continue
		}
		retry = nil
		err := s.step()
		if err == nil {
			if delay > 0 {
				s.log.Info("presence: Redis writes recovered")
			}
			delay = 0
			continue
		}
		if delay == 0 {
			s.log.Warn("presence: Redis writes failing; will re-sync when it answers", "err", err)
		}
		delay = backoff.Next(delay, redisMaxBackoff)
		retry = time.After(delay)
	}
}

// step does whatever is due: a heartbeat, a re-sync, pending writes.
func (s *Redis) step() error {
	if s.check.Swap(false) {
		if err := s.heartbeat(); err != nil {
			s.mu.Lock()
			s.voidLocked()
			s.mu.Unlock()
			s.check.Store(true)
			return err
		}
	}
	s.mu.Lock()
	resync := s.resync
	s.mu.Unlock()
	if resync {
		return s.doResync()
	}
	return s.flush()
}

// heartbeat refreshes this instance's key; a missing key means Redis lost
// our entries (restart, failover, flush) or a janitor took us for dead.
func (s *Redis) heartbeat() error {
	ctx, cancel := context.WithTimeout(s.ctx, s.timeout)
	defer cancel()
	c := s.client
	now := strconv.FormatInt(time.Now().Unix(), 10)
	start := time.Now()
	_, err := c.Do(ctx, c.B().Set().Key(keyInstance+s.id).Value(now).Get().Ex(s.ttl).Build()).ToString()
	s.m.Latency.WithLabelValues("heartbeat").Observe(time.Since(start).Seconds())
	if rueidis.IsRedisNil(err) {
		s.mu.Lock()
		if !s.resync {
			s.log.Info("presence: heartbeat key was gone; re-syncing", "instance", s.id)
		}
		s.voidLocked()
		s.mu.Unlock()
		return nil
	}
	if err != nil {
		s.m.Errors.WithLabelValues("heartbeat").Inc()
		return fmt.Errorf("presence heartbeat: %w", err)
	}
	return nil
}

// flush writes the pending changes.
func (s *Redis) flush() error {
	s.mu.Lock()
	if len(s.pending) == 0 {
		s.mu.Unlock()
		return nil
	}
	pend, leaving := s.pending, s.leaving
	s.pending, s.leaving = make(map[string]*Member), make(map[string]string)
	s.mu.Unlock()
	cmds := make(rueidis.Commands, 0, 3*len(pend)+2)
	var add, del []string
	for id, m := range pend {
		if m != nil {
			cmds = append(cmds, s.joinCmds(*m)...)
			add = append(add, indexEntry(id, m.SessionID))
		} else {
			sid := leaving[id]
			cmds = append(cmds, s.leaveCmds(id, sid)...)
			del = append(del, indexEntry(id, sid))
		}
	}
	if err := s.do("flush", s.indexed(add, cmds, del)); err != nil {
		s.mu.Lock()
		s.voidLocked()
		s.mu.Unlock()
		return err
	}
	return nil
}

func (s *Redis) joinCmds(m Member) rueidis.Commands {
	c := s.client
	at := strconv.FormatInt(m.ConnectedAt, 10)
	return rueidis.Commands{
		c.B().Sadd().Key(keySession + m.SessionID).Member(m.ConnectionID).Build(),
		c.B().Hset().Key(keyConn+m.ConnectionID).FieldValue().
			FieldValue("user_type", m.UserType).
			FieldValue("client_type", m.ClientType).
			FieldValue("connected_at", at).
			// Liveness is the instance heartbeat; last_seen here is the
			// time the entry was written.
			FieldValue("last_seen", strconv.FormatInt(time.Now().Unix(), 10)).
			FieldValue("session_id", m.SessionID).
			FieldValue("instance", s.id).Build(),
		c.B().Hset().Key(keyMembers+m.SessionID).FieldValue().FieldValue(m.ConnectionID, encodeMember(m, s.id)).Build(),
	}
}

// leaveCmds delete a member from the original Django server's keys and the
// aggregate.
func (s *Redis) leaveCmds(conn, session string) rueidis.Commands {
	c := s.client
	return rueidis.Commands{
		c.B().Srem().Key(keySession + session).Member(conn).Build(),
		c.B().Del().Key(keyConn + conn).Build(),
		c.B().Hdel().Key(keyMembers + session).Field(conn).Build(),
	}
}

// indexed wraps member writes with this instance's index updates: entries
// are added before and removed after the member keys, so that a pipeline cut
// short never leaves a member the index (and so the janitor) does not know.
func (s *Redis) indexed(add []string, cmds rueidis.Commands, del []string) rueidis.Commands {
	c := s.client
	out := make(rueidis.Commands, 0, len(cmds)+len(add)/redisChunk+len(del)/redisChunk+2)
	for len(add) > 0 {
		n := min(len(add), redisChunk)
		out = append(out, c.B().Sadd().Key(keyInstance+s.id+":conns").Member(add[:n]...).Build())
		add = add[n:]
	}
	out = append(out, cmds...)
	for len(del) > 0 {
		n := min(len(del), redisChunk)
		out = append(out, c.B().Srem().Key(keyInstance+s.id+":conns").Member(del[:n]...).Build())
		del = del[n:]
	}
	return out
}

// indexEntry names a member in an instance's index; connection ids never
// contain a space.
func indexEntry(conn, session string) string { return conn + " " + session }

// doResync rewrites every local member and removes entries of this instance
// that are no longer local.
func (s *Redis) doResync() error {
	s.mu.Lock()
	snap := make([]Member, 0, len(s.local))
	for _, m := range s.local {
		snap = append(snap, m)
	}
	s.resync = false
	clear(s.pending)
	clear(s.leaving)
	s.mu.Unlock()
	if err := s.resyncWith(snap); err != nil {
		s.mu.Lock()
		s.voidLocked()
		s.mu.Unlock()
		return err
	}
	s.m.resyncs.Inc()
	return nil
}

func (s *Redis) resyncWith(snap []Member) error {
	c := s.client
	now := strconv.FormatInt(time.Now().Unix(), 10)
	if err := s.do("resync", rueidis.Commands{
		c.B().Set().Key(keyInstance + s.id).Value(now).Ex(s.ttl).Build(),
		c.B().Sadd().Key(keyInstances).Member(s.id).Build(),
	}); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.timeout)
	have, err := c.Do(ctx, c.B().Smembers().Key(keyInstance+s.id+":conns").Build()).AsStrSlice()
	cancel()
	if err != nil {
		s.m.Errors.WithLabelValues("resync").Inc()
		return fmt.Errorf("presence resync: read index: %w", err)
	}
	want := make(map[string]struct{}, len(snap))
	var add []string
	cmds := make(rueidis.Commands, 0, 2*len(snap))
	for _, m := range snap {
		e := indexEntry(m.ConnectionID, m.SessionID)
		want[e] = struct{}{}
		add = append(add, e)
		cmds = append(cmds, s.joinCmds(m)...)
	}
	var del []string
	for _, e := range have {
		if _, ok := want[e]; ok {
			continue
		}
		id, sid, _ := strings.Cut(e, " ")
		del = append(del, e)
		cmds = append(cmds, s.leaveCmds(id, sid)...)
	}
	return s.do("resync", s.indexed(add, cmds, del))
}

// retire removes every entry of this instance (used by Close).
func (s *Redis) retire(ctx context.Context) error {
	c := s.client
	have, err := c.Do(ctx, c.B().Smembers().Key(keyInstance+s.id+":conns").Build()).AsStrSlice()
	if err != nil {
		return err
	}
	cmds := s.cleanupCmds(s.id, have)
	cmds = append(cmds, c.B().Del().Key(keyInstance+s.id).Build())
	return s.doCtx(ctx, "retire", cmds)
}

// cleanupCmds delete an instance's members, its index and its registration.
func (s *Redis) cleanupCmds(inst string, entries []string) rueidis.Commands {
	c := s.client
	cmds := make(rueidis.Commands, 0, 2*len(entries)+2)
	for _, e := range entries {
		id, sid, _ := strings.Cut(e, " ")
		cmds = append(cmds, s.leaveCmds(id, sid)...)
	}
	return append(cmds,
		c.B().Del().Key(keyInstance+inst+":conns").Build(),
		c.B().Srem().Key(keyInstances).Member(inst).Build())
}

// janitor deletes the entries of instances whose heartbeat expired. One
// instance per round does it (SET NX lock), so the cost does not grow with
// the number of instances. Until it runs, readers already skip those entries.
func (s *Redis) janitor() error {
	c := s.client
	ctx, cancel := context.WithTimeout(s.ctx, 3*s.timeout)
	defer cancel()
	err := c.Do(ctx, c.B().Set().Key(keyJanitor).Value(s.id).Nx().Ex(s.ttl/2).Build()).Error()
	if rueidis.IsRedisNil(err) {
		return nil // another instance has this round
	}
	if err != nil {
		return fmt.Errorf("presence janitor lock: %w", err)
	}
	ids, err := c.Do(ctx, c.B().Smembers().Key(keyInstances).Build()).AsStrSlice()
	if err != nil {
		return fmt.Errorf("presence janitor: %w", err)
	}
	cmds := make(rueidis.Commands, len(ids))
	for i, id := range ids {
		cmds[i] = c.B().Exists().Key(keyInstance + id).Build()
	}
	for i, r := range c.DoMulti(ctx, cmds...) {
		n, err := r.AsInt64()
		if err != nil || n != 0 || ids[i] == s.id {
			continue
		}
		entries, err := c.Do(ctx, c.B().Smembers().Key(keyInstance+ids[i]+":conns").Build()).AsStrSlice()
		if err != nil {
			return fmt.Errorf("presence janitor: index of %s: %w", ids[i], err)
		}
		if err := s.doCtx(ctx, "janitor", s.cleanupCmds(ids[i], entries)); err != nil {
			return err
		}
		s.m.janitored.Add(float64(len(entries)))
		s.log.Info("presence: removed a dead instance's entries", "instance", ids[i], "members", len(entries))
	}
	return nil
}

// do sends cmds with a timeout per pipelined round trip, so that a large
// re-sync is not cut off by a timeout meant for one round trip.
func (s *Redis) do(op string, cmds rueidis.Commands) error {
	return s.pipeline(s.ctx, s.timeout, op, cmds)
}

// doCtx sends cmds in pipelined round trips within ctx.
func (s *Redis) doCtx(ctx context.Context, op string, cmds rueidis.Commands) error {
	return s.pipeline(ctx, 0, op, cmds)
}

// pipeline returns the first error of any command.
func (s *Redis) pipeline(ctx context.Context, per time.Duration, op string, cmds rueidis.Commands) error {
	return s.conn.Pipeline(ctx, per, cmds, func(res []rueidis.RedisResult, took time.Duration) error {
		s.m.Latency.WithLabelValues(op).Observe(took.Seconds())
		for _, r := range res {
			if err := r.Error(); err != nil {
				s.m.Errors.WithLabelValues(op).Inc()
				return fmt.Errorf("presence %s: %w", op, err)
			}
		}
		return nil
	})
}

// idPrefix packs the first 8 bytes of id, zero-padded, big-endian.
func idPrefix(id string) uint64 {
	var p uint64
	for i := range 8 {
		p <<= 8
		if i < len(id) {
			p |= uint64(id[i])
		}
	}
	return p
}

// encodeMember is the aggregate hash's value: connection id, instance and
// connection time separated by NUL, then the user_type's length, NUL, and
// user_type and client_type back to back (they are client-chosen text, so
// they are framed by length, not by a separator).
func encodeMember(m Member, inst string) string {
	var b strings.Builder
	b.Grow(len(m.ConnectionID) + len(inst) + len(m.UserType) + len(m.ClientType) + 24)
	b.WriteString(m.ConnectionID)
	b.WriteByte(0)
	b.WriteString(inst)
	b.WriteByte(0)
	b.WriteString(strconv.FormatInt(m.ConnectedAt, 10))
	b.WriteByte(0)
	b.WriteString(strconv.Itoa(len(m.UserType)))
	b.WriteByte(0)
	b.WriteString(m.UserType)
	b.WriteString(m.ClientType)
	return b.String()
}

// decodeMember parses encodeMember's output. The strings it returns share
// v's memory.
func decodeMember(v string) (m Member, inst string, ok bool) {
	var at, ulen string
	if m.ConnectionID, v, ok = strings.Cut(v, "\x00"); !ok || m.ConnectionID == "" {
		return Member{}, "", false
	}
	if inst, v, ok = strings.Cut(v, "\x00"); !ok || inst == "" {
		return Member{}, "", false
	}
	if at, v, ok = strings.Cut(v, "\x00"); !ok {
		return Member{}, "", false
	}
	if ulen, v, ok = strings.Cut(v, "\x00"); !ok {
		return Member{}, "", false
	}
	var err error
	if m.ConnectedAt, err = strconv.ParseInt(at, 10, 64); err != nil {
		return Member{}, "", false
	}
	n, err := strconv.Atoi(ulen)
	if err != nil || n < 0 || n > len(v) {
		return Member{}, "", false
	}
	m.UserType, m.ClientType = v[:n], v[n:]
	return m, inst, true
}
