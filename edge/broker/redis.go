package broker

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"

	retry "github.com/wsedge/wsedge/internal/backoff"
	"github.com/wsedge/wsedge/internal/redisconn"
)

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
	// when Sharded. Default DefaultRedisShards.
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

// Sharded reports whether the broker uses SPUBLISH/SSUBSCRIBE (Redis Cluster).
func (b *Redis) Sharded() bool { return b.sharded }

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

// Publish implements Broker. It never blocks: local subscribers get the
// payload now; the copy for other instances waits in the publish queue.
//
// At the queue's cap (messages or bytes): while Redis answers (the queue is full because Redis is
// slow), Publish returns ErrBacklogFull and delivers nothing, so the sender
// learns its message was not sent. While Redis is failing, local delivery
// goes on and the remote copy is dropped (counted in
// wsedge_redis_dropped_total): other instances cannot be reached anyway.
func (b *Redis) Publish(session string, payload []byte) error {
	if b.closed.Load() {
		return ErrClosed
	}
	if b.hist != nil {
		return b.publishHistory(session, payload)
	}
	env := encodeEnvelope(b.origin, payload)
	out := redisOutgoing{channel: b.shardOf(session).prefix + session, envelope: env}
	b.closeMu.Lock()
	if b.closed.Load() {
		b.closeMu.Unlock()
		return ErrClosed
	}
	var queued bool
	n := int64(len(env))
	if b.queuedBytes.Add(n) <= b.maxQueuedBytes {
		select {
		case b.queue <- out:
			queued = true
		default:
		}
	}
	if !queued {
		b.queuedBytes.Add(-n)
	}
	b.closeMu.Unlock()
	if !queued {
		if !b.down.Load() {
			b.m.Dropped.WithLabelValues("publish", "backlog_full").Inc()
			return ErrBacklogFull
		}
		b.m.Dropped.WithLabelValues("publish", "redis_down").Inc()
	}
	b.handler(session, 0, payload)
	return nil
}

