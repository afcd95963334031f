package edge

import (
	"crypto/rand"
	mrand "math/rand/v2"
	"time"
)

func randRead(b []byte) { _, _ = rand.Read(b) }

// jitter returns a uniformly random duration in [0, max].
func jitter(max time.Duration) time.Duration {
	if max <= 0 {
		return 0
	}
	return time.Duration(mrand.Int64N(int64(max) + 1))
}
