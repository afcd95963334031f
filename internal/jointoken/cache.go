package jointoken

import (
	"sync"
	"time"
)

// A reconnect storm (a deploy, a drain, a rebalance) brings the same
// clients back with the tokens they already had, and one verification
// (JOSE header and claims JSON, HMAC or signature) is most of what a token
// adds to an upgrade. Tokens that verified are therefore remembered, keyed
// by their exact bytes, so that presenting the same token again costs a
// map lookup. A different token (another signature, another claim, one
// byte changed) is a different key and is verified in full; failures are
// never remembered.
//
// Bounds: at most cacheMaxTokens entries and cacheMaxBytes of them
// (counted as the token's length plus its sid strings plus a fixed
// overhead); an entry is good until min(exp, cached + cacheTTL). When a
// bound is reached, the oldest entries are dropped first (FIFO), expired or
// not. Memory is thus at most about cacheMaxBytes whatever clients send.
const (
	cacheMaxTokens = 10_000
	cacheMaxBytes  = 4 << 20
	cacheTTL       = time.Minute
	// cacheEntryOverhead approximates the map slot, the entry and the
	// Claims strings' headers.
	cacheEntryOverhead = 200
)

type cacheEntry struct {
	claims Claims
	until  int64 // Unix nanoseconds: min(exp, cached + TTL)
	size   int
	seq    uint64
}

type cacheItem struct {
	key string
	seq uint64
}

// tokenCache is the verified-token cache; safe for concurrent use (the
// event loops and the API's goroutines verify tokens).
type tokenCache struct {
	mu       sync.Mutex
	m        map[string]*cacheEntry
	fifo     []cacheItem // insertion order; items whose seq no longer matches are stale
	head     int
	bytes    int
	seq      uint64
	maxN     int
	maxBytes int
	ttl      time.Duration
}

func newTokenCache(maxN, maxBytes int, ttl time.Duration) *tokenCache {
	return &tokenCache{m: make(map[string]*cacheEntry), maxN: maxN, maxBytes: maxBytes, ttl: ttl}
}

// get returns a copy of the claims of a token verified earlier and still
// good at now.
func (c *tokenCache) get(tok string, now time.Time) (*Claims, bool) {
	c.mu.Lock()
	e := c.m[tok]
	if e == nil || now.UnixNano() >= e.until {
		c.mu.Unlock()
		return nil, false
	}
	cl := e.claims
	c.mu.Unlock()
	// SIDs is shared with the entry: callers never change its elements
	// (they may drop the slice from their copy).
	return &cl, true
}

// put remembers a verified token's claims.
func (c *tokenCache) put(tok string, cl *Claims, now time.Time) {
	until := min(cl.Expires.UnixNano(), now.Add(c.ttl).UnixNano())
	size := len(tok) + cacheEntryOverhead + len(cl.UserType) + len(cl.ClientType) + len(cl.Subject)
	for _, s := range cl.SIDs {
		size += len(s) + 16
	}
	if until <= now.UnixNano() || size > c.maxBytes {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.m[tok]; old != nil {
		c.bytes -= old.size
		delete(c.m, tok)
	}
	for len(c.m) >= c.maxN || c.bytes+size > c.maxBytes {
		c.evictOldest()
	}
	c.seq++
	c.m[tok] = &cacheEntry{claims: *cl, until: until, size: size, seq: c.seq}
	c.bytes += size
	c.fifo = append(c.fifo, cacheItem{tok, c.seq})
	// Stale items (re-inserted tokens) are compacted away once they are as
	// many as the live ones, so the queue stays within twice the entries.
	if len(c.fifo)-c.head > 2*len(c.m)+16 {
		live := make([]cacheItem, 0, len(c.m))
		for _, it := range c.fifo[c.head:] {
			if e := c.m[it.key]; e != nil && e.seq == it.seq {
				live = append(live, it)
			}
		}
		c.fifo, c.head = live, 0
	}
}

// evictOldest drops the oldest live entry; mu is held and the map is not
// empty.
func (c *tokenCache) evictOldest() {
	for c.head < len(c.fifo) {
		it := c.fifo[c.head]
		c.fifo[c.head] = cacheItem{}
		c.head++
		if e := c.m[it.key]; e != nil && e.seq == it.seq {
			delete(c.m, it.key)
			c.bytes -= e.size
			break
		}
	}
	if c.head > len(c.fifo)/2 {
		c.fifo = append(c.fifo[:0], c.fifo[c.head:]...)
		c.head = 0
	}
}

// len and size report the entries and their counted bytes (tests).
func (c *tokenCache) len() (int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m), c.bytes
}
