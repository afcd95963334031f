package plot

import (
	"fmt"
	"io"
	"time"
)

// Progress prints a status line at most once a second during a long phase,
// overwriting itself (\r), and ends it with Done. A nil W prints nothing.
type Progress struct {
	W    io.Writer
	What string
	last time.Time
	on   bool
}

// Update shows the line if a second has passed since the last one.
func (p *Progress) Update(format string, args ...any) {
	if p.W == nil || time.Since(p.last) < time.Second {
		return
	}
	p.last, p.on = time.Now(), true
	fmt.Fprintf(p.W, "\r   %s: %s\033[K", p.What, fmt.Sprintf(format, args...))
}

// Done ends the status line.
func (p *Progress) Done() {
	if p.on {
		fmt.Fprintln(p.W)
		p.on = false
	}
}

// Recorder samples a growing counter every 50 ms into a rate-over-time
// series (X: seconds since start, Y: increase per second) and shows progress
// towards want.
type Recorder struct {
	stop chan struct{}
	done chan Series
}

// Record starts sampling count; Stop returns the series.
func Record(progress *Progress, count func() int64, want int64) *Recorder {
	r := &Recorder{stop: make(chan struct{}), done: make(chan Series, 1)}
	go func() {
		var s Series
		t0 := time.Now()
		prevT, prevN := t0, count()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-r.stop:
				// A last sample covers the time since the previous tick, so a
				// phase shorter than one tick still has its point.
				if now := time.Now(); now.After(prevT) {
					s.X = append(s.X, now.Sub(t0).Seconds())
					s.Y = append(s.Y, float64(count()-prevN)/now.Sub(prevT).Seconds())
				}
				progress.Done()
				r.done <- s
				return
			case now := <-tick.C:
				n := count()
				s.X = append(s.X, now.Sub(t0).Seconds())
				s.Y = append(s.Y, float64(n-prevN)/now.Sub(prevT).Seconds())
				prevT, prevN = now, n
				progress.Update("%d/%d (%.0f%%) after %s", n, want, 100*float64(n)/float64(max(want, 1)), now.Sub(t0).Round(time.Second))
			}
		}
	}()
	return r
}

// Stop ends sampling and returns the series.
func (r *Recorder) Stop() Series {
	close(r.stop)
	return <-r.done
}
