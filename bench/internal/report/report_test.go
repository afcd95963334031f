package report

import (
	"strings"
	"testing"
)

func TestPercentile(t *testing.T) {
	for _, tc := range []struct {
		in   []int64
		p    float64
		want int64
	}{
		{nil, 0.5, 0},
		{[]int64{7}, 0.99, 7},
		{[]int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0.5, 5},
		{[]int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0.99, 9},
		{[]int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 1, 10},
		{[]int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0, 1},
	} {
		if got := Percentile(tc.in, tc.p); got != tc.want {
			t.Errorf("Percentile(%v, %g) = %d, want %d", tc.in, tc.p, got, tc.want)
		}
	}
}

func TestRatio(t *testing.T) {
	a := &Result{Metrics: []Metric{{Name: "x", Value: 1}, {Name: "z", Value: 3}}}
	b := &Result{Metrics: []Metric{{Name: "x", Value: 4}, {Name: "z", Value: 0}}}
	for _, tc := range []struct {
		a, b *Result
		name string
		want string
	}{
		{a, b, "x", "0.25×"},
		{b, a, "x", "4.00×"},
		{a, b, "z", "–"}, // division by zero
		{a, b, "y", "–"}, // missing
		{a, nil, "x", "–"},
	} {
		if got := Ratio(tc.a, tc.b, tc.name); got != tc.want {
			t.Errorf("Ratio(%s) = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestMarkdownRatioPerPeer: the first target is the subject; every other
// target gets a ratio column, and a metric missing on one side prints "–".
func TestMarkdownRatioPerPeer(t *testing.T) {
	rep := &Report{Title: "peers", Targets: []string{"wsedge", "centrifugo", "baseline"}}
	for _, r := range []struct {
		target string
		v      float64
	}{{"wsedge", 10}, {"centrifugo", 40}, {"baseline", 20}} {
		res := Result{Target: r.target, Scenario: "idle", Case: "3 conns", Params: map[string]any{"conns": 3}}
		res.Add("rss_per_conn", "bytes", r.v)
		if r.target != "baseline" {
			res.Add("only_two", "", 1)
		}
		rep.Results = append(rep.Results, res)
	}
	var b strings.Builder
	if err := rep.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"# peers\n",
		"| metric | unit | wsedge | centrifugo | baseline | wsedge / centrifugo | wsedge / baseline |",
		"| rss_per_conn | bytes | 10 | 40 | 20 | 0.25× | 0.50× |",
		"| only_two |  | 1 | 1 | – | 1.00× | – |",
		"Parameters: conns=3",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestFmtNum(t *testing.T) {
	for v, want := range map[float64]string{3: "3", 1234.56: "1235", 12.345: "12.35", 0.01234: "0.0123", -5: "-5"} {
		if got := FmtNum(v); got != want {
			t.Errorf("FmtNum(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		xs   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{43.8, 26.9, 35.9, 26.8}, (26.9 + 35.9) / 2},
	} {
		if got := Median(tc.xs); got != tc.want {
			t.Errorf("Median(%v) = %v, want %v", tc.xs, got, tc.want)
		}
	}
}
