package presence

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"

	"github.com/wsedge/wsedge/internal/redisconn"
)

var _ Store = (*Redis)(nil)

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
	check   atomic.Bool        // recheck asked for a heartbeat now
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
	conn.OnLost(s.recheck)
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

// recheck asks the writer to verify its heartbeat key now instead of at the
// next interval; NewRedis registers it with the connection's OnLost. It
// never blocks.
func (s *Redis) recheck() {
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

// Close stops the writer, dropping the changes still pending, then removes
// every entry of this instance that its index lists, and its heartbeat,
// bounded by a few timeouts. Nothing pending is lost by dropping it: a
// pending leave's entry is in the index and is removed with the rest, and a
// pending join was never written. When Redis cannot be reached the entries
// expire with the heartbeat instead.
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
