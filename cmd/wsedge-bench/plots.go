package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/wsedge/wsedge/bench/plot"
)

// Kinds of series a result may carry, each drawn as one chart per case with
// a line per target.
var seriesKinds = []struct {
	kind, title, x, y string
	logX              bool
}{
	{"latency_cdf", "latency CDF", "latency (ms)", "fraction of samples ≤ latency", true},
	{"rss_vs_conns", "server RSS vs connections", "connections", "RSS (MiB)", false},
	{"deliveries_over_time", "deliveries per second", "time since first broadcast (s)", "deliveries/s", false},
}

// addSeries keeps a raw series (for the JSON and the plots) under kind.
func (r *result) addSeries(kind string, s plot.Series) {
	if len(s.X) == 0 {
		return
	}
	if r.Series == nil {
		r.Series = map[string]plot.Series{}
	}
	s.Name = r.Target
	r.Series[kind] = s
}

// writePlots draws an SVG per scenario case and series kind next to the
// Markdown at mdPath (prefix-scenario-case-kind.svg) and records their names
// for writeMarkdown.
func (rep *report) writePlots(mdPath string) error {
	dir, base := filepath.Dir(mdPath), strings.TrimSuffix(filepath.Base(mdPath), filepath.Ext(mdPath))
	rep.plots = map[string][]string{}
	var errs []error
	for _, k := range rep.caseOrder() {
		for _, sk := range seriesKinds {
			var series []plot.Series
			for _, t := range rep.Targets {
				for _, r := range rep.Results {
					if r.Scenario == k[0] && r.Case == k[1] && r.Target == t {
						if s, ok := r.Series[sk.kind]; ok {
							series = append(series, s)
						}
					}
				}
			}
			if len(series) == 0 {
				continue
			}
			name := fmt.Sprintf("%s-%s-%s-%s.svg", base, slug(k[0]), slug(k[1]), sk.kind)
			err := plot.Save(filepath.Join(dir, name), plot.Chart{
				Title: fmt.Sprintf("%s / %s: %s", k[0], k[1], sk.title), XLabel: sk.x, YLabel: sk.y, LogX: sk.logX, Series: series,
			})
			if errors.Is(err, plot.ErrEmpty) {
				continue
			}
			if err != nil {
				errs = append(errs, err)
				continue
			}
			rep.plots[k[0]+"/"+k[1]] = append(rep.plots[k[0]+"/"+k[1]], name)
		}
	}
	return errors.Join(errs...)
}

// caseOrder lists (scenario, case) pairs in the order they ran.
func (rep *report) caseOrder() [][2]string {
	var out [][2]string
	seen := map[[2]string]bool{}
	for _, r := range rep.Results {
		k := [2]string{r.Scenario, r.Case}
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

func slug(s string) string {
	return strings.Trim(strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return '-'
	}, s), "-")
}
