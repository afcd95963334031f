// Package backoff spaces out retries and spreads periodic work, so that many
// instances do not act in lockstep. It is the one source of jitter in wsedge.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Next doubles d from 25 ms up to max, with ±25% jitter.
func Next(d, max time.Duration) time.Duration {
	if d <= 0 {
		d = 25 * time.Millisecond
	} else {
		d *= 2
	}
	d = min(d, max)
	return Spread(d-d/4, d+d/4)
}

// Spread returns a uniformly random duration in [lo, hi] (lo when hi <= lo).
func Spread(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(rand.Int64N(int64(hi-lo)+1))
}
