package broker

import (
	"fmt"
	"time"

	"github.com/redis/rueidis"

	retry "github.com/wsedge/wsedge/internal/backoff"
)

// The Redis broker's publisher: Publish's bounded queue and the one
// goroutine that sends it in pipelined batches.

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
