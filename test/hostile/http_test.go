package hostile

import (
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// httpRSSBoundMiB bounds the server's RSS while TestHostileHTTP runs: the Go
// runtime and an idle server (~15 MiB), plus 20 pipeliners that read nothing,
// each holding at most OUTBOUND_QUEUE_CAP (2 MiB) of answers, which gnet's
// doubling buffers may back with up to twice that, and head + body limit
// plus one read (~136 KiB) of requests until it is dropped; twice that for
// the garbage collector's headroom (GOGC=100): 15 + 2 × 20 × 4.2 ≈ 180 MiB
// at worst; about 105 MiB measured. Unbounded, each pipeliner's 5 MiB of
// requests would be ~20 MiB of answers.
const httpRSSBoundMiB = 180

// TestHostileHTTP runs HTTP-level attacks beyond the ones in
// TestHostileClients against a production-mode server while well-behaved
// WebSocket clients on the same event loop keep receiving every broadcast in
// order, and checks the server's RSS throughout.
func TestHostileHTTP(t *testing.T) {
	runAttacks(t, map[string]string{"WRITE_TIMEOUT": "2s", "HANDSHAKE_TIMEOUT": "2s"}, "good-http", httpRSSBoundMiB, []attack{
		{"many pipeliners without reading", manyPipeliners},
		{"smuggling variants", smugglingVariants},
		{"header names in any case", headerNamesAnyCase},
		{"lower-case expect and content-length", lowerCaseBody},
	})
}

// 20 connections pipeline GET /health/ at once and read nothing: every one is
// pushed back (its requests stop being read, then it is dropped: for sending
// more than a request's worth while paused, or at WRITE_TIMEOUT for reading
// nothing) long before it has sent 16 MiB.
func manyPipeliners(t *testing.T, s *server) {
	const n, limit = 20, 16 << 20
	req := strings.Repeat("GET /health/ HTTP/1.1\r\nHost: x\r\n\r\n", 1024)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		c := s.rawConn(t)
		// Keep the kernel from buffering megabytes of answers for it.
		if err := c.(*net.TCPConn).SetReadBuffer(64 << 10); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			_ = c.SetWriteDeadline(start.Add(20 * time.Second))
			sent := 0
			for sent < limit {
				k, err := io.WriteString(c, req)
				sent += k
				if err == nil {
					continue
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Errorf("pipeliner %d: after %d KiB the server neither reads nor drops it", i, sent>>10)
				}
				t.Logf("pipeliner %d: dropped after %d KiB in %v: %v", i, sent>>10, time.Since(start).Round(time.Millisecond), err)
				return
			}
			t.Errorf("pipeliner %d: the server read %d MiB from a client that reads nothing", i, sent>>20)
		}()
	}
	wg.Wait()
}

// Requests that a proxy in front could frame differently from the edge: each
// gets one error answer, then the connection ends, so nothing hidden behind it
// is served.
func smugglingVariants(t *testing.T, s *server) {
	get := "GET /health/ HTTP/1.1\r\n"
	hidden := "GET /ws/chat/ HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, tc := range []struct {
		name, req, status string
	}{
		{"bare CR", get + "Host: x\rX-A: 1\r\n\r\n" + hidden, "400"},
		{"bare LF inside the head", get + "Host: x\r\nX-A: 1\nX-B: 2\r\n\r\n" + hidden, "400"},
		{"request hidden in a folded line", get + "Host: x\r\nX-A: a\r\n " + hidden, "400"},
		{"tab-folded line", get + "Host: x\r\nX-A: a\r\n\tb\r\n\r\n" + hidden, "400"},
		{"two Host lines", get + "Host: a\r\nHOST: b\r\n\r\n" + hidden, "400"},
		{"Transfer-Encoding identity with Content-Length", "POST /api/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\nContent-Length: 35\r\n\r\n" + hidden, "411"},
		{"chunked in upper case", "POST /api/x HTTP/1.1\r\nHost: x\r\nTRANSFER-ENCODING: CHUNKED\r\n\r\n0\r\n\r\n" + hidden, "411"},
		{"space before the colon", "POST /api/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n" + hidden, "400"},
		{"signed Content-Length", "POST /api/x HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello" + hidden, "400"},
		{"space in the request target", "GET /health/ " + hidden, "400"},
		{"two spaces after the method", "GET  /health/ HTTP/1.1\r\nHost: x\r\n\r\n" + hidden, "400"},
	} {
		s.expectOneAnswer(t, tc.name, tc.req, tc.status)
	}
}

