// Package backoff spaces out reconnection attempts.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Next doubles d from 25 ms up to max, with ±25% jitter so that many
// instances do not reconnect in lockstep.
func Next(d, max time.Duration) time.Duration {
	if d <= 0 {
		d = 25 * time.Millisecond
	} else {
		d *= 2
	}
	d = min(d, max)
	return d - d/4 + time.Duration(rand.Int64N(int64(d/2)+1))
}
