package edge

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsedge/wsedge/internal/version"
)

// The admin listener exposes the edge's series with Prometheus names, and the
// hot-path counters kept per loop reach them after a sweep.
func TestAdminMetrics(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	admin, err := ListenAdmin(AdminConfig{Addr: "127.0.0.1:0"}, ts.reg, ts.srv, ts.srv.log)
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
	admin, err := ListenAdmin(AdminConfig{Addr: "127.0.0.1:0"}, reg, nil, slog.New(slog.DiscardHandler))
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
		if e.method != "GET" || strings.HasPrefix(e.path, "/admin/") {
			continue // the control API is tested with a server (TestAdminAPI*)
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

// adminClient talks to a test server's admin listener.
type adminClient struct {
	t     *testing.T
	addr  string
	token string
}

// startAdmin serves ts's admin API with token ("" : none).
func startAdmin(t *testing.T, ts *testServer, token string) *adminClient {
	t.Helper()
	a, err := ListenAdmin(AdminConfig{Addr: "127.0.0.1:0", Token: token}, ts.reg, ts.srv, ts.srv.log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return &adminClient{t: t, addr: a.Addr(), token: token}
}

// do sends a request with the client's token (when set) and decodes the
// JSON answer.
func (a *adminClient) do(method, path, body string) (int, map[string]any) {
	a.t.Helper()
	return a.doAuth(method, path, body, "Bearer "+a.token)
}

func (a *adminClient) doAuth(method, path, body, auth string) (int, map[string]any) {
	a.t.Helper()
	req, _ := http.NewRequest(method, "http://"+a.addr+path, strings.NewReader(body))
	if auth != "" && auth != "Bearer " {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if len(b) > 0 && method != "HEAD" {
		if err := json.Unmarshal(b, &m); err != nil {
			a.t.Fatalf("%s %s: %d %q is not JSON", method, path, resp.StatusCode, b)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			a.t.Errorf("%s %s: Content-Type %q", method, path, ct)
		}
	}
	return resp.StatusCode, m
}

func (a *adminClient) status() map[string]any {
	a.t.Helper()
	code, m := a.do("GET", "/admin/status", "")
	if code != 200 {
		a.t.Fatalf("status: %d %v", code, m)
	}
	return m
}

const testAdminToken = "t0k3n-Q9v7Lz2Xw8Rb5Nc1Md4Kf6Hj3Gp0Sy"

// Every endpoint with no, a wrong, and the right token; the header name and
// the scheme in lower case (raw bytes, which net/http would canonicalise);
// without a token configured: status open, control endpoints 403.
func TestAdminAPIAuth(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	with := startAdmin(t, ts, testAdminToken)
	without := startAdmin(t, ts, "")
	for _, tc := range []struct {
		name         string
		a            *adminClient
		method, path string
		auth         string
		code         int
		err          string
	}{
		{"status no token", with, "GET", "/admin/status", "", 401, "unauthorized"},
		{"status wrong token", with, "GET", "/admin/status", "Bearer " + testAdminToken + "x", 401, "unauthorized"},
		{"status prefix of token", with, "GET", "/admin/status", "Bearer " + testAdminToken[:10], 401, "unauthorized"},
		{"status basic scheme", with, "GET", "/admin/status", "Basic " + testAdminToken, 401, "unauthorized"},
		{"status right token", with, "GET", "/admin/status", "Bearer " + testAdminToken, 200, ""},
		{"status scheme lower case", with, "GET", "/admin/status", "bearer " + testAdminToken, 200, ""},
		{"shed no token", with, "POST", "/admin/shed", "", 401, "unauthorized"},
		{"shed wrong token", with, "POST", "/admin/shed", "Bearer nope", 401, "unauthorized"},
		{"drain no token", with, "POST", "/admin/drain", "", 401, "unauthorized"},
		{"undrain wrong token", with, "DELETE", "/admin/drain", "Bearer nope", 401, "unauthorized"},
		{"shed wrong method", with, "GET", "/admin/shed", "Bearer " + testAdminToken, 405, "method_not_allowed"},
		{"unknown endpoint", with, "GET", "/admin/nope", "Bearer " + testAdminToken, 404, "not_found"},
		{"open status", without, "GET", "/admin/status", "", 200, ""},
		{"open status ignores a header", without, "GET", "/admin/status", "Bearer whatever", 200, ""},
		{"shed unconfigured", without, "POST", "/admin/shed", "Bearer whatever", 403, "admin_token_not_configured"},
		{"drain unconfigured", without, "POST", "/admin/drain", "", 403, "admin_token_not_configured"},
		{"undrain unconfigured", without, "DELETE", "/admin/drain", "", 403, "admin_token_not_configured"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, m := tc.a.doAuth(tc.method, tc.path, `{"count":1}`, tc.auth)
			if code != tc.code || (tc.err != "" && m["error"] != tc.err) {
				t.Fatalf("%d %v, want %d %q", code, m, tc.code, tc.err)
			}
		})
	}
	// Nothing above was shed: there was no socket, and no authorised shed.
	raw := func(head string) string {
		c, err := net.Dial("tcp", with.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = c.Write([]byte(head))
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(c)
		return string(b)
	}
	for _, tc := range []struct{ head, want string }{
		{"GET /admin/status HTTP/1.1\r\nhost: x\r\nauthorization: bearer " + testAdminToken + "\r\nconnection: close\r\n\r\n", "HTTP/1.1 200 OK"},
		{"GET /admin/status HTTP/1.1\r\nhost: x\r\nAUTHORIZATION: BEARER " + testAdminToken + "\r\nconnection: close\r\n\r\n", "HTTP/1.1 200 OK"},
		{"GET /admin/status HTTP/1.1\r\nhost: x\r\nauthorization: bearer " + strings.ToUpper(testAdminToken) + "\r\nconnection: close\r\n\r\n", "HTTP/1.1 401"},
	} {
		if got := raw(tc.head); !strings.HasPrefix(got, tc.want) {
			t.Errorf("%q: got %q, want %s", tc.head, got, tc.want)
		}
	}
	if got := counterValue(t, ts.reg, "wsedge_admin_requests_total"); got < 20 {
		t.Errorf("wsedge_admin_requests_total = %v, want every request counted", got)
	}
}

// connectMembers opens n hello'd session sockets in session id, in order.
func connectMembers(t *testing.T, ts *testServer, id string, n int) []*wsClient {
	t.Helper()
	out := make([]*wsClient, n)
	for i := range out {
		out[i], _ = ts.session(t, id, "listener", "web")
	}
	return out
}

// The status numbers with clients connected: connections, sessions,
// capacity, and ready as /ready/ says it, also when full.
func TestAdminAPIStatus(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		readyMax  int
		wantReady bool
	}{
		{"room left", 0, true},
		{"full at READY_MAX_CONNECTIONS", 5, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts := startServer(t, func(c *Config) {
				c.InstanceID = "edge-7"
				c.MaxConnections = 50
				c.ReadyMaxConnections = tc.readyMax
			})
			a := startAdmin(t, ts, testAdminToken)
			connectMembers(t, ts, "s1", 3)
			connectMembers(t, ts, "s2", 2)
			ts.dial(t, "/ws/session/s3/", nil).expectType("connected") // no hello: no member
			m := a.status()
			for k, want := range map[string]any{
				"instance": "edge-7", "version": version.Get().Version, "connections": 6.0, "sessions": 2.0,
				"capacity": 50.0, "ready": tc.wantReady, "draining": false, "shedding": 0.0,
			} {
				if m[k] != want {
					t.Errorf("%s = %v, want %v (%v)", k, m[k], want, m)
				}
			}
			if up, _ := m["uptime_seconds"].(float64); up <= 0 {
				t.Errorf("uptime_seconds = %v", m["uptime_seconds"])
			}
			code, _ := ts.http(t, "GET", "/ready/", nil)
			if (code == 200) != tc.wantReady {
				t.Errorf("/ready/ = %d, status ready = %v", code, m["ready"])
			}
			if code, _ := a.do("HEAD", "/admin/status", ""); code != 200 {
				t.Errorf("HEAD status = %d", code)
			}
		})
	}
}

// shedOutcome is what a client saw: a reconnect hint (and its after_ms)
// then close 1001, or nothing of the kind.
type shedOutcome struct {
	shed    bool
	afterMS float64
	at      time.Time // when the hint arrived
	frames  []map[string]any
	err     error
}

// watch reads c until a reconnect hint and close 1001 (shed), or until
// stop is closed and quiet for a moment (kept).
func watch(c *wsClient, stop <-chan struct{}) <-chan shedOutcome {
	out := make(chan shedOutcome, 1)
	go func() {
		var o shedOutcome
		for {
			h, p, err := c.frame(200 * time.Millisecond)
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					select {
					case <-stop:
						out <- o
						return
					default:
						continue
					}
				}
				o.err = err
				out <- o
				return
			}
			switch h.OpCode {
			case ws.OpText:
				var m map[string]any
				if err := json.Unmarshal(p, &m); err != nil {
					o.err = err
					out <- o
					return
				}
				if m["type"] == "reconnect" {
					o.shed, o.at = true, time.Now()
					o.afterMS, _ = m["after_ms"].(float64)
					continue
				}
				o.frames = append(o.frames, m)
			case ws.OpClose:
				code, reason := ws.ParseCloseFrameData(p)
				_ = wsutil.WriteClientMessage(c.conn, ws.OpClose, p)
				if !o.shed || code != ws.StatusGoingAway {
					o.err = fmt.Errorf("close %d %q (shed %v)", code, reason, o.shed)
				}
				out <- o
				return
			}
		}
	}()
	return out
}