// publishHistory queues the publish script. Nothing is delivered locally:
// only Redis can number the message, and every instance, this one included,
// delivers it from the subscription, so all see one order. While Redis fails
// the sender is told (ErrUnavailable) instead.
func (b *Redis) publishHistory(session string, payload []byte) error {
	if b.down.Load() {
		b.m.Dropped.WithLabelValues("publish", "redis_down").Inc()
		return ErrUnavailable
	}
	out := redisOutgoing{session: session, channel: b.shardOf(session).prefix + session, envelope: payload}
	b.closeMu.Lock()
	defer b.closeMu.Unlock()
	if b.closed.Load() {
		return ErrClosed
	}
	// The same caps as Publish: messages (the channel) and bytes.
	n := int64(len(payload))
	if b.queuedBytes.Add(n) <= b.maxQueuedBytes {
		select {
		case b.queue <- out:
			return nil
		default:
		}
	}
	b.queuedBytes.Add(-n)
	b.m.Dropped.WithLabelValues("publish", "backlog_full").Inc()
	return ErrBacklogFull
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

// publishLoop sends the queue in order, in pipelined batches.
func (b *Redis) publishLoop() {
	defer b.wg.Done()
	defer b.cancel()
	batch := make([]redisOutgoing, 0, redisMaxBatch)
	cmds := make(rueidis.Commands, 0, redisMaxBatch)
	backoff := time.Duration(0)
	for {
		first, ok := <-b.queue
		if !ok {
			return
		}
		batch = append(batch[:0], first)
	fill:
		for len(batch) < redisMaxBatch {
			select {
			case o, ok := <-b.queue:
				if !ok {
					break fill
				}
				batch = append(batch, o)
			default:
				break fill
			}
		}
		var err error
		if b.hist != nil {
			err = b.sendHistory(batch)
		} else {
			cmds = cmds[:0]
			for _, o := range batch {
				if b.sharded {
					cmds = append(cmds, b.client.B().Spublish().Channel(o.channel).Message(rueidis.BinaryString(o.envelope)).Build())
				} else {
					cmds = append(cmds, b.client.B().Publish().Channel(o.channel).Message(rueidis.BinaryString(o.envelope)).Build())
				}
			}
			err = b.send(cmds)
		}
		b.queuedBytes.Add(-batchBytes(batch))
		clear(batch) // let the envelopes go
		if err == nil {
			if b.down.Swap(false) {
				b.log.Info("redis publish recovered")
			}
			backoff = 0
			continue
		}
		if !b.down.Swap(true) {
			b.log.Warn("redis publish failing; remote delivery paused, local delivery continues", "err", err)
		}
		// What waited during the failure would arrive late and with gaps;
		// drop it so that listeners see fresh messages once Redis is back,
		// and wait a little so that a dead Redis is not hammered.
		b.m.Dropped.WithLabelValues("publish", "redis_down").Add(float64(len(batch) + b.drainQueue()))
		backoff = retry.Next(backoff, redisMaxBackoff)
		select {
		case <-time.After(backoff):
		case <-b.ctx.Done():
			return
		}
		if b.hist != nil && !b.probeUntilUp() {
			return
		}
	}
}

func (b *Redis) drainQueue() int {
	n := 0
	for {
		select {
		case o, ok := <-b.queue:
			if !ok {
				return n
			}
			b.queuedBytes.Add(-int64(len(o.envelope)))
			n++
		default:
			return n
		}
	}
}

func batchBytes(batch []redisOutgoing) int64 {
	var n int64
	for _, o := range batch {
		n += int64(len(o.envelope))
	}
	return n
}

// send runs one pipelined batch; it returns the first transport error
// (Redis error replies are counted but do not mark Redis as down).
func (b *Redis) send(cmds rueidis.Commands) error {
	var first error
	_ = b.conn.Pipeline(b.ctx, b.timeout, cmds, func(res []rueidis.RedisResult, took time.Duration) error {
		b.m.Latency.WithLabelValues("publish").Observe(took.Seconds())
		if err := b.tally(res); err != nil && first == nil {
			first = err
		}
		return nil
	})
	return first
}

// tally counts a batch's results and returns the first transport error.
// NOSCRIPT answers are not counted: the history publisher sends those
// commands again and counts the retry.
func (b *Redis) tally(res []rueidis.RedisResult) error {
	var first error
	ok := 0
	for _, r := range res {
		err := r.Error()
		if err == nil {
			ok++
			continue
		}
		re, isRedis := rueidis.IsRedisErr(err)
		if isRedis && re.IsNoScript() {
			continue
		}
		b.m.Errors.WithLabelValues("publish").Inc()
		if !isRedis && first == nil {
			first = fmt.Errorf("redis publish: %w", err)
		}
	}
	b.m.published.Add(float64(ok))
	return first
}

// deliver handles one message from Redis.
func (b *Redis) deliver(session, message string) {
	var seq uint64
	origin, payload, ok := decodeEnvelope(message)
	if !ok {
		seq, payload, ok = decodeEnvelopeV2(message)
	}
	switch {
	case !ok:
		b.m.received.WithLabelValues("invalid").Inc()
		return
	case origin == b.origin:
		// Already delivered locally at Publish time.
		b.m.received.WithLabelValues("own").Inc()
		return
	}
	if !b.handler(session, seq, []byte(payload)) {
		// Arrived between Unsubscribe and the UNSUBSCRIBE reaching Redis.
		b.m.received.WithLabelValues("unsubscribed").Inc()
		return
	}
	b.m.received.WithLabelValues("delivered").Inc()
}

// redisShard owns one subscriber connection and the channels of its group.
type redisShard struct {
	b          *Redis
	idx        int
	prefix     string
	histPrefix string
	kick       chan struct{} // capacity 1: a pending wake-up is enough
	reset      chan string   // capacity 1: the server dropped a wanted channel

	mu     sync.Mutex
	want   map[string]string   // channel -> session
	active map[string]struct{} // channels Redis confirmed on the current connection
}

func (s *redisShard) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// run keeps a subscriber connection alive for as long as the broker lives,
// reconnecting with a capped, jittered backoff.
func (s *redisShard) run() {
	defer s.b.wg.Done()
	backoff := time.Duration(0)
	for {
		// Hold no connection while no channel is wanted.
		s.mu.Lock()
		idle := len(s.want) == 0
		s.mu.Unlock()
		if idle {
			select {
			case <-s.kick:
				s.wake() // keep the signal for connect's first reconcile
			case <-s.b.ctx.Done():
				return
			}
		}
		start := time.Now()
		err := s.connect()
		if s.b.ctx.Err() != nil {
			return
		}
		if err == nil {
			continue // every channel was dropped; wait for the next
		}
		s.b.m.reconnects.Inc()
		if time.Since(start) > 5*time.Second {
			backoff = 0 // it was a working connection that broke
		}
		backoff = retry.Next(backoff, redisMaxBackoff)
		s.b.log.Warn("redis pub/sub connection lost; resubscribing", "shard", s.idx, "err", err, "retry_in", backoff)
		select {
		case <-time.After(backoff):
		case <-s.b.ctx.Done():
			return
		}
	}
}

// connect runs one connection's lifetime. It returns nil when no channel is
// wanted any more, or an error when the connection failed.
func (s *redisShard) connect() error {
	dc, _ := s.b.client.Dedicate()
	// Close, not the release func: the connection carries our subscriptions,
	// and a broken one must not go back to the pool.
	defer dc.Close()
	defer s.setActive(nil, true) // what this connection held is gone
	lost := dc.SetPubSubHooks(rueidis.PubSubHooks{
		OnMessage: func(m rueidis.PubSubMessage) {
			if len(m.Channel) <= len(s.prefix) {
				return
			}
			s.b.deliver(m.Channel[len(s.prefix):], m.Message)
		},
		OnSubscription: func(ps rueidis.PubSubSubscription) {
			// A cluster unsubscribes us by itself when the slot moves.
			if ps.Kind == "sunsubscribe" {
				s.mu.Lock()
				_, wanted := s.want[ps.Channel]
				delete(s.active, ps.Channel)
				s.mu.Unlock()
				if wanted {
					// Our own bookkeeping still lists it; start over.
					select {
					case s.reset <- ps.Channel:
					default:
					}
				}
			}
		},
	})
	select { // a drop reported on the previous connection is moot
	case <-s.reset:
	default:
	}
	have := make(map[string]struct{})
	s.wake()
	for {
		select {
		case <-s.b.ctx.Done():
			return nil
		case ch := <-s.reset:
			return fmt.Errorf("redis dropped sharded subscription %s (slot moved?)", ch)
		case err, ok := <-lost:
			if !ok || err == nil {
				err = errors.New("connection closed")
			}
			return fmt.Errorf("redis pub/sub: %w", err)
		case <-s.kick:
			done, err := s.reconcile(dc, have)
			if err != nil {
				return err
			}
			if done {
				return nil
			}
		}
	}
}

// reconcile subscribes to wanted channels the connection lacks and
// unsubscribes from those no longer wanted. done reports that nothing is
// wanted and nothing is held, so the connection can go.
func (s *redisShard) reconcile(dc rueidis.DedicatedClient, have map[string]struct{}) (done bool, err error) {
	var add, del []string
	s.mu.Lock()
	for ch := range s.want {
		if _, ok := have[ch]; !ok {
			add = append(add, ch)
		}
	}
	for ch := range have {
		if _, ok := s.want[ch]; !ok {
			del = append(del, ch)
		}
	}
	idle := len(s.want) == 0
	s.mu.Unlock()
	for len(add) > 0 {
		n := min(len(add), redisSubChunk)
		var cmd rueidis.Completed
		if s.b.sharded {
			cmd = dc.B().Ssubscribe().Channel(add[:n]...).Build()
		} else {
			cmd = dc.B().Subscribe().Channel(add[:n]...).Build()
		}
		if err := s.do(dc, "subscribe", cmd); err != nil {
			return false, err
		}
		for _, ch := range add[:n] {
			have[ch] = struct{}{}
		}
		s.setActive(add[:n], true)
		add = add[n:]
	}
	if idle && len(have) == len(del) {
		// Dropping the connection unsubscribes everything at once.
		return true, nil
	}
	for len(del) > 0 {
		n := min(len(del), redisSubChunk)
		var cmd rueidis.Completed
		if s.b.sharded {
			cmd = dc.B().Sunsubscribe().Channel(del[:n]...).Build()
		} else {
			cmd = dc.B().Unsubscribe().Channel(del[:n]...).Build()
		}
		if err := s.do(dc, "unsubscribe", cmd); err != nil {
			return false, err
		}
		for _, ch := range del[:n] {
			delete(have, ch)
		}
		s.setActive(del[:n], false)
		del = del[n:]
	}
	return false, nil
}

// setActive records channels as confirmed (or no longer) subscribed; a nil
// list with on set clears them all (the connection is gone).
func (s *redisShard) setActive(chs []string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if chs == nil && on {
		clear(s.active)
		return
	}
	for _, ch := range chs {
		if on {
			s.active[ch] = struct{}{}
		} else {
			delete(s.active, ch)
		}
	}
}

func (s *redisShard) do(dc rueidis.DedicatedClient, op string, cmd rueidis.Completed) error {
	ctx, cancel := context.WithTimeout(s.b.ctx, s.b.timeout)
	defer cancel()
	start := time.Now()
	err := dc.Do(ctx, cmd).Error()
	s.b.m.Latency.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil {
		s.b.m.Errors.WithLabelValues(op).Inc()
		return fmt.Errorf("redis %s: %w", op, err)
	}
	return nil
}

// Envelope layout: version byte 1, origin length byte, origin, payload.
const envelopeVersion = 1

func encodeEnvelope(origin string, payload []byte) []byte {
	b := make([]byte, 0, 2+len(origin)+len(payload))
	b = append(b, envelopeVersion, byte(len(origin)))
	b = append(b, origin...)
	return append(b, payload...)
}

// decodeEnvelope parses what arrives from Redis; anything malformed (another
// writer on our channels, a future version) is rejected, not guessed at.
func decodeEnvelope(s string) (origin, payload string, ok bool) {
	if len(s) < 2 || s[0] != envelopeVersion {
		return "", "", false
	}
	n := int(s[1])
	if n == 0 || len(s) < 2+n {
		return "", "", false
	}
	return s[2 : 2+n], s[2+n:], true
}
