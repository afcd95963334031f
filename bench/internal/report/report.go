// Package report holds what a benchmark run measured (results of scenario
// cases against targets), writes it as JSON and as Markdown tables with a
// ratio column per peer, and draws its plots (bench/plot).
package report

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/wsedge/wsedge/bench/plot"
)

// metric is one measured number. Lower is better unless higherBetter.
type Metric struct {
	Name  string  `json:"name"`
	Unit  string  `json:"unit"`
	Value float64 `json:"value"`
}

// result is one scenario case run against one target.
type Result struct {
	Target   string         `json:"target"`
	Scenario string         `json:"scenario"`
	Case     string         `json:"case"`
	Params   map[string]any `json:"params"`
	Metrics  []Metric       `json:"metrics"`
	Notes    []string       `json:"notes,omitempty"`
	Error    string         `json:"error,omitempty"`
	// Series are raw curves for the plots (latency_cdf, rss_vs_conns,
	// deliveries_over_time), keyed by kind.
	Series map[string]plot.Series `json:"series,omitempty"`
}

func (r *Result) Add(name, unit string, v float64) {
	r.Metrics = append(r.Metrics, Metric{Name: name, Unit: unit, Value: v})
}

func (r *Result) Get(name string) (float64, bool) {
	for _, m := range r.Metrics {
		if m.Name == name {
			return m.Value, true
		}
	}
	return 0, false
}

type Machine struct {
	CPUs      int    `json:"cpus"`
	GoVersion string `json:"go_version"`
	Kernel    string `json:"kernel"`
	NoFile    string `json:"nofile_limit"`
	// Load averages at the start and end of the run: other work on the
	// machine shares the cores and moves every number.
	LoadStart string `json:"loadavg_start"`
	LoadEnd   string `json:"loadavg_end,omitempty"`
}

func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

type Report struct {
	// Title heads the Markdown (default "wsedge benchmark").
	Title       string    `json:"title,omitempty"`
	GeneratedAt time.Time `json:"generated_at"`
	Command     string    `json:"command"`
	Machine     Machine   `json:"machine"`
	Targets     []string  `json:"targets"`
	// Versions and Settings say exactly what ran (e.g. "centrifugo" →
	// its version line, "centrifugo config" → its configuration).
	Versions map[string]string `json:"versions,omitempty"`
	Settings map[string]string `json:"settings,omitempty"`
	Results  []Result          `json:"results"`
	// plots are the SVG files written next to the Markdown, by
	// "scenario/case"; WriteMarkdown links them.
	plots map[string][]string
}

func (rep *Report) title() string {
	if rep.Title == "" {
		return "wsedge benchmark"
	}
	return rep.Title
}

// DescribeMachine records the CPUs, Go, kernel, open-file limit and load.
func DescribeMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), LoadStart: LoadAvg()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/self/limits"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "Max open files") {
				m.NoFile = strings.Join(strings.Fields(l)[3:5], "/")
			}
		}
	}
	return m
}

