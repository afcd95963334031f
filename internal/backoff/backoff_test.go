package backoff

import (
	"testing"
	"time"
)

// Each step doubles the previous delay (25 ms first) up to the cap, then
// jitters it by ±25%.
func TestNext(t *testing.T) {
	const limit = 500 * time.Millisecond
	prev := time.Duration(0)
	for i := 0; i < 20; i++ {
		base := 25 * time.Millisecond
		if prev > 0 {
			base = min(2*prev, limit)
		}
		d := Next(prev, limit)
		if lo, hi := base-base/4, base+base/4; d < lo || d > hi {
			t.Fatalf("step %d after %v: %v outside [%v, %v]", i, prev, d, lo, hi)
		}
		prev = d
	}
}
