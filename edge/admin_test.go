package edge

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsedge/wsedge/internal/version"
)

// The admin listener exposes the edge's series with Prometheus names, and the
// hot-path counters kept per loop reach them after a sweep.
func TestAdminMetrics(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	admin, err := ListenAdmin("127.0.0.1:0", ts.reg, ts.srv.log)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	a, _ := ts.session(t, "m", "admin", "web")
	a.send(`{"type":"broadcast","msg":1}`)
	a.expectType("session_message")
	c, _ := ts.session(t, "m", "", "")
	c.send(`{"type":"nope"}`)
	c.expectError("hello_required")
	c.expectClose(4001)
	ts.http(t, "GET", "/health/", nil)

	want := []string{
		`wsedge_connections{route="session"} 1`,
		`wsedge_websocket_connects_total{route="session"} 2`,
		`wsedge_websocket_closes_total{code="4001",route="session"} 1`,
		`wsedge_broadcasts_total 1`,
		`wsedge_broadcast_deliveries_total 1`,
		`wsedge_fanout_latency_seconds_count 1`,
		`wsedge_http_requests_total{code="200",route="health"} 1`,
		`wsedge_frames_received_total`,
		`wsedge_frames_sent_total`,
		`wsedge_received_bytes_total`,
		`wsedge_sent_bytes_total`,
		`wsedge_slow_consumer_closes_total`,
		`wsedge_presence_query_seconds_count`,
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get("http://" + admin.Addr() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var missing []string
		for _, w := range want {
			if !strings.Contains(string(body), w) {
				missing = append(missing, w)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("missing from /metrics: %v", missing)
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := http.Get("http://" + admin.Addr() + "/debug/pprof/")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("pprof: %v %v", err, resp)
	}
	resp.Body.Close()
}

// The admin root lists its endpoints, each listed endpoint answers, and
// wsedge_build_info carries the build's identity.
func TestAdminIndexAndBuildInfo(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	v := version.Info{Version: "v9.9.9", Revision: "abc123", GoVersion: "go1.26.8"}
	reg.MustRegister(NewBuildInfo(v))
	admin, err := ListenAdmin("127.0.0.1:0", reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + admin.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, index := get("/")
	if code != 200 {
		t.Fatalf("GET / = %d", code)
	}
	for _, e := range adminEndpoints {
		if !strings.Contains(index, e.path) {
			t.Errorf("index does not list %s:\n%s", e.path, index)
		}
		if code, _ := get(e.path); code != 200 {
			t.Errorf("GET %s = %d", e.path, code)
		}
	}
	_, metrics := get("/metrics")
	want := `wsedge_build_info{goversion="go1.26.8",revision="abc123",version="v9.9.9"} 1`
	if !strings.Contains(metrics, want) {
		t.Errorf("/metrics lacks %s", want)
	}
	if code, _ := get("/nope"); code != 404 {
		t.Errorf("GET /nope = %d, want 404", code)
	}
}
