// Package plot draws the benchmark reports' charts as SVG files (gonum/plot):
// latency CDFs, RSS against connections, throughput over time. The benchmark
// commands keep the raw series in their JSON and call this package next to
// writing their Markdown, which links the files.
package plot

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// Series is one named line. X and Y have the same length.
type Series struct {
	Name string    `json:"name"`
	X    []float64 `json:"x"`
	Y    []float64 `json:"y"`
}

// Chart describes one SVG.
type Chart struct {
	Title, XLabel, YLabel string
	// LogX draws the X axis on a log scale (latencies spanning decades);
	// points with X <= 0 are left out then.
	LogX   bool
	Series []Series
}

// CDF returns the empirical distribution of samples as at most points
// (value, fraction of samples <= value) pairs. samples is sorted in place.
func CDF(name string, samples []float64, points int) Series {
	s := Series{Name: name}
	if len(samples) == 0 || points < 2 {
		return s
	}
	slices.Sort(samples)
	n := len(samples)
	step := max(1, n/points)
	for i := step - 1; i < n; i += step {
		s.X = append(s.X, samples[i])
		s.Y = append(s.Y, float64(i+1)/float64(n))
	}
	if s.Y[len(s.Y)-1] != 1 { // always end at the maximum
		s.X = append(s.X, samples[n-1])
		s.Y = append(s.Y, 1)
	}
	return s
}

// ErrEmpty is returned for a chart without a single point to draw.
var ErrEmpty = errors.New("plot: no data")

// Save writes c as an SVG file at path (8×5 inches).
func Save(path string, c Chart) error {
	p := plot.New()
	p.Title.Text = c.Title
	p.X.Label.Text = c.XLabel
	p.Y.Label.Text = c.YLabel
	p.Legend.Top = true
	p.Legend.Left = true
	if c.LogX {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	}
	p.Add(plotter.NewGrid())
	var lines []any
	for _, s := range c.Series {
		if len(s.X) != len(s.Y) {
			return fmt.Errorf("plot %s: series %q has %d x and %d y values", path, s.Name, len(s.X), len(s.Y))
		}
		xys := make(plotter.XYs, 0, len(s.X))
		for i := range s.X {
			if (c.LogX && s.X[i] <= 0) || math.IsNaN(s.X[i]) || math.IsNaN(s.Y[i]) || math.IsInf(s.Y[i], 0) {
				continue
			}
			xys = append(xys, plotter.XY{X: s.X[i], Y: s.Y[i]})
		}
		if len(xys) > 0 {
			lines = append(lines, s.Name, xys)
		}
	}
	if len(lines) == 0 {
		return fmt.Errorf("plot %s: %w", path, ErrEmpty)
	}
	if err := plotutil.AddLines(p, lines...); err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	if err := p.Save(8*vg.Inch, 5*vg.Inch, path); err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return nil
}
