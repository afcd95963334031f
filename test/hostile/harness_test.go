// Package hostile drives a real wsedge process with malicious clients while
// well-behaved clients share its event loop (EVENT_LOOPS=1), and checks that
// the well-behaved ones keep receiving every broadcast in order and that the
// server's resident memory stays under a stated bound throughout.
package hostile

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/wsedge/wsedge/internal/testenv"
)

// serverBin is the wsedge binary built once for the package.
var serverBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "wsedge-hostile-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	serverBin = filepath.Join(dir, "wsedge")
	// Built without -race: the RSS bound is about the shipped binary.
	if out, err := exec.Command("go", "build", "-o", serverBin, "github.com/wsedge/wsedge/cmd/wsedge").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build wsedge: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

const (
	testOrigin = "http://app.example.com"
	testAPIKey = "hostile-suite-api-key"
)

// server is a running wsedge process.
type server struct {
	addr string
	pid  int

	mu   sync.Mutex
	logs bytes.Buffer

	peakKiB atomic.Int64 // highest VmRSS seen
}

func (s *server) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs.Write(p)
}

// startServer runs wsedge with production settings (DEBUG=0, an Origin
// allow-list, an API key), one event loop, and env on top. It samples the
// process's RSS every 20 ms until the test ends.
func startServer(t *testing.T, env map[string]string) *server {
	t.Helper()
	s := &server{addr: testenv.FreeAddr(t)}
	vars := map[string]string{
		"ADDR":          s.addr,
		"ADMIN_ADDR":    testenv.FreeAddr(t),
		"EVENT_LOOPS":   "1",
		"DEBUG":         "0",
		"ALLOWED_HOSTS": ".example.com",
		"SECRET_KEY":    "hostile-suite-secret-key-0123456789",
		"AUTH_API_KEY":  testAPIKey,
		"LOG_LEVEL":     "warn",
		"LOG_FORMAT":    "text",
		// A client that reads nothing is dropped at the write timeout when
		// nothing else catches it first; 10 s keeps that inside the attacks' 20 s.
		"WRITE_TIMEOUT": "10s",
	}
	for k, v := range env {
		vars[k] = v
	}
	cmd := exec.Command(serverBin)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = s, s
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.pid = cmd.Process.Pid
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if kib, err := rssKiB(s.pid); err == nil && kib > s.peakKiB.Load() {
				s.peakKiB.Store(kib)
			}
			select {
			case <-stop:
				return
			case <-exited:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-sampled
		select {
		case <-exited:
			t.Errorf("wsedge exited during the test; its log:\n%s", s.log())
			return
		default:
		}
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("wsedge log:\n%s", s.log())
		}
	})
	testenv.WaitFor(t, "wsedge health", 15*time.Second, func() bool {
		resp, err := http.Get("http://" + s.addr + "/health/")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return s
}

func (s *server) log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs.String()
}

