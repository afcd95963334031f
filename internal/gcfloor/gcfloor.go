// Package gcfloor keeps the garbage collector from running while the heap
// is below a floor.
//
// With the runtime's default (GOGC=100) the next collection starts when the
// heap has doubled since the last one, so a process whose live heap is small
// and growing — a burst of chat turns, each streaming through the AWS SDK,
// which allocates ~3 KB per token — collects every few hundred milliseconds.
// On a 2-core machine each of those mark phases (30-60 ms with 2,000
// streams) stalls the turns that start during it: it was the difference
// between 58-75 ms and 7-13 ms of added time to first token at 2,000 turns
// started within 2 s (docs/BENCHMARKS.md).
//
// A floor makes the collector's target at least floor bytes of heap: below
// it the heap grows to the floor before a cycle starts; above it GOGC applies
// as usual, so a floor changes nothing for a large live heap. After every
// cycle the percent is set that puts the next target at the floor, never
// below the GOGC the process started with. A GOMEMLIMIT still wins: near the
// limit the runtime collects whatever the percent says.
//
// This is what github.com/bytedance/gopkg/util/gctuner does; it is not used
// because, at v0.1.4, its tuning callback reads its bounds without
// synchronisation (the race detector reports it), it keeps its tuner in a
// package variable and reads GOGC from the environment in init.
package gcfloor

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// maxPercent lets a tiny live heap (1 MiB under a 1 GiB floor) still grow to
// the floor.
const maxPercent = 1 << 20

// tuner re-arms itself after every GC cycle through a finalizer on a
// sentinel object: the runtime runs finalizers after each cycle, and the
// sentinel, unreachable again as soon as it is re-armed, is found by the
// next one.
type tuner struct {
	floor uint64
	base  int // the GC percent the process had

	mu      sync.Mutex
	stopped bool
	sample  []metrics.Sample
}

type sentinel struct{ t *tuner }

func (t *tuner) arm() { runtime.SetFinalizer(&sentinel{t: t}, func(s *sentinel) { s.t.tune() }) }

// tune runs in the finalizer goroutine after a cycle.
func (t *tuner) tune() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	metrics.Read(t.sample)
	live := uint64(1)
	if v := t.sample[0].Value; v.Kind() == metrics.KindUint64 && v.Uint64() > 0 {
		live = v.Uint64()
	}
	debug.SetGCPercent(percentFor(live, t.floor, t.base))
	t.arm()
}

// percentFor is the GC percent whose next target is the floor for a live
// heap of live bytes, at least base and at most maxPercent.
func percentFor(live, floor uint64, base int) int {
	if live >= floor/2 {
		return base
	}
	p := floor*100/live - 100
	if p > maxPercent {
		return maxPercent
	}
	return max(int(p), base)
}

// Set applies floor bytes as the heap floor (0: none) and returns a function
// that removes it and restores the GC percent the process had. With the
// collector off (GOGC=off) Set does nothing. The GC percent is the
// process's: only one floor may be set at a time.
func Set(floor uint64) (restore func()) {
	base := debug.SetGCPercent(100)
	debug.SetGCPercent(base)
	if floor == 0 || base < 0 {
		return func() {}
	}
	t := &tuner{floor: floor, base: base, sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
	t.tune()
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		t.stopped = true
		debug.SetGCPercent(base)
	}
}
