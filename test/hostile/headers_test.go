package hostile

import (
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// HTTP-level attacks, run by TestHostileClients while the good clients
// stream. They need the strict head framing and case-insensitive header
// lookups of the HTTP side of issue 7.

// A client pipelines GET /health/ as fast as it can and never reads: the
// server stops reading it at its outbound cap instead of buffering answers
// without bound (the suite's RSS bound catches a leak), and drops it when it
// accepts no bytes for WRITE_TIMEOUT.
func httpPipelining(t *testing.T, s *server) {
	c := s.rawConn(t)
	req := strings.Repeat("GET /health/ HTTP/1.1\r\nHost: x\r\n\r\n", 1024) // 35 KiB a write
	var written atomic.Int64
	_ = c.SetWriteDeadline(time.Now().Add(8 * time.Second))
	for written.Load() < 64<<20 { // 64 MiB offered; ~6× that in answers if unbounded
		n, err := io.WriteString(c, req)
		written.Add(int64(n))
		if err != nil {
			break // the server stopped reading: pushed back
		}
	}
	t.Logf("HTTP pipelining: %d MiB written before the server pushed back", written.Load()>>20)
	if written.Load() >= 64<<20 {
		t.Fatal("the server read 64 MiB of pipelined requests from a client that reads nothing")
	}
}

// Header names are case-insensitive: proxies and HTTP/2 gateways send them
// in lower case.
func lowerCaseHeaders(t *testing.T, s *server) {
	upgrade := func(path, extra string) string {
		return "GET " + path + " HTTP/1.1\r\nhost: " + s.addr + "\r\nupgrade: websocket\r\nconnection: upgrade\r\n" +
			"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n" + extra + "\r\n"
	}
	for _, tc := range []struct {
		name, req, status string
	}{
		{"lower-case origin", upgrade("/ws/session/lc/", "origin: "+testOrigin+"\r\n"), "HTTP/1.1 101"},
		{"lower-case foreign origin", upgrade("/ws/session/lc/", "origin: http://evil.test\r\n"), "HTTP/1.1 403"},
		{"lower-case authorization", upgrade("/ws/chat/", "origin: "+testOrigin+"\r\nauthorization: Bearer "+testAPIKey+"\r\n"), "HTTP/1.1 101"},
		{"lower-case wrong authorization", upgrade("/ws/chat/", "origin: "+testOrigin+"\r\nauthorization: nope\r\n"), "HTTP/1.1 401"},
	} {
		if status := s.statusLine(t, tc.req); !strings.HasPrefix(status, tc.status) {
			t.Errorf("%s: got %q, want %s", tc.name, status, tc.status)
		}
	}
}

// Heads that a proxy and the edge could split differently are refused, so
// that no second request hides inside the first.
func smuggling(t *testing.T, s *server) {
	get := "GET /health/ HTTP/1.1\r\n"
	for _, tc := range []struct {
		name, req string
		statuses  []string
	}{
		{"bare LF ends the head", get + "Host: x\n\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n", []string{"400"}},
		{"HTTP/1.1 without Host", get + "\r\n", []string{"400"}},
		{"obsolete line folding", get + "Host: x\r\nX-A: a\r\n b\r\n\r\n", []string{"400"}},
		{"Content-Length and Transfer-Encoding", "POST /api/x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			[]string{"400", "411"}},
		{"two Content-Length", "POST /api/x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\ncontent-length: 4\r\n\r\nabcd", []string{"400"}},
	} {
		s.expectOneAnswer(t, tc.name, tc.req, tc.statuses...)
	}
}
