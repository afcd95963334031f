package presence

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"github.com/wsedge/wsedge/internal/backoff"
)

// The Redis store's writer goroutine: heartbeat, pending joins and leaves in
// pipelined batches, and the backoff while Redis fails.

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
