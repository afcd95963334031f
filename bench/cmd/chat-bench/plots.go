package main

import (
	"fmt"

	"github.com/wsedge/wsedge/bench/plot"
)

// writeTTFTPlot draws the CDF of the time wsedge added to the first token
// (-plot): the distribution behind the p50/p90/p99 the JSON reports, one
// curve per upstream mode of the run (-compare).
func writeTTFTPlot(path string, rs []result) error {
	if len(rs) == 0 {
		return nil
	}
	series := make([]plot.Series, 0, len(rs))
	for _, r := range rs {
		series = append(series, plot.CDF(fmt.Sprintf("%s, floor %s, round %d", r.Upstream, floorLabel(r.GCFloorMiB), r.Round), r.AddedMs, 300))
	}
	return plot.Save(path, plot.Chart{
		Title:  fmt.Sprintf("chat (%s mode): time added to the first token, %d turns", rs[0].Mode, rs[0].Turns),
		XLabel: "added time to first token (ms)", YLabel: "fraction of turns ≤ time", LogX: true,
		Series: series,
	})
}
