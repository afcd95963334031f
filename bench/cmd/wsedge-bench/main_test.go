package main

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/wsedge/wsedge/bench/internal/report"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMain lets the driver re-execute the test binary as its idle clients
// and as the baseline server, exactly as the real binary re-executes itself.
func TestMain(m *testing.M) {
	if os.Getenv(roleEnv) != "" {
		os.Exit(dispatch())
	}
	os.Exit(m.Run())
}

// TestDriverEndToEnd runs every scenario at toy size against two server
// processes: the baseline role, and the same role started through
// -server-cmd as if it were wsedge, which exercises the ADDR/ADMIN_ADDR path.
func TestDriverEndToEnd(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	jsonPath, mdPath := filepath.Join(dir, "out.json"), filepath.Join(dir, "out.md")
	args := []string{
		"-server-cmd", self, "-server-env", roleEnv + "=baseline",
		"-json", jsonPath, "-md", mdPath, "-log-dir", dir, "-gap", "50ms",
		"-idle-conns", "50", "-idle-per-proc", "20", "-idle-session-size", "10", "-idle-settle", "200ms",
		"-fanout-listeners", "20", "-fanout-broadcasts", "10", "-fanout-rate", "200",
		"-fanout-full-broadcasts", "50", "-storm-conns", "10", "-storm-broadcasts", "5",
		"-presence-members", "5", "-presence-requests", "10",
		"-churn-duration", "300ms", "-churn-workers", "4", "-churn-sources", "4",
	}
	if err := runDriver(context.Background(), args, os.Stdout); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep report.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("JSON report: %v", err)
	}
	want := map[string]map[string]float64{ // scenario → metric → exact value
		"idle":     {"connections": 50, "failed": 0, "closed_by_server": 0},
		"fanout":   {"lost": 0, "out_of_order": 0, "closed_by_server": 0},
		"presence": {"requests": 10, "wrong_count": 0},
		"churn":    {"failed": 0},
	}
	seen := map[string]int{}
	for _, r := range rep.Results {
		if r.Error != "" {
			t.Errorf("%s/%s on %s: %s", r.Scenario, r.Case, r.Target, r.Error)
		}
		if r.Scenario == "idle" && len(r.Notes) > 0 {
			t.Errorf("idle notes: %v", r.Notes)
		}
		seen[r.Target+"/"+r.Scenario]++
		for name, v := range want[r.Scenario] {
			if got, ok := r.Get(name); !ok || got != v {
				t.Errorf("%s/%s on %s: %s = %v (present %v), want %v", r.Scenario, r.Case, r.Target, name, got, ok, v)
			}
		}
	}
	for _, tg := range []string{"wsedge", "baseline"} {
		for sc, n := range map[string]int{"idle": 1, "fanout": 3, "presence": 1, "churn": 1} {
			if seen[tg+"/"+sc] != n {
				t.Errorf("%s/%s: %d results, want %d", tg, sc, seen[tg+"/"+sc], n)
			}
		}
	}
	md, err := os.ReadFile(mdPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"| metric | unit | wsedge | baseline | wsedge / baseline |", "## idle / 50 conns", "rss_per_conn", "deliveries_per_s", "connect_hello_per_s"} {
		if !strings.Contains(string(md), s) {
			t.Errorf("Markdown lacks %q:\n%s", s, md)
		}
	}
	// Every plot kind is drawn, linked from the Markdown, and is an SVG.
	for _, kind := range []string{"latency_cdf", "rss_vs_conns", "deliveries_over_time"} {
		files, _ := filepath.Glob(filepath.Join(dir, "out-*-"+kind+".svg"))
		if len(files) == 0 {
			t.Errorf("no %s plot written in %s", kind, dir)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil || !strings.Contains(string(b), "<svg") {
				t.Errorf("%s: not an SVG (%v)", f, err)
			}
			if !strings.Contains(string(md), "]("+filepath.Base(f)+")") {
				t.Errorf("Markdown does not link %s", filepath.Base(f))
			}
		}
	}
}

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		args      []string
		targets   string
		scenarios string
		members   string
		idle      int
		bad       bool
	}{
		{args: nil, targets: "baseline"},
		{args: []string{"-server-cmd", "bin/wsedge"}, targets: "wsedge,baseline"},
		{args: []string{"-targets", "wsedge"}, bad: true},
		{args: []string{"-scenarios", "idle,nope"}, bad: true},
		{args: []string{"-presence-members", "10,x"}, bad: true},
		{args: []string{"-idle-per-proc", "20000"}, bad: true},
		{args: []string{"stray"}, bad: true},
		{args: []string{"-peers", "-server-cmd", "w"}, bad: true}, // centrifugo without -centrifugo-cmd
		{args: []string{"-peers", "-server-cmd", "w", "-centrifugo-cmd", "c"}, targets: "wsedge,centrifugo,baseline",
			scenarios: "idle,fanout,presence,churn,cross", members: "1000,5000", idle: 19000},
		{args: []string{"-peers", "-quick", "-server-cmd", "w", "-centrifugo-cmd", "c", "-idle-conns", "7"}, targets: "wsedge,centrifugo,baseline",
			scenarios: "idle,fanout,presence,churn,cross", members: "100,500", idle: 7},
		{args: []string{"-peers", "-server-cmd", "w", "-centrifugo-cmd", "c", "-targets", "wsedge,centrifugo"}, targets: "wsedge,centrifugo",
			scenarios: "idle,fanout,presence,churn,cross", members: "1000,5000", idle: 19000},
		{args: []string{"-scenarios", "cross", "-cross-listeners", "2", "-cross-instances", "3"}, bad: true},
	} {
		c, err := parseFlags(tc.args)
		if (err != nil) != tc.bad {
			t.Errorf("parseFlags(%q): err %v, want bad=%v", tc.args, err, tc.bad)
			continue
		}
		if tc.bad {
			continue
		}
		if strings.Join(c.targets, ",") != tc.targets {
			t.Errorf("parseFlags(%q): targets %v, want %s", tc.args, c.targets, tc.targets)
		}
		if tc.scenarios != "" && strings.Join(c.scenarios, ",") != tc.scenarios {
			t.Errorf("parseFlags(%q): scenarios %v, want %s", tc.args, c.scenarios, tc.scenarios)
		}
		if tc.members != "" && fmt.Sprint(c.presenceMembers) != "["+strings.ReplaceAll(tc.members, ",", " ")+"]" {
			t.Errorf("parseFlags(%q): presence members %v, want %s", tc.args, c.presenceMembers, tc.members)
		}
		if tc.idle != 0 && c.idleConns != tc.idle {
			t.Errorf("parseFlags(%q): idle conns %d, want %d", tc.args, c.idleConns, tc.idle)
		}
	}
}

func TestPresenceHead(t *testing.T) {
	for _, tc := range []struct {
		in    string
		count int
		ok    bool
		bad   bool
	}{
		{`{"type":"presence","session_id":"11","count":2,"by_type":{"web":1},"members":[]}`, 2, true, false},
		{`{"type":"presence","count":5000}`, 5000, true, false},
		{`{"type":"session_message","msg":"x"}`, 0, false, false},
		{`{"type":"presence","session_id":"11"}`, 0, true, true},
		{`{"type":"presence","count":x,`, 0, true, true},
	} {
		n, ok, err := presenceHead([]byte(tc.in))
		if n != tc.count || ok != tc.ok || (err != nil) != tc.bad {
			t.Errorf("presenceHead(%s) = %d, %v, %v", tc.in, n, ok, err)
		}
	}
}