// A shed of a count and of a fraction, spread over over_ms: exactly that
// many clients get a reconnect hint within jitter_ms and then 1001, no two
// steps apart less than the spread allows, and the others stay and keep
// receiving broadcasts.
func TestAdminAPIShed(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		body string
		want int
	}{
		{"count", `{"count":4,"over_ms":1000,"jitter_ms":300}`, 4},
		{"fraction", `{"fraction":0.5,"over_ms":1000,"jitter_ms":300}`, 5},
		{"count over the connections", `{"count":1000,"over_ms":1000,"jitter_ms":300}`, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts := startServer(t, nil)
			a := startAdmin(t, ts, testAdminToken)
			clients := connectMembers(t, ts, "s", 10)
			stop := make(chan struct{})
			outs := make([]<-chan shedOutcome, len(clients))
			for i, c := range clients {
				outs[i] = watch(c, stop)
			}
			start := time.Now()
			code, m := a.do("POST", "/admin/shed", tc.body)
			if code != 202 || m["accepted"] != float64(tc.want) || m["over_ms"] != 1000.0 {
				t.Fatalf("shed: %d %v, want 202 accepted %d", code, m, tc.want)
			}
			// The run is over when shedding is back at 0.
			for a.status()["shedding"] != 0.0 {
				time.Sleep(50 * time.Millisecond)
			}
			var kept []*wsClient
			var first, last time.Time
			shed := 0
			close(stop)
			for i, o := range outs {
				r := <-o
				if r.err != nil {
					t.Fatalf("client %d: %v", i, r.err)
				}
				if !r.shed {
					kept = append(kept, clients[i])
					continue
				}
				shed++
				if r.afterMS < 0 || r.afterMS > 300 {
					t.Errorf("after_ms %v outside 0..300", r.afterMS)
				}
				if first.IsZero() || r.at.Before(first) {
					first = r.at
				}
				if r.at.After(last) {
					last = r.at
				}
			}
			if shed != tc.want {
				t.Fatalf("%d clients shed, want %d", shed, tc.want)
			}
			// Spread: a loop with a share of k ≥ 2 closes its last socket
			// no earlier than step ceil((k-1)*steps/k) ≥ steps/2.
			if d := last.Sub(start); d < 500*time.Millisecond {
				t.Errorf("last hint %v after the request, want the shed spread over ≥ 500ms", d)
			}
			if len(kept) > 0 {
				kept[0].send(`{"type":"broadcast","msg":"after"}`)
				for _, c := range kept {
					if m := c.expectType("session_message"); m["msg"] != "after" {
						t.Errorf("kept client got %v", m)
					}
				}
			}
			if got := counterValue(t, ts.reg, "wsedge_shed_sockets_total"); got != float64(tc.want) {
				t.Errorf("wsedge_shed_sockets_total = %v, want %d", got, tc.want)
			}
		})
	}
}

