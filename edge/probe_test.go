package edge

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wsedge/wsedge/internal/testenv"
)

// probeReq sends one request on its own TCP connection with lower-case header
// names (as any client may) and Connection: close, so that no idle keep-alive
// socket is left to count against MaxConnections.
func probeReq(t *testing.T, addr, method, path string) (int, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, method+" "+path+" HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

type probeWant struct {
	path   string
	status int
	body   string // substring
}

func checkProbes(t *testing.T, ts *testServer, wants ...probeWant) {
	t.Helper()
	for _, w := range wants {
		// Closing sockets are counted until the loop has processed the close.
		var code int
		var body string
		testenv.WaitFor(t, w.path+" "+w.body, 5*time.Second, func() bool {
			code, body = probeReq(t, ts.addr, "GET", w.path)
			return code == w.status && strings.Contains(body, w.body)
		})
	}
}

// /ready/ fails when the pod is full or draining, while /live/ stays 200 and
// sessions already open keep working; the pod still takes sockets above the
// readiness threshold (only MaxConnections refuses them).
func TestProbes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		cfg   func(*Config)
		socks int // session sockets opened before the checks
		want  []probeWant
	}{
		{"empty", nil, 0, []probeWant{
			{"/ready/", 200, `"ok"`}, {"/ready", 200, `"ok"`}, {"/live/", 200, `"ok"`}, {"/health/", 200, `"ok"`},
		}},
		{"below READY_MAX_CONNECTIONS", func(c *Config) { c.ReadyMaxConnections = 3 }, 2, []probeWant{
			{"/ready/", 200, `"ok"`},
		}},
		{"at READY_MAX_CONNECTIONS", func(c *Config) { c.ReadyMaxConnections = 2 }, 2, []probeWant{
			{"/ready/", 503, `{"status":"full","websockets":2}`}, {"/live/", 200, `"ok"`}, {"/health/", 200, `"ok"`},
		}},
		// Two sockets plus the probe's own connection reach MAX_CONNECTIONS=3:
		// the next socket would be refused.
		{"at MAX_CONNECTIONS", func(c *Config) { c.MaxConnections = 3 }, 2, []probeWant{
			{"/ready/", 503, `"full"`}, {"/live/", 200, `"ok"`},
		}},
		{"below MAX_CONNECTIONS", func(c *Config) { c.MaxConnections = 4 }, 2, []probeWant{
			{"/ready/", 200, `"ok"`},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts := startServer(t, tc.cfg)
			var socks []*wsClient
			for range tc.socks {
				c, _ := ts.session(t, "p", "agent", "web")
				socks = append(socks, c)
			}
			checkProbes(t, ts, tc.want...)
			for _, c := range socks { // the full pod keeps serving its sockets
				c.send(`{"type":"broadcast","msg":"still here"}`)
			}
			for _, c := range socks {
				for range socks {
					c.expectType("session_message")
				}
			}
			if len(socks) > 0 && tc.want[0].status == 503 {
				// One socket leaves: ready again.
				socks[0].conn.Close()
				checkProbes(t, ts, probeWant{"/ready/", 200, `"ok"`})
			}
		})
	}
}

// Above READY_MAX_CONNECTIONS the pod is not ready but still accepts sockets
// (the Service may still route a few while the endpoint update propagates).
func TestReadyFullStillAccepts(t *testing.T) {
	t.Parallel()
	ts := startServer(t, func(c *Config) { c.ReadyMaxConnections = 1 })
	ts.session(t, "q", "agent", "web")
	checkProbes(t, ts, probeWant{"/ready/", 503, `"full"`})
	ts.session(t, "q", "admin", "web")
	checkProbes(t, ts, probeWant{"/ready/", 503, `"websockets":2`})
}

// While draining, /ready/ and /health/ fail (traffic moves away) but /live/
// stays 200 so the kubelet does not kill the pod mid-drain.
func TestProbesWhileDraining(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	a, _ := ts.session(t, "d", "agent", "web")
	ts.srv.BeginDrain()
	checkProbes(t, ts,
		probeWant{"/ready/", 503, `"draining"`}, probeWant{"/health/", 503, `"draining"`}, probeWant{"/live/", 200, `"ok"`})
	a.send(`{"type":"broadcast","msg":1}`)
	a.expectType("session_message")
	if v := gaugeValue(t, ts, "wsedge_draining"); v != 1 {
		t.Errorf("wsedge_draining = %v, want 1", v)
	}
}

func gaugeValue(t *testing.T, ts *testServer, name string) float64 {
	t.Helper()
	mfs, err := ts.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no %s", name)
	return 0
}

func TestProbeGauges(t *testing.T) {
	t.Parallel()
	ts := startServer(t, func(c *Config) { c.MaxConnections, c.ReadyMaxConnections = 500, 400 })
	for name, want := range map[string]float64{"wsedge_draining": 0, "wsedge_max_connections": 500, "wsedge_ready_max_connections": 400} {
		if v := gaugeValue(t, ts, name); v != want {
			t.Errorf("%s = %v, want %v", name, v, want)
		}
	}
}

func TestProbeMethods(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{"HEAD", "/ready/", 200}, {"HEAD", "/live/", 200}, {"POST", "/ready/", 405}, {"DELETE", "/live/", 405},
	} {
		if code, _ := probeReq(t, ts.addr, tc.method, tc.path); code != tc.status {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, code, tc.status)
		}
	}
}

func TestReadyMaxConnectionsValidate(t *testing.T) {
	for _, tc := range []struct {
		ready, max int
		ok         bool
	}{{0, 10, true}, {10, 10, true}, {5, 10, true}, {11, 10, false}, {-1, 10, false}} {
		c := Defaults()
		c.ReadyMaxConnections, c.MaxConnections = tc.ready, tc.max
		if err := c.Validate(); (err == nil) != tc.ok {
			t.Errorf("ready=%d max=%d: err=%v, want ok=%v", tc.ready, tc.max, err, tc.ok)
		}
	}
}