// rssKiB reads VmRSS from /proc/<pid>/status.
func rssKiB(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

// wsConn is a raw client WebSocket: frames are read and written by hand so
// that attacks can send anything, and tests see control frames.
type wsConn struct {
	net.Conn
	br *bufio.Reader
}

// dialWS upgrades path with the allowed Origin and extra header lines.
func (s *server) dialWS(t testing.TB, path string, extra ...string) *wsConn {
	t.Helper()
	c, err := s.tryDialWS(path, extra...)
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func (s *server) tryDialWS(path string, extra ...string) (*wsConn, error) {
	hdr := http.Header{"Origin": {testOrigin}}
	for _, kv := range extra {
		k, v, _ := strings.Cut(kv, ":")
		hdr.Add(k, strings.TrimSpace(v))
	}
	d := ws.Dialer{Timeout: 5 * time.Second, Header: ws.HandshakeHeaderHTTP(hdr)}
	conn, br, _, err := d.Dial(context.Background(), "ws://"+s.addr+path)
	if err != nil {
		return nil, err
	}
	if br == nil {
		br = bufio.NewReader(conn)
	}
	return &wsConn{Conn: conn, br: br}, nil
}

// clientFrame is a masked client frame.
func clientFrame(op ws.OpCode, fin bool, p []byte) []byte {
	return ws.MustCompileFrame(ws.MaskFrame(ws.NewFrame(op, fin, p)))
}

func (c *wsConn) sendText(s string) error {
	_, err := c.Write(clientFrame(ws.OpText, true, []byte(s)))
	return err
}

// readFrame reads one server frame.
func (c *wsConn) readFrame(timeout time.Duration) (ws.Header, []byte, error) {
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	h, err := ws.ReadHeader(c.br)
	if err != nil {
		return h, nil, err
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(c.br, p); err != nil {
		return h, nil, err
	}
	return h, p, nil
}

// readJSON reads the next text frame as a JSON object, answering pings.
func (c *wsConn) readJSON(timeout time.Duration) (map[string]any, error) {
	for {
		h, p, err := c.readFrame(timeout)
		if err != nil {
			return nil, err
		}
		switch h.OpCode {
		case ws.OpPing:
			if _, err := c.Write(clientFrame(ws.OpPong, true, p)); err != nil {
				return nil, err
			}
			continue
		case ws.OpPong:
			continue
		case ws.OpClose:
			code, reason := ws.ParseCloseFrameData(p)
			return nil, &closedError{code, reason}
		}
		var m map[string]any
		if err := json.Unmarshal(p, &m); err != nil {
			return nil, fmt.Errorf("frame is not a JSON object: %q", p)
		}
		return m, nil
	}
}

type closedError struct {
	code   ws.StatusCode
	reason string
}

func (e *closedError) Error() string { return fmt.Sprintf("closed %d %q", e.code, e.reason) }

// expectType reads the next frame, skipping broadcasts (session_message)
// unless they are what is wanted, and checks its type.
func (c *wsConn) expectType(t testing.TB, typ string) map[string]any {
	t.Helper()
	for {
		m, err := c.readJSON(10 * time.Second)
		if err != nil {
			t.Fatalf("want %q: %v", typ, err)
		}
		if m["type"] == "session_message" && typ != "session_message" {
			continue
		}
		if m["type"] != typ {
			t.Fatalf("want %q, got %s", typ, short(m))
		}
		return m
	}
}

// short prints a frame for a failure message, cut to a readable length.
func short(m map[string]any) string {
	b, _ := json.Marshal(m)
	if len(b) > 300 {
		return string(b[:300]) + fmt.Sprintf("… (%d bytes)", len(b))
	}
	return string(b)
}

// expectClose reads until the server's close frame and returns its code
// (0 when the connection ended without one).
func (c *wsConn) expectClose(t testing.TB, timeout time.Duration) ws.StatusCode {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		h, p, err := c.readFrame(time.Until(deadline))
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("no close within %v", timeout)
			}
			return 0
		}
		if h.OpCode == ws.OpClose {
			code, _ := ws.ParseCloseFrameData(p)
			return code
		}
	}
}

// session dials a session socket and says hello.
func (s *server) session(t testing.TB, id, userType string) *wsConn {
	t.Helper()
	c := s.dialWS(t, "/ws/session/"+id+"/")
	c.expectType(t, "connected")
	if err := c.sendText(fmt.Sprintf(`{"type":"hello","user_type":%q,"client_type":"web"}`, userType)); err != nil {
		t.Fatal(err)
	}
	// The presence answer follows the hello: the socket is a member now.
	if err := c.sendText(`{"type":"presence"}`); err != nil {
		t.Fatal(err)
	}
	c.expectType(t, "presence")
	return c
}

// goodClients are well-behaved listeners of one session and a sender that
// broadcasts a numbered message every few milliseconds; every listener must
// receive every message, in order, for as long as they run.
type goodClients struct {
	t         *testing.T
	listeners []*wsConn
	sender    *wsConn
	stop      chan struct{}
	sent      atomic.Int64
	wg        sync.WaitGroup
	errs      chan error
}

