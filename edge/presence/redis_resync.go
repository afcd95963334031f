package presence

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// Recovery and cleanup: the full re-sync after Redis failed or lost data,
// this instance's retirement at Close, and the janitor for dead instances.

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
