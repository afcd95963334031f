package main

import (
	"runtime"
	"sync/atomic"
	"time"
)

// memSampler records the heap and goroutine peaks while every turn is
// active, against the state before the turns started.
type memSampler struct {
	before   runtime.MemStats
	g0       int
	peakHeap atomic.Uint64
	peakG    atomic.Int64
	done     chan struct{}
}

// startSampler samples every 100 ms while allActive reports true.
func startSampler(allActive func() bool) *memSampler {
	m := &memSampler{done: make(chan struct{})}
	runtime.GC()
	runtime.ReadMemStats(&m.before)
	m.g0 = runtime.NumGoroutine()
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-m.done:
				return
			case <-t.C:
				if !allActive() {
					continue
				}
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > m.peakHeap.Load() {
					m.peakHeap.Store(ms.HeapInuse)
				}
				if g := int64(runtime.NumGoroutine()); g > m.peakG.Load() {
					m.peakG.Store(g)
				}
			}
		}
	}()
	return m
}

func (m *memSampler) stop() { close(m.done) }

// perTurn is the heap (KiB) and goroutines added per active turn; zero when
// the turns were never all active at once.
func (m *memSampler) perTurn(turns int) (heapKiB, goroutines float64) {
	h := m.peakHeap.Load()
	if h <= m.before.HeapInuse {
		return 0, 0
	}
	return float64(h-m.before.HeapInuse) / 1024 / float64(turns), float64(m.peakG.Load()-int64(m.g0)) / float64(turns)
}
