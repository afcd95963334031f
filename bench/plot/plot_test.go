package plot

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCDF(t *testing.T) {
	tests := []struct {
		name    string
		samples []float64
		points  int
		wantX   []float64
		wantY   []float64
	}{
		{"empty", nil, 10, nil, nil},
		{"four", []float64{4, 1, 3, 2}, 10, []float64{1, 2, 3, 4}, []float64{.25, .5, .75, 1}},
		{"downsampled", []float64{1, 2, 3, 4, 5}, 2, []float64{2, 4, 5}, []float64{.4, .8, 1}},
	}
	for _, tt := range tests {
		s := CDF(tt.name, tt.samples, tt.points)
		if !equal(s.X, tt.wantX) || !equal(s.Y, tt.wantY) {
			t.Errorf("%s: CDF = %v %v, want %v %v", tt.name, s.X, s.Y, tt.wantX, tt.wantY)
		}
	}
}

func equal(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSave(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.svg")
	err := Save(path, Chart{Title: "latency", XLabel: "ms", YLabel: "fraction", LogX: true, Series: []Series{
		CDF("a", []float64{0.1, 0.5, 2, 10}, 100),
		{Name: "b", X: []float64{0, 1, 2}, Y: []float64{0, .5, 1}}, // 0 dropped on a log axis
	}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "<svg") || !strings.Contains(string(b), "latency") {
		t.Errorf("not an SVG with the title: %.200s", b)
	}
	if err := Save(filepath.Join(dir, "e.svg"), Chart{Series: []Series{{Name: "e"}}}); !errors.Is(err, ErrEmpty) {
		t.Errorf("empty chart: %v, want ErrEmpty", err)
	}
	if err := Save(filepath.Join(dir, "m.svg"), Chart{Series: []Series{{Name: "m", X: []float64{1}}}}); err == nil {
		t.Error("mismatched series: no error")
	}
}
