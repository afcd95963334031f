package broker

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	retry "github.com/wsedge/wsedge/internal/backoff"
)

var _ History = redisHistoryAPI{}

// Session history in Redis (docs/REDIS.md, "History"). Per session, in the
// slot of its pub/sub channel (the channel group's hash tag on a cluster):
//
//	<p>:m  hash    e = epoch, s = last seq
//	<p>:s  stream  entry id "<seq>-0", field p = payload; MAXLEN Size (exact)
//
// with <p> = ws:hist:<session> (standalone) or ws:hist:{<g>}:<session>
// (cluster). Both keys expire TTL after the session's last message.

// histPublish numbers a message, keeps it and publishes it: one script, so
// that seq order is publish order and nothing else costs a round trip.
// KEYS: meta, stream, channel. ARGV: payload, size, ttl ms, epoch candidate,
// "1" for SPUBLISH. A missing meta (new session, expired, flushed, evicted)
// starts a new epoch and drops a stale stream.
const histPublishSrc = `
local seq = redis.call('HINCRBY', KEYS[1], 's', 1)
if seq == 1 then
  redis.call('DEL', KEYS[2])
  redis.call('HSETNX', KEYS[1], 'e', ARGV[4])
end
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], seq .. '-0', 'p', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
local msg = '\2' .. seq .. ' ' .. ARGV[1]
if ARGV[5] == '1' then
  redis.call('SPUBLISH', KEYS[3], msg)
else
  redis.call('PUBLISH', KEYS[3], msg)
end
return seq
`

// histSince reads the epoch, the last seq and the entries after a seq at
// one instant, creating the session's epoch when it has none.
// KEYS: meta, stream. ARGV: first wanted id, count, epoch candidate, ttl ms.
const histSinceSrc = `
local m = redis.call('HMGET', KEYS[1], 'e', 's')
if not m[1] then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', ARGV[3], 's', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return {ARGV[3], '0', {}}
end
return {m[1], m[2] or '0', redis.call('XRANGE', KEYS[2], ARGV[1], '+', 'COUNT', ARGV[2])}
`

var histSinceLua = rueidis.NewLuaScript(histSinceSrc)

// redisHistory is the Redis broker's history settings.
type redisHistory struct {
	o     HistoryOptions
	size  string // o.Size, formatted once
	ttlMS string
	base  string // random per process; epoch candidates are base + counter
}

func newRedisHistory(o HistoryOptions) *redisHistory {
	if o.Size <= 0 {
		return nil
	}
	if o.TTL <= 0 {
		o.TTL = 10 * time.Minute
	}
	return &redisHistory{o: o, size: strconv.Itoa(o.Size), ttlMS: strconv.FormatInt(o.TTL.Milliseconds(), 10), base: newEpoch()}
}

// History returns the broker's history, or nil when it is off.
func (b *Redis) History() History {
	if b.hist == nil {
		return nil
	}
	return redisHistoryAPI{b}
}

// histKeys returns the meta and stream keys of session.
func (b *Redis) histKeys(session string) (meta, stream string) {
	p := b.shardOf(session).histPrefix + session
	return p + ":m", p + ":s"
}

func (b *Redis) epochCandidate() string {
	return b.hist.base + strconv.FormatUint(b.epochSeq.Add(1), 36)
}

// histCmd builds the EVALSHA (or, after NOSCRIPT, EVAL) of one publish.
func (b *Redis) histCmd(o redisOutgoing, eval bool) rueidis.Completed {
	meta, stream := b.histKeys(o.session)
	sharded := "0"
	if b.sharded {
		sharded = "1"
	}
	args := []string{rueidis.BinaryString(o.envelope), b.hist.size, b.hist.ttlMS, b.epochCandidate(), sharded}
	if eval {
		return b.client.B().Eval().Script(histPublishSrc).Numkeys(3).Key(meta, stream, o.channel).Arg(args...).Build()
	}
	return b.client.B().Evalsha().Sha1(histPublishSHA).Numkeys(3).Key(meta, stream, o.channel).Arg(args...).Build()
}

var histPublishSHA = func() string {
	// rueidis computes the same digest inside NewLuaScript but does not
	// export it; EVALSHA needs it without an extra round trip.
	return sha1Hex(histPublishSrc)
}()