// Upper- and mixed-case header names work like canonical ones.
func headerNamesAnyCase(t *testing.T, s *server) {
	upgrade := func(path string, names [6]string, extra string) string {
		return "GET " + path + " HTTP/1.1\r\n" + names[0] + ": " + s.addr + "\r\n" + names[1] + ": websocket\r\n" +
			names[2] + ": Upgrade\r\n" + names[3] + ": dGhlIHNhbXBsZSBub25jZQ==\r\n" + names[4] + ": 13\r\n" +
			names[5] + ": " + testOrigin + "\r\n" + extra + "\r\n"
	}
	upper := [6]string{"HOST", "UPGRADE", "CONNECTION", "SEC-WEBSOCKET-KEY", "SEC-WEBSOCKET-VERSION", "ORIGIN"}
	mixed := [6]string{"hOsT", "uPgRaDe", "cOnNeCtIoN", "sEc-WeBsOcKeT-kEy", "SeC-wEbSoCkEt-VeRsIoN", "oRiGiN"}
	for _, tc := range []struct {
		name, req, status string
	}{
		{"upper-case session upgrade", upgrade("/ws/session/uc/", upper, ""), "HTTP/1.1 101"},
		{"mixed-case session upgrade", upgrade("/ws/session/mc/", mixed, ""), "HTTP/1.1 101"},
		{"upper-case chat upgrade", upgrade("/ws/chat/", upper, "AUTHORIZATION: "+testAPIKey+"\r\n"), "HTTP/1.1 101"},
		{"mixed-case chat upgrade, wrong key", upgrade("/ws/chat/", mixed, "aUtHoRiZaTiOn: nope\r\n"), "HTTP/1.1 401"},
	} {
		if status := s.statusLine(t, tc.req); !strings.HasPrefix(status, tc.status) {
			t.Errorf("%s: got %q, want %s", tc.name, status, tc.status)
		}
	}
	// HTTP/1.0 keep-alive asked for in lower case keeps the connection.
	status, all := s.httpExchange(t, "GET /health/ HTTP/1.0\r\nconnection: keep-alive\r\n\r\nGET /health/ HTTP/1.0\r\n\r\n")
	if !strings.HasPrefix(status, "HTTP/1.1 200") || strings.Count(all, "HTTP/1.1 200") != 2 {
		t.Errorf("HTTP/1.0 keep-alive in lower case: %q", all)
	}
}

// "expect: 100-continue" and "content-length" in lower case: the server asks
// for the body, reads exactly that many bytes, and frames the pipelined
// request after it correctly.
func lowerCaseBody(t *testing.T, s *server) {
	c := s.rawConn(t)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	body := `{"thread_id":"t"}`
	if _, err := io.WriteString(c, "POST /api/thread/history HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\n"+
		"content-length: 17\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	k, err := c.Read(buf)
	if err != nil || !strings.HasPrefix(string(buf[:k]), "HTTP/1.1 100 Continue\r\n\r\n") {
		t.Fatalf("want 100 Continue, got %q %v", buf[:k], err)
	}
	// No API key: 401, after which the pipelined /health/ is answered.
	if _, err := io.WriteString(c, body+"GET /health/ HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	all, _ := io.ReadAll(c)
	if !strings.HasPrefix(string(all), "HTTP/1.1 401") || strings.Count(string(all), "HTTP/1.1 200") != 1 {
		t.Fatalf("answers: %q", all)
	}
}
