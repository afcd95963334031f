package edge

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/wsedge/wsedge/chat"
	"github.com/wsedge/wsedge/chat/api"
	"github.com/wsedge/wsedge/chat/history"
	"github.com/wsedge/wsedge/chat/model"
)

// rawConn is an HTTP client that writes bytes as given: header names keep
// their case, and nothing is checked before it leaves.
type rawConn struct {
	t    testing.TB
	conn net.Conn
	br   *bufio.Reader
}

func (ts *testServer) raw(t testing.TB) *rawConn {
	t.Helper()
	conn, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &rawConn{t: t, conn: conn, br: bufio.NewReader(conn)}
}

// smallWindow keeps the kernel from buffering megabytes of answers for a
// client that does not read (loopback autotunes receive buffers up to
// tcp_rmem's maximum), so that they pile up in the server instead.
func (r *rawConn) smallWindow() {
	r.t.Helper()
	if err := r.conn.(*net.TCPConn).SetReadBuffer(64 << 10); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rawConn) write(s string) {
	r.t.Helper()
	if _, err := r.conn.Write([]byte(s)); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// response reads one response (not a 1xx one).
func (r *rawConn) response() *fasthttp.Response {
	r.t.Helper()
	_ = r.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp := &fasthttp.Response{}
	if err := resp.Read(r.br); err != nil {
		r.t.Fatalf("read response: %v", err)
	}
	return resp
}

// head reads a status line and header lines, for 1xx answers; it returns
// the status code.
func (r *rawConn) head() int {
	r.t.Helper()
	_ = r.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := r.br.ReadString('\n')
	if err != nil {
		r.t.Fatalf("read status line: %q %v", line, err)
	}
	f := strings.Fields(line)
	if len(f) < 2 {
		r.t.Fatalf("status line %q", line)
	}
	code, _ := strconv.Atoi(f[1])
	for {
		l, err := r.br.ReadString('\n')
		if err != nil {
			r.t.Fatalf("read head: %v", err)
		}
		if l == "\r\n" {
			return code
		}
	}
}

// closed checks that the server closes the connection with nothing more to
// say.
func (r *rawConn) closed() {
	r.t.Helper()
	_ = r.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(r.br)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		r.t.Fatal("server did not close the connection")
	}
	if len(b) > 0 {
		r.t.Fatalf("more bytes after the answer: %q", b)
	}
}

// bystander is a well-behaved HTTP and WebSocket client on the same loop as
// an attacker: check asserts that it is still served, broadcasts in order.
type bystander struct {
	ts       *testServer
	listener *wsClient
	sender   *wsClient
	n        int
}

func newBystander(t *testing.T, ts *testServer) *bystander {
	join := func(userType string) *wsClient {
		c := ts.dial(t, "/ws/session/bystander/", http.Header{"Origin": {"https://app.example.com"}})
		c.expectType("connected")
		c.hello(userType, "web")
		c.send(`{"type":"presence"}`)
		c.expectType("presence")
		return c
	}
	return &bystander{ts: ts, listener: join("admin"), sender: join("agent")}
}

func (b *bystander) check(t *testing.T) {
	t.Helper()
	b.n++
	b.sender.send(fmt.Sprintf(`{"type":"broadcast","msg":"%d"}`, b.n))
	for _, c := range []*wsClient{b.listener, b.sender} {
		if m := c.expectType("session_message"); m["msg"] != strconv.Itoa(b.n) {
			t.Fatalf("bystander broadcast %d: got %v", b.n, m)
		}
	}
	if status, body := b.ts.http(t, "GET", "/health/", nil); status != 200 {
		t.Fatalf("bystander /health/: %d %s", status, body)
	}
}

