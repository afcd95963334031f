package chat

import (
	"fmt"
	"testing"
	"time"
)

func TestThreadRates(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	type step struct {
		thread string
		at     time.Duration
		give   bool // giveBack instead of take
		want   int
	}
	for _, tc := range []struct {
		name  string
		rate  float64
		burst int
		max   int
		steps []step
	}{
		{name: "burst then refill", rate: 60, burst: 2, max: 10, steps: []step{
			{thread: "a", want: threadOK},
			{thread: "a", want: threadOK},
			{thread: "a", want: threadRateLimited},
			{thread: "b", want: threadOK}, // another thread has its own bucket
			{thread: "a", at: time.Second, want: threadOK},
			{thread: "a", at: time.Second, want: threadRateLimited},
		}},
		{name: "a turn given back", rate: 1, burst: 1, max: 10, steps: []step{
			{thread: "a", want: threadOK},
			{thread: "a", give: true},
			{thread: "a", want: threadOK},
			{thread: "a", want: threadRateLimited},
		}},
		// Turns refused busy give their turn back: new thread ids named that
		// way must not take places in the table.
		{name: "given back to full leaves the table", rate: 1, burst: 2, max: 1, steps: []step{
			{thread: "a", want: threadOK},
			{thread: "z", want: threadTableFull}, // spends this second's sweep
			{thread: "a", give: true},            // full again: gone
			{thread: "b", want: threadOK},        // no sweep needed
			{thread: "b", want: threadOK},
			{thread: "b", give: true},
			{thread: "c", at: 2 * time.Second, want: threadTableFull}, // b is not full again: it stays
		}},
		{name: "full table: refilled buckets are swept", rate: 60, burst: 1, max: 2, steps: []step{
			{thread: "a", want: threadOK},
			{thread: "b", want: threadOK},
			{thread: "c", want: threadTableFull}, // a and b are still spent
			{thread: "c", at: 2 * time.Second, want: threadOK},
		}},
		{name: "full table: one sweep a second", rate: 60, burst: 1, max: 1, steps: []step{
			{thread: "a", want: threadOK},
			{thread: "b", at: 1500 * time.Millisecond, want: threadOK}, // sweeps a
			{thread: "c", at: 2600 * time.Millisecond, want: threadOK}, // sweeps b, a second later
			{thread: "d", at: 3000 * time.Millisecond, want: threadTableFull},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newThreadRates(tc.rate, tc.burst, tc.max)
			for i, s := range tc.steps {
				if s.give {
					r.giveBack(s.thread)
					continue
				}
				if got := r.take(s.thread, t0.Add(s.at)); got != s.want {
					t.Fatalf("step %d (%s at %v): %d, want %d", i, s.thread, s.at, got, s.want)
				}
				if r.size() > tc.max {
					t.Fatalf("step %d: %d threads tracked, cap %d", i, r.size(), tc.max)
				}
			}
		})
	}
}

// An attacker naming a new thread on every turn never grows the table past
// its cap, and threads it spent come back once refilled.
func TestThreadRatesBounded(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := newThreadRates(60, 1, 1000)
	refused := 0
	for i := range 5000 {
		if r.take(fmt.Sprintf("t%d", i), t0) != threadOK {
			refused++
		}
	}
	if r.size() != 1000 || refused != 4000 {
		t.Fatalf("%d tracked, %d refused; want 1000, 4000", r.size(), refused)
	}
	if got := r.take("late", t0.Add(2*time.Second)); got != threadOK || r.size() != 1 {
		t.Fatalf("after the buckets refilled: %d with %d tracked", got, r.size())
	}
}
