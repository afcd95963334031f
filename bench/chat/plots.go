package main

import (
	"fmt"

	"github.com/wsedge/wsedge/bench/plot"
)

// writeTTFTPlot draws the CDF of the time wsedge added to the first token
// (-plot): the distribution behind the p50/p90/p99 the JSON reports.
func writeTTFTPlot(path string, res result) error {
	return plot.Save(path, plot.Chart{
		Title:  fmt.Sprintf("chat (%s mode): time added to the first token, %d turns", res.Mode, res.Turns),
		XLabel: "added time to first token (ms)", YLabel: "fraction of turns ≤ time", LogX: true,
		Series: []plot.Series{plot.CDF(res.Mode, res.addedMs, 300)},
	})
}
