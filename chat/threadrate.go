package chat

import (
	"sync"
	"time"
)

// maxTrackedThreads caps the per-thread turn-rate table. An entry is a
// thread id (at most 128 bytes) and its bucket, ~250 bytes with the map's
// overhead: 25 MB at the cap.
const maxTrackedThreads = 100_000

// threadRates bounds the turns started on one thread by all of this
// instance's sockets together: without it a client holding many sockets
// (each within its own CHAT_TURN_RATE) could drive one conversation, and the
// model budget behind it, as fast as the pool admits turns. Buckets refill
// lazily when a turn asks (no timer); a bucket that has refilled is the same
// as no entry, so entries are dropped by a sweep when the table is full, at
// most once a second. When a sweep cannot make room, turns on threads not in
// the table are refused until one can: the table never grows past its cap.
type threadRates struct {
	rate  float64 // turns per minute
	burst float64
	max   int

	mu        sync.Mutex
	buckets   map[string]threadBucket
	lastSweep time.Time
}

type threadBucket struct {
	allowance float64
	refilled  time.Time
}

// Reasons take refuses a turn.
const (
	threadOK = iota
	threadRateLimited
	threadTableFull
)

func newThreadRates(rate float64, burst, max int) *threadRates {
	return &threadRates{rate: rate, burst: float64(burst), max: max, buckets: make(map[string]threadBucket)}
}

// level is b's allowance at now.
func (r *threadRates) level(b threadBucket, now time.Time) float64 {
	return min(r.burst, b.allowance+now.Sub(b.refilled).Minutes()*r.rate)
}

// take spends one turn of thread's bucket.
func (r *threadRates) take(thread string, now time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.buckets[thread]
	if ok {
		b.allowance = r.level(b, now)
	} else {
		if len(r.buckets) >= r.max && !r.sweep(now) {
			return threadTableFull
		}
		b.allowance = r.burst
	}
	b.refilled = now
	if b.allowance < 1 {
		r.buckets[thread] = b
		return threadRateLimited
	}
	b.allowance--
	r.buckets[thread] = b
	return threadOK
}

// giveBack returns a turn that take granted but that did not start. A
// bucket that is full again leaves the table: otherwise turns refused busy
// (which cost the socket nothing) would fill it with new thread ids.
func (r *threadRates) giveBack(thread string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.buckets[thread]
	if !ok {
		return
	}
	b.allowance++
	if b.allowance >= r.burst {
		delete(r.buckets, thread)
		return
	}
	r.buckets[thread] = b
}

// sweep drops the buckets that have refilled, at most once a second, and
// reports whether there is room for one more. Called with r.mu held.
func (r *threadRates) sweep(now time.Time) bool {
	if now.Sub(r.lastSweep) >= time.Second {
		r.lastSweep = now
		for id, b := range r.buckets {
			if r.level(b, now) >= r.burst {
				delete(r.buckets, id)
			}
		}
	}
	return len(r.buckets) < r.max
}

// size is the number of tracked threads (for tests).
func (r *threadRates) size() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.buckets)
}