func (rep *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// WriteMarkdown prints one table per scenario case: a column per target and,
// per peer (every target after the first), the first target's value divided
// by the peer's.
func (rep *Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n\n", rep.title())
	fmt.Fprintf(&b, "- generated: %s\n- machine: %d CPUs, %s, kernel %s, open files %s\n- command: `%s`\n",
		rep.GeneratedAt.UTC().Format(time.RFC3339), rep.Machine.CPUs, rep.Machine.GoVersion,
		rep.Machine.Kernel, rep.Machine.NoFile, rep.Command)
	fmt.Fprintf(&b, "- load average (1/5/15 min) at start: %s, at end: %s\n", rep.Machine.LoadStart, rep.Machine.LoadEnd)
	fmt.Fprintf(&b, "- client and server share the machine; the server process is started by the driver.\n")
	for _, k := range slices.Sorted(maps.Keys(rep.Versions)) {
		fmt.Fprintf(&b, "- version of %s: `%s`\n", k, rep.Versions[k])
	}
	for _, k := range slices.Sorted(maps.Keys(rep.Settings)) {
		fmt.Fprintf(&b, "- %s: `%s`\n", k, rep.Settings[k])
	}

	type key struct{ scenario, cas string }
	var order []key
	byKey := map[key]map[string]*Result{}
	for i := range rep.Results {
		r := &rep.Results[i]
		k := key{r.Scenario, r.Case}
		if byKey[k] == nil {
			byKey[k] = map[string]*Result{}
			order = append(order, k)
		}
		byKey[k][r.Target] = r
	}
	var subject string
	var peers []string
	if len(rep.Targets) > 0 {
		subject, peers = rep.Targets[0], rep.Targets[1:]
	}
	for _, k := range order {
		rs := byKey[k]
		fmt.Fprintf(&b, "\n## %s / %s\n\n", k.scenario, k.cas)
		var first *Result
		for _, t := range rep.Targets {
			if r := rs[t]; r != nil && first == nil {
				first = r
			}
		}
		if first == nil {
			continue
		}
		keys := make([]string, 0, len(first.Params))
		for p := range first.Params {
			keys = append(keys, p)
		}
		slices.Sort(keys)
		var ps []string
		for _, p := range keys {
			ps = append(ps, fmt.Sprintf("%s=%v", p, first.Params[p]))
		}
		fmt.Fprintf(&b, "Parameters: %s\n\n", strings.Join(ps, ", "))
		b.WriteString("| metric | unit |")
		for _, t := range rep.Targets {
			fmt.Fprintf(&b, " %s |", t)
		}
		for _, p := range peers {
			fmt.Fprintf(&b, " %s / %s |", subject, p)
		}
		b.WriteString("\n|---|---|")
		for range rep.Targets {
			b.WriteString("---:|")
		}
		for range peers {
			b.WriteString("---:|")
		}
		b.WriteString("\n")
		var names []Metric
		for _, t := range rep.Targets {
			if r := rs[t]; r != nil {
				for _, m := range r.Metrics {
					if !slices.ContainsFunc(names, func(x Metric) bool { return x.Name == m.Name }) {
						names = append(names, m)
					}
				}
			}
		}
		for _, n := range names {
			fmt.Fprintf(&b, "| %s | %s |", n.Name, n.Unit)
			for _, t := range rep.Targets {
				v, ok := 0.0, false
				if r := rs[t]; r != nil {
					v, ok = r.Get(n.Name)
				}
				if ok {
					fmt.Fprintf(&b, " %s |", FmtNum(v))
				} else {
					b.WriteString(" – |")
				}
			}
			for _, p := range peers {
				b.WriteString(" " + Ratio(rs[subject], rs[p], n.Name) + " |")
			}
			b.WriteString("\n")
		}
		for _, name := range rep.plots[k.scenario+"/"+k.cas] {
			fmt.Fprintf(&b, "\n![%s](%s)\n", strings.TrimSuffix(name, ".svg"), name)
		}
		for _, t := range rep.Targets {
			if r := rs[t]; r != nil {
				if r.Error != "" {
					fmt.Fprintf(&b, "\n**%s failed:** %s\n", t, r.Error)
				}
				for _, n := range r.Notes {
					fmt.Fprintf(&b, "\n- %s: %s", t, n)
				}
			}
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Ratio formats a's value of metric name divided by b's ("0.42×"), or "–"
// when either lacks it or b's is 0.
func Ratio(a, b *Result, name string) string {
	x, okx := lookup(a, name)
	y, oky := lookup(b, name)
	if !okx || !oky || y == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", x/y)
}

func lookup(r *Result, name string) (float64, bool) {
	if r == nil {
		return 0, false
	}
	return r.Get(name)
}

// FmtNum prints a metric value: integers whole, others to 3 significant
// digits or 2 decimals.
func FmtNum(v float64) string {
	switch {
	case v == float64(int64(v)) && v < 1e15 && v > -1e15:
		return fmt.Sprintf("%d", int64(v))
	case v >= 100 || v <= -100:
		return fmt.Sprintf("%.0f", v)
	case v >= 1 || v <= -1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

// Percentile is the nearest-rank-below value at fraction p (0..1) of an
// ascending slice: index floor(p·(n−1)). It is 0 for an empty slice.
func Percentile[T int64 | float64](sorted []T, p float64) T {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(p*float64(len(sorted)-1))]
}

// Median is the middle value of xs (the mean of the two middle ones for an
// even count); xs is not modified. It is 0 for an empty slice.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Latencies are durations in nanoseconds.
type Latencies []int64

// AddTo sorts l and adds prefix+latency_p50/p99/max (ms) and its CDF to r.
func (l Latencies) AddTo(r *Result, prefix string) {
	if len(l) == 0 {
		return
	}
	slices.Sort(l)
	q := func(p float64) float64 { return float64(Percentile(l, p)) / 1e6 }
	r.Add(prefix+"latency_p50", "ms", q(0.50))
	r.Add(prefix+"latency_p99", "ms", q(0.99))
	r.Add(prefix+"latency_max", "ms", float64(l[len(l)-1])/1e6)
	ms := make([]float64, len(l))
	for i, v := range l {
		ms[i] = float64(v) / 1e6
	}
	r.AddSeries("latency_cdf", plot.CDF(r.Target, ms, 300))
}

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

// AddSeries keeps a raw series (for the JSON and the plots) under kind.
func (r *Result) AddSeries(kind string, s plot.Series) {
	if len(s.X) == 0 {
		return
	}
	if r.Series == nil {
		r.Series = map[string]plot.Series{}
	}
	s.Name = r.Target
	r.Series[kind] = s
}

// WritePlots draws an SVG per scenario case and series kind next to the
// Markdown at mdPath (prefix-scenario-case-kind.svg) and records their names
// for WriteMarkdown.
func (rep *Report) WritePlots(mdPath string) error {
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
func (rep *Report) caseOrder() [][2]string {
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
