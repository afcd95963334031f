package broker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/rueidis"

	retry "github.com/wsedge/wsedge/internal/backoff"
)

// The Redis broker's subscribers: one connection per channel group, kept in
// line with the wanted channels, and the delivery of what arrives.

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
	if err := s.change(dc, add, true, have); err != nil {
		return false, err
	}
	if idle && len(have) == len(del) {
		// Dropping the connection unsubscribes everything at once.
		return true, nil
	}
	return false, s.change(dc, del, false, have)
}

// change subscribes to chs (on) or unsubscribes from them, redisSubChunk
// channels a command, and records each chunk Redis confirmed in have.
func (s *redisShard) change(dc rueidis.DedicatedClient, chs []string, on bool, have map[string]struct{}) error {
	op := "unsubscribe"
	if on {
		op = "subscribe"
	}
	for len(chs) > 0 {
		n := min(len(chs), redisSubChunk)
		var cmd rueidis.Completed
		switch {
		case on && s.b.sharded:
			cmd = dc.B().Ssubscribe().Channel(chs[:n]...).Build()
		case on:
			cmd = dc.B().Subscribe().Channel(chs[:n]...).Build()
		case s.b.sharded:
			cmd = dc.B().Sunsubscribe().Channel(chs[:n]...).Build()
		default:
			cmd = dc.B().Unsubscribe().Channel(chs[:n]...).Build()
		}
		if err := s.do(dc, op, cmd); err != nil {
			return err
		}
		for _, ch := range chs[:n] {
			if on {
				have[ch] = struct{}{}
			} else {
				delete(have, ch)
			}
		}
		s.setActive(chs[:n], on)
		chs = chs[n:]
	}
	return nil
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
