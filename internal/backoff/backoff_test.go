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

func TestSpread(t *testing.T) {
	for _, tc := range []struct{ lo, hi time.Duration }{
		{0, 0}, {0, time.Second}, {time.Second, 3 * time.Second}, {time.Second, time.Millisecond}, {0, -1},
	} {
		for range 100 {
			d := Spread(tc.lo, tc.hi)
			if tc.hi <= tc.lo {
				if d != tc.lo {
					t.Fatalf("Spread(%v, %v) = %v, want %v", tc.lo, tc.hi, d, tc.lo)
				}
				continue
			}
			if d < tc.lo || d > tc.hi {
				t.Fatalf("Spread(%v, %v) = %v, outside", tc.lo, tc.hi, d)
			}
		}
	}
}