// The request head is framed the way RFC 9112 frames it, so that the edge,
// fasthttp and a proxy in front agree on where each request ends: bare LF,
// bare CR, folded lines, a missing or repeated Host and any
// Transfer-Encoding are refused and the connection closed.
func TestHTTPHeadFraming(t *testing.T) {
	t.Parallel()
	ts := startServer(t, func(c *Config) { c.EventLoops = 1 })
	by := newBystander(t, ts)
	const get = "GET /health/ HTTP/1.1\r\n"
	tests := []struct {
		name   string
		req    string
		status int
		close  bool
		after  int // further responses expected (keep-alive cases)
	}{
		// A proxy that accepts LF reads two requests here; the edge used
		// to read one (desync).
		{"bare LF ends the head", get + "Host: x\n\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n", 400, true, 0},
		{"bare LF lines only", "GET /health/ HTTP/1.1\nHost: x\n\n", 400, true, 0},
		{"bare LF in a header line", get + "Host: x\r\nX-A: 1\nX-B: 2\r\n\r\n", 400, true, 0},
		{"bare CR", get + "Host: x\rX-A: 1\r\n\r\n", 400, true, 0},
		{"folded header line", get + "Host: x\r\nX-A: a\r\n b\r\n\r\n", 400, true, 0},
		{"folded with a tab", get + "Host: x\r\nX-A: a\r\n\tb\r\n\r\n", 400, true, 0},
		{"whitespace before the first header", get + " Host: x\r\n\r\n", 400, true, 0},
		{"HTTP/1.1 without Host", get + "\r\n", 400, true, 0},
		{"two Host lines", get + "Host: x\r\nhost: y\r\n\r\n", 400, true, 0},
		{"Transfer-Encoding identity with Content-Length", "POST /health/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello", 411, true, 0},
		{"lower-case chunked", "POST /api/x HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 411, true, 0},
		{"chunked after Content-Length", "POST /api/x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 411, true, 0},
		{"two Content-Length", "POST /api/x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\ncontent-length: 4\r\n\r\nabcd", 400, true, 0},
		{"space before colon", get + "Host: x\r\nX-A : 1\r\n\r\n", 400, true, 0},
		{"space in the target", "GET /health/ x HTTP/1.1\r\nHost: x\r\n\r\n", 400, true, 0},
		{"two spaces after the method", "GET  /health/ HTTP/1.1\r\nHost: x\r\n\r\n", 400, true, 0},
		{"tab in the request line", "GET\t/health/ HTTP/1.1\r\nHost: x\r\n\r\n", 400, true, 0},
		// Accepted forms.
		{"HTTP/1.0 without Host", "GET /health/ HTTP/1.0\r\n\r\n", 200, true, 0},
		{"empty line before the request line", "\r\n" + get + "Host: x\r\n\r\n" + get + "Host: x\r\n\r\n", 200, false, 1},
		{"head between 4 and 8 KiB", get + "Host: x\r\nX-Big: " + strings.Repeat("a", 6000) + "\r\n\r\n", 200, false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ts.raw(t)
			c.write(tc.req)
			resp := c.response()
			if resp.StatusCode() != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode(), tc.status, resp.Body())
			}
			for i := 0; i < tc.after; i++ {
				if r := c.response(); r.StatusCode() != tc.status {
					t.Fatalf("response %d: %d", i+2, r.StatusCode())
				}
			}
			if tc.close {
				c.closed()
			}
			by.check(t)
		})
	}
}

