package broker

import (
	"context"
	"errors"
	"hash/fnv"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"

	"github.com/wsedge/wsedge/internal/redisconn"
)

var _ Broker = (*Redis)(nil)

// Defaults of RedisOptions.
const (
	DefaultRedisBacklog = 10000
	// DefaultRedisBacklogBytes bounds the envelopes queued and in flight:
	// without it the count alone would allow 10,000 × 1 MiB.
	DefaultRedisBacklogBytes = 64 << 20
	DefaultRedisShards       = 8
	// redisMaxBatch bounds one pipelined publish round trip; rueidis moves
	// pipelines above BlockingPipeline (2000) to a separate pool, so stay below.
	redisMaxBatch = 1024
	// redisSubChunk bounds the channels named in one (S)SUBSCRIBE.
	redisSubChunk = 512
	// redisMaxBackoff keeps reconnect attempts frequent enough that delivery
	// resumes well within 2 s of Redis coming back.
	redisMaxBackoff = 500 * time.Millisecond
)

// RedisOptions configures the Redis broker.
type RedisOptions struct {
	// Shards is the number of channel groups (one subscriber connection each)
	// on a Cluster (the connection is Sharded). Default DefaultRedisShards.
	Shards int
	// Backlog caps the publish queue (messages). Default DefaultRedisBacklog.
	Backlog int
	// BacklogBytes caps the bytes of the envelopes queued or being sent.
	// Default DefaultRedisBacklogBytes. At either cap Publish behaves the
	// same way (see Publish).
	BacklogBytes int64
	// Timeout bounds every Redis call; 0: the connection's.
	Timeout time.Duration
	// Registerer receives the wsedge_redis_* metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// History keeps and numbers each session's messages (Size 0: off); see
	// history_redis.go.
	History HistoryOptions
}

// Redis is the cross-instance broker over Redis pub/sub.
//
// Publish delivers to local subscribers at once, on the caller's goroutine,
// and queues one PUBLISH (SPUBLISH on a cluster) of an envelope carrying this
// process's origin; envelopes that come back with our own origin are dropped.
// Local delivery therefore never waits for Redis and keeps working while it is
// away. One publisher goroutine sends the queue in order, so each publisher's
// messages reach every remote listener in the order of the Publish calls.
//
// Subscriptions are state, not a queue: Subscribe and Unsubscribe edit the set
// of wanted channels and wake the subscriber goroutine of the channel's group,
// which brings its connection in line with the set (and after a reconnect,
// subscribes to the whole set again). Their memory is bounded by the number of
// sessions with local members.
type Redis struct {
	handler Handler
	conn    *redisconn.Conn
	client  rueidis.Client
	log     *slog.Logger
	origin  string
	sharded bool
	timeout time.Duration
	m       *redisMetrics
	hist    *redisHistory // nil: history off

	epochSeq atomic.Uint64

	queue chan redisOutgoing
	// queuedBytes counts the envelope bytes queued or in the batch being
	// sent, against maxQueuedBytes.
	queuedBytes    atomic.Int64
	maxQueuedBytes int64
	// down is set while Redis fails publishes; see Publish.
	down atomic.Bool

	shards []*redisShard

	ctx     context.Context
	cancel  context.CancelFunc
	closed  atomic.Bool
	closeMu sync.Mutex // serializes Publish's enqueue with Close's channel close
	wg      sync.WaitGroup
}

type redisOutgoing struct {
	session  string
	channel  string
	envelope []byte // with history on: the bare payload (the script wraps it)
}