func (s *server) startGoodClients(t *testing.T, session string, n int) *goodClients {
	g := &goodClients{t: t, stop: make(chan struct{}), errs: make(chan error, n+1)}
	for i := 0; i < n; i++ {
		g.listeners = append(g.listeners, s.session(t, session, "listener"))
	}
	g.sender = s.session(t, session, "good-sender")
	// total is the number of broadcasts sent, once the sender has stopped.
	var total atomic.Int64
	total.Store(-1)
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for i := int64(0); ; i++ {
			select {
			case <-g.stop:
				// The end marker tells the listeners that i is the total.
				total.Store(i)
				if err := g.sender.sendText(`{"type":"broadcast","msg":"end"}`); err != nil {
					g.errs <- fmt.Errorf("good sender: %w", err)
				}
				return
			case <-tick.C:
			}
			if err := g.sender.sendText(fmt.Sprintf(`{"type":"broadcast","msg":%d}`, i)); err != nil {
				g.errs <- fmt.Errorf("good sender: %w", err)
				total.Store(i)
				return
			}
			g.sent.Store(i + 1)
		}
	}()
	for li, l := range append(g.listeners, g.sender) {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			next := int64(0)
			for {
				// The sender sends every 5 ms: 10 s of silence means the
				// listener is starved.
				m, err := l.readJSON(10 * time.Second)
				if err != nil {
					g.errs <- fmt.Errorf("good listener %d after %d messages: %w", li, next, err)
					return
				}
				if m["type"] != "session_message" {
					g.errs <- fmt.Errorf("good listener %d: unexpected %s", li, short(m))
					return
				}
				if m["msg"] == "end" {
					if n := total.Load(); next != n {
						g.errs <- fmt.Errorf("good listener %d: %d messages before the end, want %d", li, next, n)
					}
					return
				}
				if got, _ := m["msg"].(float64); int64(got) != next {
					g.errs <- fmt.Errorf("good listener %d: message %v, want %d (lost or reordered)", li, m["msg"], next)
					return
				}
				next++
			}
		}()
	}
	return g
}

// finish stops the sender, waits for every listener to have every message,
// and fails the test on any loss, reordering or disconnection.
func (g *goodClients) finish() {
	g.t.Helper()
	close(g.stop)
	g.wg.Wait()
	close(g.errs)
	for err := range g.errs {
		g.t.Error(err)
	}
	if g.sent.Load() == 0 {
		g.t.Error("the good sender sent nothing")
	}
	g.t.Logf("good clients: %d listeners received all %d broadcasts in order", len(g.listeners)+1, g.sent.Load())
}

// rawConn is a TCP connection for HTTP-level attacks.
func (s *server) rawConn(t testing.TB) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// httpExchange writes req on a new connection and returns the status line of
// the first response and everything read until the server closed or
// went quiet.
func (s *server) httpExchange(t testing.TB, req string) (status string, all string) {
	t.Helper()
	c := s.rawConn(t)
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	b, _ := io.ReadAll(c)
	all = string(b)
	status, _, _ = strings.Cut(all, "\r\n")
	return status, all
}

// statusLine writes req on a new connection and returns the first response's
// status line, without waiting for the connection to end (a 101 keeps it).
func (s *server) statusLine(t testing.TB, req string) string {
	t.Helper()
	c := s.rawConn(t)
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("no status line: %v", err)
	}
	return strings.TrimRight(line, "\r\n")
}

// expectOneAnswer sends req on a new connection and checks that it gets one
// answer, with one of statuses (e.g. "400"), and that nothing smuggled
// behind it is answered.
func (s *server) expectOneAnswer(t testing.TB, name, req string, statuses ...string) {
	t.Helper()
	status, all := s.httpExchange(t, req)
	ok := false
	for _, want := range statuses {
		ok = ok || strings.HasPrefix(status, "HTTP/1.1 "+want)
	}
	if !ok {
		t.Errorf("%s: got %q, want %v", name, status, statuses)
	}
	if n := strings.Count("\n"+all, "\nHTTP/1.1 "); n != 1 {
		t.Errorf("%s: %d responses on one connection:\n%s", name, n, all)
	}
}

// checkPeakRSS fails the test if the server's RSS ever passed boundMiB.
func (s *server) checkPeakRSS(t *testing.T, boundMiB int64) {
	t.Helper()
	peak := s.peakKiB.Load()
	t.Logf("peak RSS %.1f MiB (bound %d MiB)", float64(peak)/1024, boundMiB)
	if peak == 0 || peak > boundMiB<<10 {
		t.Errorf("peak RSS %d KiB, bound %d MiB", peak, boundMiB)
	}
}

// attack is one hostile scenario run against a shared server.
type attack struct {
	name string
	run  func(*testing.T, *server)
}

// runAttacks starts a server with env and well-behaved clients in session
// good, runs the attacks one after the other as subtests, and then checks
// that the good clients got every broadcast in order and that the server's
// RSS never passed boundMiB.
func runAttacks(t *testing.T, env map[string]string, good string, boundMiB int64, attacks []attack) {
	s := startServer(t, env)
	g := s.startGoodClients(t, good, 3)
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) { a.run(t, s) })
	}
	g.finish()
	s.checkPeakRSS(t, boundMiB)
}