// startAPIServer serves the real chat API (and /ws/chat/) the way main wires
// it, with the Origin check and an API key.
func startAPIServer(t *testing.T, mutate func(*Config)) *testServer {
	t.Helper()
	svc, err := chat.New(chat.Config{}, model.Local{Delay: time.Millisecond}, history.NewMemory(0, 0),
		nil, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	h, err := api.NewHandler(api.Config{APIKey: "k3y", CSRFSecret: []byte("csrf secret")}, svc, nil)
	if err != nil {
		t.Fatal(err)
	}
	return startServerWith(t, func(c *Config) {
		c.EventLoops = 1
		c.Debug = false
		c.AllowedHosts = []string{"app.example.com"}
		c.AuthAPIKey = "k3y"
		if mutate != nil {
			mutate(c)
		}
	}, Deps{API: h, OpenChat: func(id string, sink ChatSink) ChatConn { return svc.Open(id, sink) }})
}

// Header names are case-insensitive (RFC 9110 §5.1) on every path: proxies
// and HTTP/2-to-1.1 gateways send them in lower case.
func TestHTTPHeaderNamesAnyCase(t *testing.T) {
	t.Parallel()
	ts := startAPIServer(t, nil)
	by := newBystander(t, ts)
	upgrade := func(path string, names [6]string, origin, auth string) string {
		s := "GET " + path + " HTTP/1.1\r\n" + names[0] + ": x\r\n" + names[1] + ": websocket\r\n" +
			names[2] + ": Upgrade\r\n" + names[3] + ": dGhlIHNhbXBsZSBub25jZQ==\r\n" + names[4] + ": 13\r\n" +
			names[5] + ": " + origin + "\r\n"
		if auth != "" {
			s += auth + "\r\n"
		}
		return s + "\r\n"
	}
	lower := [6]string{"host", "upgrade", "connection", "sec-websocket-key", "sec-websocket-version", "origin"}
	upper := [6]string{"HOST", "UPGRADE", "CONNECTION", "SEC-WEBSOCKET-KEY", "SEC-WEBSOCKET-VERSION", "ORIGIN"}
	for _, tc := range []struct {
		name   string
		req    string
		status int
	}{
		{"session, lower case", upgrade("/ws/session/lc/", lower, "https://app.example.com", ""), 101},
		{"session, upper case", upgrade("/ws/session/uc/", upper, "https://app.example.com", ""), 101},
		{"session, lower-case origin refused", upgrade("/ws/session/lc/", lower, "https://evil.example.net", ""), 403},
		{"chat, lower-case authorization", upgrade("/ws/chat/", lower, "https://app.example.com", "authorization: Bearer k3y"), 101},
		{"chat, upper-case authorization", upgrade("/ws/chat/", upper, "https://app.example.com", "AUTHORIZATION: k3y"), 101},
		{"chat, wrong key in lower case", upgrade("/ws/chat/", lower, "https://app.example.com", "authorization: nope"), 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ts.raw(t)
			c.write(tc.req)
			if got := c.head(); got != tc.status {
				t.Fatalf("status %d, want %d", got, tc.status)
			}
			by.check(t)
		})
	}

	t.Run("API with lower-case headers and expect", func(t *testing.T) {
		c := ts.raw(t)
		c.write("GET /api/csrf-token/ HTTP/1.1\r\nhost: x\r\n\r\n")
		resp := c.response()
		token := strings.TrimSuffix(strings.TrimPrefix(string(resp.Body()), `{"csrfToken":"`), `"}`)
		if resp.StatusCode() != 200 || token == "" {
			t.Fatalf("csrf token: %d %s", resp.StatusCode(), resp.Body())
		}
		body := `{"thread_id":"no-such-thread","pad":"` + strings.Repeat("p", 2000) + `"}`
		c.write("POST /api/thread/history HTTP/1.1\r\nhost: x\r\nauthorization: Bearer k3y\r\nx-csrftoken: " + token +
			"\r\ncontent-type: application/json\r\nexpect: 100-continue\r\ncontent-length: " + strconv.Itoa(len(body)) + "\r\n\r\n")
		if got := c.head(); got != 100 {
			t.Fatalf("want 100 Continue, got %d", got)
		}
		// The body, and a pipelined request framed by a lower-case
		// content-length.
		c.write(body + "POST /api/thread/history HTTP/1.1\r\nHOST: x\r\nAUTHORIZATION: k3y\r\nX-CSRFTOKEN: " + token +
			"\r\nCONTENT-LENGTH: 2\r\n\r\n{}")
		if r := c.response(); r.StatusCode() != 404 || !strings.Contains(string(r.Body()), "thread_not_found") {
			t.Fatalf("history with lower-case headers: %d %s", r.StatusCode(), r.Body())
		}
		if r := c.response(); r.StatusCode() != 400 || !strings.Contains(string(r.Body()), "invalid_request") {
			t.Fatalf("history with upper-case headers: %d %s", r.StatusCode(), r.Body())
		}
		by.check(t)
	})

	t.Run("HTTP/1.0 keep-alive in lower case", func(t *testing.T) {
		c := ts.raw(t)
		for i := 0; i < 2; i++ {
			c.write("GET /health/ HTTP/1.0\r\nconnection: keep-alive\r\n\r\n")
			if r := c.response(); r.StatusCode() != 200 || r.ConnectionClose() {
				t.Fatalf("request %d: %d close=%v", i, r.StatusCode(), r.ConnectionClose())
			}
		}
	})

	t.Run("connection close in upper case", func(t *testing.T) {
		c := ts.raw(t)
		c.write("GET /health/ HTTP/1.1\r\nHost: x\r\nCONNECTION: close\r\n\r\n")
		if r := c.response(); r.StatusCode() != 200 {
			t.Fatalf("%d", r.StatusCode())
		}
		c.closed()
	})
}