// Malformed or out-of-range requests get 400 with a reason, a body over the
// cap 413, and none of them sheds anything.
func TestAdminAPIBadRequests(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	a := startAdmin(t, ts, testAdminToken)
	clients := connectMembers(t, ts, "s", 2)
	for _, tc := range []struct {
		method, path, body string
		code               int
		reason             string // a fragment of "message"
	}{
		{"POST", "/admin/shed", ``, 400, "body is required"},
		{"POST", "/admin/shed", `{`, 400, "invalid JSON"},
		{"POST", "/admin/shed", `[1]`, 400, "invalid JSON"},
		{"POST", "/admin/shed", `{}`, 400, "exactly one"},
		{"POST", "/admin/shed", `{"count":1,"fraction":0.5}`, 400, "exactly one"},
		{"POST", "/admin/shed", `{"count":0}`, 400, "at least 1"},
		{"POST", "/admin/shed", `{"count":-3}`, 400, "at least 1"},
		{"POST", "/admin/shed", `{"count":1.5}`, 400, "invalid JSON"},
		{"POST", "/admin/shed", `{"count":"1"}`, 400, "invalid JSON"},
		{"POST", "/admin/shed", `{"fraction":0}`, 400, "fraction"},
		{"POST", "/admin/shed", `{"fraction":1.01}`, 400, "fraction"},
		{"POST", "/admin/shed", `{"fraction":-0.5}`, 400, "fraction"},
		{"POST", "/admin/shed", `{"count":1,"over_ms":600001}`, 400, "over_ms"},
		{"POST", "/admin/shed", `{"count":1,"over_ms":-1}`, 400, "over_ms"},
		{"POST", "/admin/shed", `{"count":1,"jitter_ms":-1}`, 400, "jitter_ms"},
		{"POST", "/admin/shed", `{"count":1,"jitter_ms":3600001}`, 400, "jitter_ms"},
		{"POST", "/admin/shed", `{"count":1,"over":5}`, 400, "unknown field"},
		{"POST", "/admin/shed", `{"count":1}{"count":2}`, 400, "one object"},
		{"POST", "/admin/drain", `{"count":1}`, 400, "/admin/shed"},
		{"POST", "/admin/drain", `{"over_ms":"soon"}`, 400, "invalid JSON"},
		{"POST", "/admin/shed", `{"count":1,"pad":"` + strings.Repeat("x", 5000) + `"}`, 413, "4096"},
		{"POST", "/admin/drain", strings.Repeat(" ", 4097), 413, "4096"},
	} {
		t.Run(tc.path+" "+tc.body[:min(len(tc.body), 40)], func(t *testing.T) {
			code, m := a.do(tc.method, tc.path, tc.body)
			msg, _ := m["message"].(string)
			if code != tc.code || !strings.Contains(msg, tc.reason) {
				t.Fatalf("%d %v, want %d with %q", code, m, tc.code, tc.reason)
			}
		})
	}
	if s := a.status(); s["connections"] != 2.0 || s["draining"] != false {
		t.Fatalf("after bad requests: %v", s)
	}
	clients[0].send(`{"type":"broadcast","msg":1}`)
	for _, c := range clients {
		c.expectType("session_message")
	}
}

