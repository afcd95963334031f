package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/wsedge/wsedge/bench/plot"
)

// metric is one measured number. Lower is better unless higherBetter.
type metric struct {
	Name  string  `json:"name"`
	Unit  string  `json:"unit"`
	Value float64 `json:"value"`
}

// result is one scenario case run against one target.
type result struct {
	Target   string         `json:"target"`
	Scenario string         `json:"scenario"`
	Case     string         `json:"case"`
	Params   map[string]any `json:"params"`
	Metrics  []metric       `json:"metrics"`
	Notes    []string       `json:"notes,omitempty"`
	Error    string         `json:"error,omitempty"`
	// Series are raw curves for the plots (latency_cdf, rss_vs_conns,
	// deliveries_over_time), keyed by kind.
	Series map[string]plot.Series `json:"series,omitempty"`
}

func (r *result) add(name, unit string, v float64) {
	r.Metrics = append(r.Metrics, metric{Name: name, Unit: unit, Value: v})
}

func (r *result) get(name string) (float64, bool) {
	for _, m := range r.Metrics {
		if m.Name == name {
			return m.Value, true
		}
	}
	return 0, false
}

type machine struct {
	CPUs      int    `json:"cpus"`
	GoVersion string `json:"go_version"`
	Kernel    string `json:"kernel"`
	NoFile    string `json:"nofile_limit"`
	// Load averages at the start and end of the run: other work on the
	// machine shares the cores and moves every number.
	LoadStart string `json:"loadavg_start"`
	LoadEnd   string `json:"loadavg_end,omitempty"`
}

func loadavg() string {
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

type report struct {
	GeneratedAt time.Time `json:"generated_at"`
	Command     string    `json:"command"`
	Machine     machine   `json:"machine"`
	Targets     []string  `json:"targets"`
	Results     []result  `json:"results"`
	// plots are the SVG files written next to the Markdown, by
	// "scenario/case"; writeMarkdown links them.
	plots map[string][]string
}

func describeMachine() machine {
	m := machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), LoadStart: loadavg()}
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

func (rep *report) writeJSON(path string) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// writeMarkdown prints one table per scenario case: a column per target and,
// when both wsedge and baseline ran, their ratio.
func (rep *report) writeMarkdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# wsedge benchmark\n\n")
	fmt.Fprintf(&b, "- generated: %s\n- machine: %d CPUs, %s, kernel %s, open files %s\n- command: `%s`\n",
		rep.GeneratedAt.UTC().Format(time.RFC3339), rep.Machine.CPUs, rep.Machine.GoVersion,
		rep.Machine.Kernel, rep.Machine.NoFile, rep.Command)
	fmt.Fprintf(&b, "- load average (1/5/15 min) at start: %s, at end: %s\n", rep.Machine.LoadStart, rep.Machine.LoadEnd)
	fmt.Fprintf(&b, "- client and server share the machine; the server process is started by the driver.\n")

	type key struct{ scenario, cas string }
	var order []key
	byKey := map[key]map[string]*result{}
	for i := range rep.Results {
		r := &rep.Results[i]
		k := key{r.Scenario, r.Case}
		if byKey[k] == nil {
			byKey[k] = map[string]*result{}
			order = append(order, k)
		}
		byKey[k][r.Target] = r
	}
	ratio := slices.Contains(rep.Targets, "wsedge") && slices.Contains(rep.Targets, "baseline")
	for _, k := range order {
		rs := byKey[k]
		fmt.Fprintf(&b, "\n## %s / %s\n\n", k.scenario, k.cas)
		var first *result
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
		if ratio {
			b.WriteString(" wsedge / baseline |")
		}
		b.WriteString("\n|---|---|")
		for range rep.Targets {
			b.WriteString("---:|")
		}
		if ratio {
			b.WriteString("---:|")
		}
		b.WriteString("\n")
		var names []metric
		for _, t := range rep.Targets {
			if r := rs[t]; r != nil {
				for _, m := range r.Metrics {
					if !slices.ContainsFunc(names, func(x metric) bool { return x.Name == m.Name }) {
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
					v, ok = r.get(n.Name)
				}
				if ok {
					fmt.Fprintf(&b, " %s |", fmtNum(v))
				} else {
					b.WriteString(" – |")
				}
			}
			if ratio {
				w, okw := lookup(rs["wsedge"], n.Name)
				bl, okb := lookup(rs["baseline"], n.Name)
				if okw && okb && bl != 0 {
					fmt.Fprintf(&b, " %.2f× |", w/bl)
				} else {
					b.WriteString(" – |")
				}
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

func lookup(r *result, name string) (float64, bool) {
	if r == nil {
		return 0, false
	}
	return r.get(name)
}

func fmtNum(v float64) string {
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

// latencies summarises durations in nanoseconds.
type latencies []int64

func (l latencies) addTo(r *result, prefix string) {
	if len(l) == 0 {
		return
	}
	slices.Sort(l)
	q := func(p float64) float64 {
		i := int(p * float64(len(l)-1))
		return float64(l[i]) / 1e6
	}
	r.add(prefix+"latency_p50", "ms", q(0.50))
	r.add(prefix+"latency_p99", "ms", q(0.99))
	r.add(prefix+"latency_max", "ms", float64(l[len(l)-1])/1e6)
	ms := make([]float64, len(l))
	for i, v := range l {
		ms[i] = float64(v) / 1e6
	}
	r.addSeries("latency_cdf", plot.CDF(r.Target, ms, 300))
}