// bigAPI answers every /api/* request with size bytes, so that a few
// pipelined requests outgrow the kernel's socket buffers.
func bigAPI(size int) APIHandler {
	body := []byte(strings.Repeat("a", size))
	return func(_ context.Context, rc *fasthttp.RequestCtx) {
		rc.SetContentType("text/plain")
		rc.SetBody(body)
	}
}

// A client that pipelines requests and reads none of the answers does not
// make the server buffer them without end: once its outbound passes the cap
// the edge stops reading its requests, and closes it when it keeps sending.
// Clients on the same loop keep being served.
func TestHTTPPipeliningWithoutReading(t *testing.T) {
	t.Parallel()
	ts := startServer(t, func(c *Config) { c.EventLoops = 1; c.OutboundCap = 64 << 10; smallAnswers(c) })
	by := newBystander(t, ts)
	conn, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.(*net.TCPConn).SetReadBuffer(64 << 10); err != nil {
		t.Fatal(err)
	}
	const limit = 16 << 20
	chunk := []byte(strings.Repeat("GET /health/ HTTP/1.1\r\nHost: x\r\n\r\n", 1000))
	type result struct {
		sent int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		_ = conn.SetWriteDeadline(time.Now().Add(60 * time.Second))
		sent := 0
		for sent < limit {
			n, err := conn.Write(chunk)
			sent += n
			if err != nil {
				done <- result{sent, err}
				return
			}
		}
		done <- result{sent, nil}
	}()
	var res result
wait:
	for {
		select {
		case res = <-done:
			break wait
		default:
			by.check(t)
		}
	}
	if res.err == nil {
		t.Fatalf("the server took %d bytes of pipelined requests without reading answers and did not close", res.sent)
	}
	var ne net.Error
	if errors.As(res.err, &ne) && ne.Timeout() {
		t.Fatalf("after %d bytes: the server neither read nor closed: %v", res.sent, res.err)
	}
	if !errors.Is(res.err, syscall.ECONNRESET) && !errors.Is(res.err, syscall.EPIPE) {
		t.Fatalf("after %d bytes: %v", res.sent, res.err)
	}
	t.Logf("closed after %d bytes of requests: %v", res.sent, res.err)
	if got := counterValue(t, ts.reg, "wsedge_slow_consumer_closes_total"); got < 1 {
		t.Fatalf("slow_consumer_closes_total = %v", got)
	}
	by.check(t)
}

// A client that pipelines past the outbound cap and then reads gets every
// answer, in order: reading resumes once its answers drain.
func TestHTTPPipelinedAnswersResume(t *testing.T) {
	t.Parallel()
	const size = 256 << 10
	ts := startServerWith(t, func(c *Config) { c.EventLoops = 1; c.OutboundCap = 64 << 10; smallAnswers(c) }, Deps{API: bigAPI(size)})
	by := newBystander(t, ts)
	c := ts.raw(t)
	c.smallWindow()
	const n = 64 // 16 MiB of answers: far more than the socket buffers
	var reqs strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&reqs, "GET /api/%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
	}
	c.write(reqs.String())
	by.check(t) // the pipeliner is paused by now; others are served
	time.Sleep(300 * time.Millisecond)
	for i := 0; i < n; i++ {
		r := c.response()
		if r.StatusCode() != 200 || len(r.Body()) != size {
			t.Fatalf("answer %d: %d, %d bytes", i, r.StatusCode(), len(r.Body()))
		}
	}
	by.check(t)
}