// A second shed while one runs gets 409, and status says how many sockets
// are still to go; a drain takes over from a shed; SIGTERM (Shutdown) from
// either.
func TestAdminAPIShedInProgress(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	a := startAdmin(t, ts, testAdminToken)
	clients := connectMembers(t, ts, "s", 10)
	// Five sockets over ten minutes: each loop closes one at the first step
	// and its next one only 20 s or more later.
	code, m := a.do("POST", "/admin/shed", `{"count":5,"over_ms":600000,"jitter_ms":0}`)
	if code != 202 || m["accepted"] != 5.0 || m["over_ms"] != 600000.0 {
		t.Fatalf("shed: %d %v", code, m)
	}
	for _, body := range []string{`{"count":1}`, `{"fraction":1}`} {
		if code, m := a.do("POST", "/admin/shed", body); code != 409 || m["error"] != "shed_in_progress" {
			t.Fatalf("second shed: %d %v, want 409 shed_in_progress", code, m)
		}
	}
	s := a.status()
	if n, _ := s["shedding"].(float64); n < 1 || n > 5 {
		t.Fatalf("shedding = %v during a shed of 5 over 10 minutes", s["shedding"])
	}
	if !strings.Contains(scrapeAdmin(t, a), "wsedge_shedding "+fmt.Sprint(s["shedding"])) {
		t.Errorf("wsedge_shedding does not match the status")
	}
	// The drain takes over and closes every socket; its own second POST is 409.
	code, m = a.do("POST", "/admin/drain", `{"over_ms":0,"jitter_ms":0}`)
	if code != 202 || m["draining"] != true {
		t.Fatalf("drain: %d %v", code, m)
	}
	for _, c := range clients {
		m := c.expectType("reconnect")
		if m["after_ms"] != 0.0 {
			t.Errorf("after_ms %v with jitter_ms 0", m["after_ms"])
		}
		c.expectClose(1001)
	}
	if code, m := a.do("POST", "/admin/shed", `{"count":1}`); code != 202 || m["accepted"] != 0.0 {
		t.Fatalf("shed with no socket: %d %v, want 202 accepted 0", code, m)
	}
	ts.srv.BeginDrain()
	for _, req := range [][2]string{{"POST", "/admin/shed"}, {"POST", "/admin/drain"}, {"DELETE", "/admin/drain"}} {
		if code, m := a.do(req[0], req[1], `{"count":1}`[:map[bool]int{true: 11, false: 0}[req[1] == "/admin/shed"]]); code != 409 || m["error"] != "shutting_down" {
			t.Errorf("%s %s during shutdown: %d %v, want 409 shutting_down", req[0], req[1], code, m)
		}
	}
}