// NewRedis builds the broker on conn; Start starts its goroutines: one
// publisher and one subscriber per channel group. On a Cluster (conn.Sharded) it uses SPUBLISH
// and SSUBSCRIBE on hash-tagged channels, otherwise PUBLISH and SUBSCRIBE over
// one connection. Connections are made lazily, so NewRedis succeeds while
// Redis is away. The broker does not close conn.
func NewRedis(conn *redisconn.Conn, o RedisOptions) (*Redis, error) {
	if conn == nil {
		return nil, errors.New("broker: redis: nil connection")
	}
	if o.Backlog <= 0 {
		o.Backlog = DefaultRedisBacklog
	}
	if o.BacklogBytes <= 0 {
		o.BacklogBytes = DefaultRedisBacklogBytes
	}
	if o.Shards <= 0 {
		o.Shards = DefaultRedisShards
	}
	if !conn.Sharded() {
		// Classic pub/sub is not slot-bound: one connection carries all.
		o.Shards = 1
	}
	if o.Timeout <= 0 {
		o.Timeout = conn.Timeout()
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Redis{
		conn:           conn,
		client:         conn.Client(),
		log:            conn.Logger().With("component", "broker.redis"),
		origin:         conn.ID(),
		sharded:        conn.Sharded(),
		timeout:        o.Timeout,
		hist:           newRedisHistory(o.History),
		queue:          make(chan redisOutgoing, o.Backlog),
		maxQueuedBytes: o.BacklogBytes,
		ctx:            ctx,
		cancel:         cancel,
	}
	m, err := newRedisMetrics(o.Registerer, func() float64 { return float64(len(b.queue)) })
	if err != nil {
		cancel()
		return nil, err
	}
	b.m = m
	for i := range o.Shards {
		s := &redisShard{b: b, idx: i, want: make(map[string]string), active: make(map[string]struct{}),
			kick: make(chan struct{}, 1), reset: make(chan string, 1)}
		if conn.Sharded() {
			s.prefix = "ws:session:{" + strconv.Itoa(i) + "}:"
			s.histPrefix = "ws:hist:{" + strconv.Itoa(i) + "}:"
		} else {
			s.prefix = "ws:session:"
			s.histPrefix = "ws:hist:"
		}
		b.shards = append(b.shards, s)
	}
	return b, nil
}

// Start implements Broker.
func (b *Redis) Start(h Handler) error {
	if h == nil {
		return errors.New("broker: redis: nil handler")
	}
	b.handler = h
	b.wg.Add(1 + len(b.shards))
	go b.publishLoop()
	for _, s := range b.shards {
		go s.run()
	}
	return nil
}

// shardOf returns the channel group of a session. The group is part of the
// channel name (a hash tag on a cluster), so all channels of one group live in
// one slot and one SSUBSCRIBE connection serves them.
func (b *Redis) shardOf(session string) *redisShard {
	if len(b.shards) == 1 {
		return b.shards[0]
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(session))
	return b.shards[h.Sum32()%uint32(len(b.shards))]
}

// Subscribe implements Broker. Local delivery starts at once; the Redis
// subscription follows asynchronously.
func (b *Redis) Subscribe(session string) error {
	if b.closed.Load() {
		return ErrClosed
	}
	s := b.shardOf(session)
	s.mu.Lock()
	s.want[s.prefix+session] = session
	s.mu.Unlock()
	s.wake()
	return nil
}

// Unsubscribe implements Broker.
func (b *Redis) Unsubscribe(session string) error {
	s := b.shardOf(session)
	s.mu.Lock()
	delete(s.want, s.prefix+session)
	// Not live from now on, even if a quick Subscribe keeps the channel.
	delete(s.active, s.prefix+session)
	s.mu.Unlock()
	s.wake()
	return nil
}

// Close implements Broker. It sends what is queued (bounded by the timeout),
// then closes the subscriber connections. The rueidis client stays open.
func (b *Redis) Close() error {
	b.closeMu.Lock()
	if b.closed.Swap(true) {
		b.closeMu.Unlock()
		return nil
	}
	close(b.queue)
	b.closeMu.Unlock()
	// The publisher drains the queue and then cancels ctx for the subscribers;
	// a stuck drain is cut off by the timeout.
	t := time.AfterFunc(b.timeout, b.cancel)
	b.wg.Wait()
	t.Stop()
	b.cancel()
	return nil
}
