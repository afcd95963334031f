package presence

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/redis/rueidis"
)

// The Redis store's reads: Members through the client-side cache, and the
// decoded form of large sessions kept while Redis says they are unchanged.

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
