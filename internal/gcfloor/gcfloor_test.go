package gcfloor

import (
	"runtime"
	"runtime/debug"
	"testing"
)

var sink [][]byte

// churn allocates n bytes of garbage in 64 KiB pieces, keeping 4 MiB live.
func churn(n int) {
	const piece = 64 << 10
	sink = make([][]byte, 64)
	for i := 0; i < n/piece; i++ {
		sink[i%len(sink)] = make([]byte, piece)
	}
	sink = nil
}

func cycles(floor uint64) uint32 {
	runtime.GC()
	restore := Set(floor)
	defer restore()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	churn(64 << 20)
	runtime.ReadMemStats(&after)
	return after.NumGC - before.NumGC
}

func TestFloor(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		floor                uint64
		minCycles, maxCycles uint32
	}{
		// 64 MiB of garbage over a ~4 MiB live heap: the default collects
		// every few MiB.
		{name: "no floor", floor: 0, minCycles: 4, maxCycles: 1000},
		// Under a 256 MiB floor the same garbage stays below the target.
		{name: "256 MiB floor", floor: 256 << 20, minCycles: 0, maxCycles: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if n := cycles(tc.floor); n < tc.minCycles || n > tc.maxCycles {
				t.Fatalf("%d GC cycles while allocating 64 MiB, want %d..%d", n, tc.minCycles, tc.maxCycles)
			}
		})
	}
}

func TestPercentFor(t *testing.T) {
	for _, tc := range []struct {
		live, floor uint64
		base, want  int
	}{
		{live: 4 << 20, floor: 256 << 20, base: 100, want: 6300},
		{live: 128 << 20, floor: 256 << 20, base: 100, want: 100}, // at half the floor: GOGC as usual
		{live: 1 << 30, floor: 256 << 20, base: 100, want: 100},   // above the floor
		{live: 64 << 20, floor: 256 << 20, base: 400, want: 400},  // never below the process's GOGC
		{live: 1, floor: 1 << 40, base: 100, want: maxPercent},    // capped
		{live: 100 << 20, floor: 256 << 20, base: 100, want: 156}, // target 2.56 × live
	} {
		if got := percentFor(tc.live, tc.floor, tc.base); got != tc.want {
			t.Errorf("percentFor(%d, %d, %d) = %d, want %d", tc.live, tc.floor, tc.base, got, tc.want)
		}
	}
}

func TestRestore(t *testing.T) {
	before := debug.SetGCPercent(100)
	debug.SetGCPercent(before)
	restore := Set(128 << 20)
	runtime.GC() // a tuning after the restore must not change it back
	restore()
	runtime.GC()
	runtime.GC()
	if after := debug.SetGCPercent(before); after != before {
		t.Fatalf("GC percent %d after restore, want %d", after, before)
	}
}

func TestOffStaysOff(t *testing.T) {
	prev := debug.SetGCPercent(-1)
	defer debug.SetGCPercent(prev)
	restore := Set(128 << 20)
	defer restore()
	if p := debug.SetGCPercent(-1); p != -1 {
		t.Fatalf("GC percent %d after Set with GOGC=off, want -1", p)
	}
}