// sendHistory runs one pipelined batch of publish scripts. A node that lost
// its script cache (restart, SCRIPT FLUSH) answers NOSCRIPT: those commands
// are sent again as EVAL, in order, before the next batch.
func (b *Redis) sendHistory(batch []redisOutgoing) error {
	ctx, cancel := context.WithTimeout(b.ctx, b.timeout)
	defer cancel()
	cmds := make(rueidis.Commands, 0, len(batch))
	for _, o := range batch {
		cmds = append(cmds, b.histCmd(o, false))
	}
	start := time.Now()
	res := b.client.DoMulti(ctx, cmds...)
	var retry []redisOutgoing
	for i, r := range res {
		if err, ok := rueidis.IsRedisErr(r.Error()); ok && err.IsNoScript() {
			retry = append(retry, batch[i])
		}
	}
	if len(retry) > 0 {
		cmds = cmds[:0]
		for _, o := range retry {
			cmds = append(cmds, b.histCmd(o, true))
		}
		res = append(res, b.client.DoMulti(ctx, cmds...)...)
	}
	b.m.Latency.WithLabelValues("publish").Observe(time.Since(start).Seconds())
	return b.tally(res)
}

// probeUntilUp pings Redis until it answers, then clears down. With history
// on, Publish queues nothing while Redis is down (the sender is told), so no
// batch would ever find out that it is back. It reports false when the
// broker is closing.
func (b *Redis) probeUntilUp() bool {
	backoff := time.Duration(0)
	for {
		ctx, cancel := context.WithTimeout(b.ctx, b.timeout)
		err := b.client.Do(ctx, b.client.B().Ping().Build()).Error()
		cancel()
		if err == nil {
			b.down.Store(false)
			b.log.Info("redis publish recovered")
			return true
		}
		backoff = retry.Next(backoff, redisMaxBackoff)
		select {
		case <-time.After(backoff):
		case <-b.ctx.Done():
			return false
		}
	}
}

// redisHistoryAPI implements History for the Redis broker.
type redisHistoryAPI struct{ b *Redis }

// Since implements History.
func (h redisHistoryAPI) Since(ctx context.Context, session string, since uint64) (Replay, error) {
	b := h.b
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	meta, stream := b.histKeys(session)
	start := time.Now()
	res := histSinceLua.Exec(ctx, b.client, []string{meta, stream},
		[]string{strconv.FormatUint(since+1, 10) + "-0", b.hist.size, b.epochCandidate(), b.hist.ttlMS})
	b.m.Latency.WithLabelValues("history").Observe(time.Since(start).Seconds())
	rep, err := parseSince(res)
	if err != nil {
		b.m.Errors.WithLabelValues("history").Inc()
		return Replay{}, fmt.Errorf("redis history of %s: %w", session, err)
	}
	return rep, nil
}

// Live implements History: the session's channel is confirmed subscribed on
// the current connection of its group.
func (h redisHistoryAPI) Live(session string) bool {
	s := h.b.shardOf(session)
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.active[s.prefix+session]
	return ok
}

func parseSince(res rueidis.RedisResult) (Replay, error) {
	arr, err := res.ToArray()
	if err != nil {
		return Replay{}, err
	}
	if len(arr) != 3 {
		return Replay{}, fmt.Errorf("history script: %d values, want 3", len(arr))
	}
	var rep Replay
	if rep.Epoch, err = arr[0].ToString(); err != nil {
		return Replay{}, fmt.Errorf("history epoch: %w", err)
	}
	last, err := arr[1].ToString()
	if err != nil {
		return Replay{}, fmt.Errorf("history seq: %w", err)
	}
	if rep.Last, err = strconv.ParseUint(last, 10, 64); err != nil {
		return Replay{}, fmt.Errorf("history seq: %w", err)
	}
	entries, err := arr[2].AsXRange()
	if err != nil {
		return Replay{}, fmt.Errorf("history entries: %w", err)
	}
	for _, e := range entries {
		ms, _, _ := strings.Cut(e.ID, "-")
		seq, err := strconv.ParseUint(ms, 10, 64)
		if err != nil {
			return Replay{}, fmt.Errorf("history entry id %q: %w", e.ID, err)
		}
		rep.Entries = append(rep.Entries, Entry{Seq: seq, Payload: []byte(e.FieldValues["p"])})
	}
	return rep, nil
}

func sha1Hex(s string) string {
	sum := sha1.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}
