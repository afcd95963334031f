package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/wsedge/wsedge/bench/plot"
)

// writePlots draws the fan-out's latency CDF and deliveries over time next
// to the Markdown at mdPath and returns the Markdown that links them.
func writePlots(mdPath string, r results) (string, error) {
	if r.Fanout == nil {
		return "", nil
	}
	dir, base := filepath.Dir(mdPath), strings.TrimSuffix(filepath.Base(mdPath), filepath.Ext(mdPath))
	charts := []struct {
		suffix string
		chart  plot.Chart
	}{
		{"fanout-latency_cdf", plot.Chart{Title: fmt.Sprintf("%s: broadcast latency CDF (%d listeners, %d instances)", r.Mode, r.Fanout.Listeners, r.Instances),
			XLabel: "send → receive (ms)", YLabel: "fraction of deliveries ≤ latency", LogX: true, Series: r.Fanout.LatencyCDF}},
		{"fanout-deliveries_over_time", plot.Chart{Title: fmt.Sprintf("%s: deliveries per second (%d broadcasts at %d/s)", r.Mode, r.Fanout.Broadcasts, r.Fanout.Rate),
			XLabel: "time since the first broadcast (s)", YLabel: "deliveries/s", Series: []plot.Series{r.Fanout.DeliveriesOverTime}}},
	}
	var b strings.Builder
	b.WriteString("\n## Plots\n")
	for _, c := range charts {
		name := base + "-" + c.suffix + ".svg"
		err := plot.Save(filepath.Join(dir, name), c.chart)
		if errors.Is(err, plot.ErrEmpty) {
			continue
		}
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "\n![%s](%s)\n", c.suffix, name)
	}
	return b.String(), nil
}

func millis(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = float64(d) / 1e6
	}
	return out
}