func scrapeAdmin(t *testing.T, a *adminClient) string {
	t.Helper()
	resp, err := http.Get("http://" + a.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// POST /admin/drain: /ready/ 503, status ready:false draining:true, new
// upgrades refused as during SIGTERM, every socket shed; DELETE lifts the
// mark and a drain stopped half way leaves the rest connected.
func TestAdminAPIDrain(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	a := startAdmin(t, ts, testAdminToken)
	clients := connectMembers(t, ts, "s", 6)
	if code, _ := ts.http(t, "GET", "/ready/", nil); code != 200 {
		t.Fatalf("/ready/ = %d before the drain", code)
	}
	code, m := a.do("POST", "/admin/drain", "")
	if code != 202 || m["accepted"] != 6.0 || m["draining"] != true {
		t.Fatalf("drain: %d %v", code, m)
	}
	for _, c := range clients {
		c.expectType("reconnect")
		c.expectClose(1001)
	}
	if code, body := ts.http(t, "GET", "/ready/", nil); code != 503 || !strings.Contains(body, "draining") {
		t.Fatalf("/ready/ during drain: %d %s", code, body)
	}
	if code, _ := ts.http(t, "GET", "/health/", nil); code != 503 {
		t.Fatalf("/health/ during drain: %d", code)
	}
	if s := a.status(); s["ready"] != false || s["draining"] != true {
		t.Fatalf("status during drain: %v", s)
	}
	if _, err := ts.tryDial(t, "/ws/session/s/", nil); err == nil || err.(ws.StatusError) != 503 {
		t.Fatalf("upgrade during drain: %v, want 503", err)
	}
	if code, m := a.do("DELETE", "/admin/drain", ""); code != 200 || m["draining"] != false {
		t.Fatalf("undrain: %d %v", code, m)
	}
	if code, _ := ts.http(t, "GET", "/ready/", nil); code != 200 {
		t.Fatalf("/ready/ after undrain: %d", code)
	}
	if s := a.status(); s["ready"] != true || s["draining"] != false {
		t.Fatalf("status after undrain: %v", s)
	}

	// A drain over ten minutes, stopped: the sockets it has not reached stay
	// and keep receiving broadcasts.
	clients = connectMembers(t, ts, "s", 6)
	code, m = a.do("POST", "/admin/drain", `{"over_ms":600000}`)
	if code != 202 || m["accepted"] != 6.0 || m["over_ms"] != 600000.0 {
		t.Fatalf("slow drain: %d %v", code, m)
	}
	if code, m := a.do("POST", "/admin/drain", ""); code != 409 || m["error"] != "shed_in_progress" {
		t.Fatalf("second drain: %d %v", code, m)
	}
	if code, _ := a.do("DELETE", "/admin/drain", ""); code != 200 {
		t.Fatalf("undrain: %d", code)
	}
	stop := make(chan struct{})
	outs := make([]<-chan shedOutcome, len(clients))
	for i, c := range clients {
		outs[i] = watch(c, stop)
	}
	// The first step (one socket a loop) ran before the 202's run could be
	// stopped, or not: at most one a loop is shed.
	var kept []int
	time.Sleep(300 * time.Millisecond)
	close(stop)
	for i, o := range outs {
		if r := <-o; r.err != nil {
			t.Fatal(r.err)
		} else if !r.shed {
			kept = append(kept, i)
		}
	}
	if len(kept) < len(clients)-ts.srv.cfg.EventLoops {
		t.Fatalf("only %d of %d clients left after an undrain", len(kept), len(clients))
	}
	clients[kept[0]].send(`{"type":"broadcast","msg":"still here"}`)
	for _, i := range kept {
		clients[i].expectType("session_message")
	}
	for {
		s := a.status()
		if s["shedding"] != 0.0 || s["draining"] != false {
			t.Fatalf("status after a stopped drain: %v", s)
		}
		if s["connections"] == float64(len(kept)) {
			break
		}
		time.Sleep(20 * time.Millisecond) // the shed ones' closing handshakes
	}
}

// A shed of half the sockets while one client floods its session with
// numbered broadcasts: every kept listener receives all of them, in order,
// and every shed one a gapless prefix before its hint.
func TestAdminAPIShedDuringFlood(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	a := startAdmin(t, ts, testAdminToken)
	listeners := connectMembers(t, ts, "flood", 20)
	// The sender is the newest socket of its loop, and a shed of half takes
	// the oldest of each loop first: it stays.
	sender, _ := ts.session(t, "flood", "sender", "web")
	const total = 1500
	stop := make(chan struct{})
	outs := make([]<-chan shedOutcome, len(listeners))
	for i, c := range listeners {
		outs[i] = watch(c, stop)
	}
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := 1; i <= total; i++ {
			if err := wsutil.WriteClientText(sender.conn, fmt.Appendf(nil, `{"type":"broadcast","msg":%d}`, i)); err != nil {
				t.Errorf("send %d: %v", i, err)
				return
			}
			if i == total/4 {
				if code, m := a.do("POST", "/admin/shed", `{"fraction":0.5,"over_ms":300,"jitter_ms":100}`); code != 202 || m["accepted"] != 11.0 {
					t.Errorf("shed: %d %v", code, m)
				}
			}
		}
	}()
	<-sent
	// The sender sees its own broadcasts: the last one means all were
	// delivered to the loops' members.
	for {
		m := sender.expectType("session_message")
		if m["msg"] == float64(total) {
			break
		}
	}
	close(stop)
	shed, kept := 0, 0
	for i, o := range outs {
		r := <-o
		if r.err != nil {
			t.Fatalf("listener %d: %v", i, r.err)
		}
		for j, f := range r.frames {
			if f["msg"] != float64(j+1) {
				t.Fatalf("listener %d (shed %v): frame %d is %v, want msg %d", i, r.shed, j, f, j+1)
			}
		}
		if r.shed {
			shed++
			continue
		}
		kept++
		if len(r.frames) != total {
			t.Errorf("kept listener %d got %d of %d broadcasts", i, len(r.frames), total)
		}
	}
	// 21 sockets, half rounded up: 11, all listeners (the sender stays).
	if shed != 11 || kept != 9 {
		t.Fatalf("%d shed, %d kept; want 11 and 9", shed, kept)
	}
}

// SIGTERM (Shutdown) during a slow admin shed takes its sockets over: every
// client gets its hint and 1001, none twice, and the shed's 409 turns into
// shutting_down.
func TestShutdownTakesOverShed(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil)
	a := startAdmin(t, ts, testAdminToken)
	clients := connectMembers(t, ts, "s", 6)
	if code, m := a.do("POST", "/admin/shed", `{"count":4,"over_ms":600000}`); code != 202 || m["accepted"] != 4.0 {
		t.Fatalf("shed: %d %v", code, m)
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- ts.srv.Shutdown(ctx)
	}()
	// Every client must be closed; one that is not is reported as kept
	// once the drain's bound has passed.
	stop := make(chan struct{})
	time.AfterFunc(15*time.Second, func() { close(stop) })
	outs := make([]<-chan shedOutcome, len(clients))
	for i, c := range clients {
		outs[i] = watch(c, stop)
	}
	for i := range clients {
		r := <-outs[i]
		if r.err != nil || !r.shed {
			t.Fatalf("client %d: shed %v, %v", i, r.shed, r.err)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	shed, drain := 0.0, 0.0
	mfs, _ := ts.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "wsedge_shed_sockets_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch m.GetLabel()[0].GetValue() {
			case "shed":
				shed = m.GetCounter().GetValue()
			case "drain":
				drain = m.GetCounter().GetValue()
			}
		}
	}
	if shed+drain != 6 || shed < 1 || shed > 4 {
		t.Fatalf("shed %v + drain %v sockets, want 6 with 1 to 4 by the shed", shed, drain)
	}
}