// An HTTP connection that accepts no bytes for WriteTimeout is dropped, as a
// WebSocket is, even under the outbound cap.
func TestHTTPWriteTimeout(t *testing.T) {
	t.Parallel()
	ts := startServerWith(t, func(c *Config) {
		c.EventLoops = 1
		c.OutboundCap = 256 << 20
		c.WriteTimeout = 500 * time.Millisecond
	}, Deps{API: bigAPI(1 << 20)})
	by := newBystander(t, ts)
	c := ts.raw(t)
	c.smallWindow()
	c.write(strings.Repeat("GET /api/big HTTP/1.1\r\nHost: x\r\n\r\n", 16))
	deadline := time.Now().Add(15 * time.Second)
	for counterValue(t, ts.reg, "wsedge_slow_consumer_closes_total") < 1 {
		if time.Now().After(deadline) {
			t.Fatal("stalled HTTP connection not closed by the write timeout")
		}
		by.check(t)
		time.Sleep(50 * time.Millisecond)
	}
	// What the kernel held still arrives; then the connection ends.
	_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.Copy(io.Discard, c.br)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("connection still open after the write timeout")
	}
	if got >= 16<<20 {
		t.Fatalf("all %d bytes delivered: nothing was dropped", got)
	}
	by.check(t)
}

// The API's deadline is the edge's: at APITimeout the client gets 503 and
// the handler's context ends, so its slot comes back.
func TestAPITimeoutEndsHandler(t *testing.T) {
	t.Parallel()
	ended := make(chan error, 1)
	ts := startServerWith(t, func(c *Config) {
		c.APITimeout = 300 * time.Millisecond
		c.APIConcurrency = 1
	}, Deps{API: func(ctx context.Context, rc *fasthttp.RequestCtx) {
		if string(rc.Path()) == "/api/hang" {
			<-ctx.Done()
			ended <- ctx.Err()
			return
		}
		rc.SetBodyString("ok")
	}})
	c := ts.raw(t)
	c.write("GET /api/hang HTTP/1.1\r\nHost: x\r\n\r\n")
	if r := c.response(); r.StatusCode() != 503 || !strings.Contains(string(r.Body()), "timed out") {
		t.Fatalf("hung handler: %d %s", r.StatusCode(), r.Body())
	}
	select {
	case err := <-ended:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("handler context: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler's context did not end with the API timeout")
	}
	// The only slot is free again.
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := ts.raw(t)
		r.write("GET /api/ok HTTP/1.1\r\nHost: x\r\n\r\n")
		resp := r.response()
		if resp.StatusCode() == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot not released: %d %s", resp.StatusCode(), resp.Body())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A request refused while its body is still on the way (413) is answered so
// that the client can read the answer: the edge shuts its write side and
// drops what still arrives, instead of closing with unread input (which
// resets the connection, answer included). A client that keeps sending after
// the answer is dropped after CloseTimeout.
func TestHTTPRefusedBodyIsAnswered(t *testing.T) {
	t.Parallel()
	ts := startServer(t, func(c *Config) { c.EventLoops = 1; c.CloseTimeout = 300 * time.Millisecond })
	by := newBystander(t, ts)
	body := strings.Repeat("x", 4<<20)
	for i := 0; i < 3; i++ {
		resp, err := http.Post("http://"+ts.addr+"/api/thread/history", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatalf("POST of 4 MiB: %v (the answer was lost)", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 413 || !strings.Contains(string(b), "too_large") {
			t.Fatalf("POST of 4 MiB: %d %s", resp.StatusCode, b)
		}
	}
	by.check(t)

	c := ts.raw(t)
	c.write("POST /api/x HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n")
	if r := c.response(); r.StatusCode() != 413 {
		t.Fatalf("status %d", r.StatusCode())
	}
	c.closed() // the client sees EOF after the answer
	_ = c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	chunk := []byte(strings.Repeat("x", 64<<10))
	for {
		if _, err := c.conn.Write(chunk); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("a refused client that keeps sending is never dropped")
			}
			break
		}
	}
	by.check(t)
}
