package ops

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/wsedge/wsedge/internal/testenv"
)

// Labels Prometheus adds at scrape time; no server exports them.
var targetLabels = map[string]bool{"instance": true, "job": true}

// grafanaVars stand in for the dashboard's variables so that PromQL parses.
var grafanaVars = strings.NewReplacer(
	"$__rate_interval", "5m", "${__rate_interval}", "5m", "$__interval", "1m", "$__range", "1h",
	"${quantile}", "0.99", "$quantile", "0.99", "${instance}", ".*", "$instance", ".*",
)

type dashboard struct {
	Title      string  `json:"title"`
	UID        string  `json:"uid"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	Type    string  `json:"type"`
	Title   string  `json:"title"`
	Panels  []panel `json:"panels"` // collapsed rows hold their panels
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "charts", "wsedge", "dashboards", "wsedge.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	return d
}

// scrape returns the metric families the server exports, by name.
func scrape(t *testing.T, s *server) map[string]*familyInfo {
	t.Helper()
	code, _, body := get(t, "http://"+s.AdminAddr+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	out := map[string]*familyInfo{}
	for name, f := range fams {
		fi := &familyInfo{kind: f.GetType().String(), labels: map[string]bool{}}
		for _, m := range f.Metric {
			for _, l := range m.Label {
				fi.labels[l.GetName()] = true
			}
		}
		out[name] = fi
	}
	return out
}

type familyInfo struct {
	kind   string
	labels map[string]bool
}

// lookup resolves a series name (a histogram's _bucket, _sum, _count) to
// its family.
func lookup(fams map[string]*familyInfo, name string) (*familyInfo, string, bool) {
	if f, ok := fams[name]; ok {
		return f, "", true
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if f, ok := fams[strings.TrimSuffix(name, suf)]; ok && strings.HasSuffix(name, suf) && (f.kind == "HISTOGRAM" || f.kind == "SUMMARY") {
			return f, suf, true
		}
	}
	return nil, "", false
}

// TestDashboard parses every panel's PromQL, and every alert of the chart's
// PrometheusRule, and checks each metric and label they name against what a
// running server (Redis and chat on, after traffic and a few provoked
// failures) really exports, so neither can drift from the code.
func TestDashboard(t *testing.T) {
	d := loadDashboard(t)
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
	}
	for name, typ := range map[string]string{"datasource": "datasource", "instance": "query", "quantile": "custom"} {
		if vars[name] != typ {
			t.Errorf("dashboard variable %q: type %q, want %q", name, vars[name], typ)
		}
	}
	rows := map[string]bool{}
	var exprs []string
	var walk func(ps []panel, row string)
	walk = func(ps []panel, row string) {
		for _, p := range ps {
			if p.Type == "row" {
				rows[p.Title] = true
				row = p.Title
				walk(p.Panels, row)
				continue
			}
			if p.Type != "text" && len(p.Targets) == 0 {
				t.Errorf("panel %q (%s) has no query", p.Title, row)
			}
			for _, tg := range p.Targets {
				exprs = append(exprs, tg.Expr)
			}
		}
	}
	walk(d.Panels, "")
	exprs = append(exprs, alertExprs(t)...)
	for _, r := range []string{"Traffic", "Fan-out", "Presence", "Redis", "Chat", "Drain and rebalance", "Go runtime and process"} {
		if !rows[r] {
			t.Errorf("dashboard has no row %q", r)
		}
	}

	// Parse first: a syntax error needs no server to be reported.
	type use struct {
		expr   string
		name   string
		labels []string
	}
	var uses []use
	p := parser.NewParser(parser.Options{})
	for _, e := range append(exprs, "wsedge_connections") { // the instance variable's label_values()
		q := grafanaVars.Replace(e)
		ast, err := p.ParseExpr(q)
		if err != nil {
			t.Errorf("PromQL %q: %v", e, err)
			continue
		}
		parser.Inspect(ast, func(n parser.Node, _ []parser.Node) error {
			vs, ok := n.(*parser.VectorSelector)
			if !ok {
				return nil
			}
			u := use{expr: e, name: vs.Name}
			for _, m := range vs.LabelMatchers {
				if m.Name != model.MetricNameLabel {
					u.labels = append(u.labels, m.Name)
				}
			}
			uses = append(uses, u)
			return nil
		})
	}
	if len(uses) < 40 {
		t.Fatalf("only %d selectors found in %d queries", len(uses), len(exprs))
	}
	if t.Failed() {
		return
	}

	r := testenv.StartRedis(t)
	s := startServer(t, map[string]string{
		"REDIS_URL": r.URL(), "REDIS_TIMEOUT": "500ms",
		// One worker and one queue place: the third concurrent turn is refused
		// (busy); a slow model and a short turn deadline make upstream errors.
		"CHAT_WORKERS": "1", "CHAT_QUEUE": "1", "CHAT_TURN_TIMEOUT": "1s", "LOCAL_MODEL_DELAY": "100ms",
	})
	traffic(t, s, r)
	var fams map[string]*familyInfo
	missing := func() []string {
		fams = scrape(t, s)
		var out []string
		for _, u := range uses {
			if _, _, ok := lookup(fams, u.name); !ok {
				out = append(out, u.name)
			}
		}
		sort.Strings(out)
		return slices.Compact(out)
	}
	// Failure counters appear when the failure is counted, which can trail
	// the client's view by a Redis timeout.
	deadline := time.Now().Add(30 * time.Second)
	for m := missing(); len(m) > 0; m = missing() {
		if time.Now().After(deadline) {
			t.Fatalf("metrics the dashboard uses but the server does not export: %v", m)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, u := range uses {
		f, suffix, _ := lookup(fams, u.name)
		for _, l := range u.labels {
			if targetLabels[l] || (l == "le" && suffix == "_bucket") || f.labels[l] {
				continue
			}
			t.Errorf("%s has no label %q (has %v); query: %s", u.name, l, f.labels, u.expr)
		}
	}
}

// traffic makes every labelled family have a series: sessions open and
// close, broadcasts, presence, chat turns (completed, refused, timed out),
// HTTP requests, and Redis failures (the server is killed at the end).
func traffic(t *testing.T, s *server, r *testenv.Redis) {
	t.Helper()
	a := dialWS(t, s, "/ws/session/dash/")
	a.until("connected")
	a.send(`{"type":"hello","user_type":"admin","client_type":"web"}`)
	a.send(`{"type":"presence"}`)
	a.until("presence")
	a.send(`{"type":"broadcast","msg":"x"}`)
	a.until("session_message")
	c := dialWS(t, s, "/ws/session/dash/")
	c.until("connected")
	c.send(`{"type":"broadcast"}`)
	c.closeCode()
	get(t, s.HTTP("/health/"))
	post(t, s, "/api/thread/history", `{"thread_id":"dash"}`)

	// Three turns at once on one worker and one queue place: one runs, one
	// waits, one is refused; the two admitted ones hit the 1 s deadline.
	var chats []*wsConn
	for i := range 3 {
		ch := dialWS(t, s, "/ws/chat/")
		ch.send(fmt.Sprintf(`{"type":"chat","message":"turn %d","thread_id":"dash-%d"}`, i, i))
		chats = append(chats, ch)
	}
	busy := 0
	for _, ch := range chats {
		_, m, err := ch.next()
		if err != nil {
			t.Fatal(err)
		}
		switch m["type"] {
		case "session_started":
			ch.until("end")
		case "error":
			busy++
		}
	}
	if busy != 1 {
		t.Errorf("%d turns refused busy, want 1", busy)
	}

	// Redis gone: a presence query fails (command error) and a broadcast is
	// dropped.
	r.Kill()
	a.send(`{"type":"presence"}`)
	a.until("error")
	a.send(`{"type":"broadcast","msg":"lost"}`)
}

// alertExprs reads the expressions of the chart's PrometheusRule template.
// Its template actions stand for a pod selector and numeric thresholds; they
// are replaced by a target label and a number so that the PromQL parses.
func alertExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "charts", "wsedge", "templates", "prometheusrule.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	lines := strings.Split(string(b), "\n")
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSpace(lines[i])
		if !strings.HasPrefix(line, "expr:") {
			continue
		}
		e := strings.TrimSpace(strings.TrimPrefix(line, "expr:"))
		if e == "|" { // a block: the more-indented lines that follow
			indent := len(lines[i]) - len(strings.TrimLeft(lines[i], " "))
			var parts []string
			for i+1 < len(lines) && len(lines[i+1])-len(strings.TrimLeft(lines[i+1], " ")) > indent {
				i++
				parts = append(parts, strings.TrimSpace(lines[i]))
			}
			e = strings.Join(parts, " ")
		}
		e = strings.ReplaceAll(e, "{{- $sel -}}", `instance="x"`)
		e = alertTemplateAction.ReplaceAllString(e, "1")
		out = append(out, e)
	}
	if len(out) < 5 {
		t.Fatalf("only %d alert expressions found in the chart's PrometheusRule", len(out))
	}
	return out
}

var alertTemplateAction = regexp.MustCompile(`\{\{[^}]*\}\}`)
