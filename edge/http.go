package edge

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/wsedge/wsedge/edge/console"
	"github.com/wsedge/wsedge/internal/wire"
)

// onHTTP parses and answers every complete request held for c. fasthttp parses
// request heads; only complete heads (and bodies, by Content-Length) are
// handed to it, because its readers expect blocking input.
//
// Answers are written as requests are read, so a client that pipelines
// requests without reading the answers would pile them up in gnet's outbound
// buffer, which has no bound of its own. Over OutboundCap the connection stops
// reading requests (c.paused) until the sweeper sees the buffer drain; what
// the client sends meanwhile is capped like requests waiting behind an API
// call, and a client that reads nothing at all meets WriteTimeout.
func (s *Server) onHTTP(c *conn) {
	if c.closeAt != 0 {
		// Refused (see refuse): what the client still sends is dropped.
		_, _ = c.gc.Discard(c.gc.InboundBuffered())
		return
	}
	for c.state == stHTTP && !c.closeTCP && c.closeAt == 0 {
		n := c.gc.InboundBuffered()
		if n == 0 {
			c.reqStart = 0
			return
		}
		if c.reqStart == 0 {
			c.reqStart = c.lastRx
		}
		if !c.busy {
			c.paused = c.gc.OutboundBuffered() > s.cfg.OutboundCap
		}
		if c.busy || c.paused {
			// A pipelined request waits for the one in flight, or for the
			// client to read; cap what it may hold meanwhile.
			if n > s.cfg.MaxHeaderBytes+s.cfg.MaxBodyBytes {
				if c.paused {
					s.metrics.slowConsumers.WithLabelValues("outbound_cap").Inc()
				}
				c.closeTCP = true
			}
			if c.paused {
				// The client is not slow to send but to read: the request
				// deadline starts again when reading resumes.
				c.reqStart = 0
			}
			return
		}
		buf, _ := c.gc.Peek(n)
		headLen, cl, herr := c.ls.readHead(buf, s.cfg.MaxHeaderBytes, s.cfg.MaxBodyBytes)
		if herr != nil {
			s.refuse(c, herr)
			return
		}
		if headLen == 0 {
			return
		}
		if len(buf) < headLen+cl {
			// curl and others wait for this before sending a body over 1 KiB.
			if !c.continued && bytes.EqualFold(c.ls.hdr.Peek(fasthttp.HeaderExpect), []byte("100-continue")) {
				c.continued = true
				_, _ = c.gc.Write([]byte("HTTP/1.1 100 Continue\r\n\r\n"))
			}
			return
		}
		c.continued = false
		s.route(c, buf[:headLen+cl], headLen)
		if c.state == stHTTP && !c.busy {
			c.reqStart = 0
		}
		_, _ = c.gc.Discard(headLen + cl)
	}
}

// refuse answers a request the edge cannot frame and ends the connection.
// The client may still be sending (a body over the cap, say), and closing a
// socket with unread input makes the kernel reset it, which can destroy the
// answer before the client reads it. So, as web servers' "lingering close"
// does, only the write side is shut (the client reads the answer, then EOF),
// and what it still sends is discarded until it closes or CloseTimeout passes
// (c.closeAt, checked by the sweeper).
func (s *Server) refuse(c *conn, herr *httpError) {
	s.replyError(c, "other", herr.status, herr.code, herr.msg, true)
	if c.gc.OutboundBuffered() > 0 {
		return // the answer is not even in the kernel: close now
	}
	if err := syscall.Shutdown(c.gc.Fd(), syscall.SHUT_WR); err != nil {
		return
	}
	c.closeTCP = false
	c.closeAt = time.Now().UnixNano()
	_, _ = c.gc.Discard(c.gc.InboundBuffered())
}

// httpError is an answer that ends the connection: after a request the edge
// cannot frame, nothing that follows it on the connection can be trusted.
type httpError struct {
	status    int
	code, msg string
}

var (
	errHeadTooLarge = &httpError{fasthttp.StatusRequestHeaderFieldsTooLarge, "too_large", "request head too large"}
	errMalformed    = &httpError{fasthttp.StatusBadRequest, "invalid_request", "malformed HTTP request"}
	errBadURI       = &httpError{fasthttp.StatusBadRequest, "invalid_request", "malformed request URI"}
	errNoHost       = &httpError{fasthttp.StatusBadRequest, "invalid_request", "an HTTP/1.1 request needs exactly one Host header"}
	errChunked      = &httpError{fasthttp.StatusLengthRequired, "invalid_request", "send the body with Content-Length; Transfer-Encoding is not accepted"}
)

// readHead parses the request head at the start of buf into ls.hdr and
// ls.uri. It returns the head's length (0: buf holds no complete head yet)
// and the body's, or the error to answer with.
//
// Header names are matched case-insensitively everywhere because fasthttp
// normalizes them (its default) both when parsing and in Peek: with
// normalizing off, Peek("Origin") missed "origin:", which HTTP/2-to-1.1
// gateways send.
func (ls *loopState) readHead(buf []byte, maxHead, maxBody int) (headLen, bodyLen int, herr *httpError) {
	// ls.hdr is shared by the loop's connections: an error answer must not
	// see another request's method (HEAD would drop its body).
	ls.hdr.Reset()
	head, err := scanHead(buf[:min(len(buf), maxHead)])
	if err != nil {
		return 0, 0, &httpError{fasthttp.StatusBadRequest, "invalid_request", err.Error()}
	}
	if head.len == 0 {
		if len(buf) > maxHead {
			return 0, 0, errHeadTooLarge
		}
		return 0, 0, nil
	}
	ls.rd.Reset(buf[:head.len])
	ls.br.Reset(&ls.rd)
	if err := ls.hdr.Read(ls.br); err != nil {
		return 0, 0, errMalformed
	}
	// fasthttp must have ended the head exactly where scanHead did, or the
	// two would disagree on where the next request starts.
	if ls.br.Buffered() != 0 || ls.rd.Len() != 0 {
		return 0, 0, errMalformed
	}
	// RFC 9112 §3.2: 400 for an HTTP/1.1 request without Host, and for any
	// request with more than one (fasthttp keeps the last one silently).
	if head.hosts > 1 || (head.hosts == 0 && ls.hdr.IsHTTP11()) {
		return 0, 0, errNoHost
	}
	// Bodies are framed by Content-Length only. fasthttp accepts
	// "Transfer-Encoding: identity" next to a Content-Length, which a proxy
	// may frame differently: any Transfer-Encoding is refused.
	if head.te {
		return 0, 0, errChunked
	}
	cl := ls.hdr.ContentLength()
	switch {
	case cl == -2: // no Content-Length: a request without a body
		cl = 0
	case cl < 0:
		return 0, 0, errChunked
	case cl > maxBody:
		return 0, 0, &httpError{fasthttp.StatusRequestEntityTooLarge, "too_large", "request body over " + strconv.Itoa(maxBody) + " bytes"}
	}
	ls.uri.Reset()
	if err := ls.uri.Parse(nil, ls.hdr.RequestURI()); err != nil {
		return 0, 0, errBadURI
	}
	return head.len, cl, nil
}

// headScan is what scanHead learns about a request head.
type headScan struct {
	len   int  // bytes up to and including the empty line; 0: incomplete
	hosts int  // Host field lines
	te    bool // a Transfer-Encoding field line is present
}

// scanHead finds where the request head at the start of buf ends: at the
// first empty line. It refuses what fasthttp tolerates but other HTTP
// implementations read differently (RFC 9112 §2.2, §5.2), so that the edge,
// fasthttp and any proxy in front agree on where each request ends: a line
// not ended by CRLF (bare LF or bare CR) and an obsolete folded header line
// are errors. Empty lines before the request line are skipped, as fasthttp
// does.
func scanHead(buf []byte) (headScan, error) {
	var h headScan
	line := 0 // lines seen, not counting leading empty ones
	for start := 0; ; {
		i := bytes.IndexByte(buf[start:], '\n')
		if i < 0 {
			// Incomplete line; a CR may only be its last byte so far.
			if j := bytes.IndexByte(buf[start:], '\r'); j >= 0 && start+j != len(buf)-1 {
				return h, errBareCR
			}
			return h, nil
		}
		end := start + i // the LF
		if end == start || buf[end-1] != '\r' {
			return h, errBareLF
		}
		l := buf[start : end-1]
		if bytes.IndexByte(l, '\r') >= 0 {
			return h, errBareCR
		}
		start = end + 1
		switch {
		case len(l) == 0 && line == 0:
			continue
		case len(l) == 0:
			h.len = start
			return h, nil
		case line == 0:
			if !validRequestLine(l) {
				return h, errRequestLine
			}
		case l[0] == ' ' || l[0] == '\t':
			return h, errFolded
		default:
			if name, _, ok := bytes.Cut(l, []byte{':'}); ok {
				switch {
				case bytes.EqualFold(name, []byte(fasthttp.HeaderHost)):
					h.hosts++
				case bytes.EqualFold(name, []byte(fasthttp.HeaderTransferEncoding)):
					h.te = true
				}
			}
		}
		line++
	}
}

var (
	errBareLF = errors.New("request head lines must end with CRLF (bare LF)")
	errBareCR = errors.New("request head contains a bare CR")
	errFolded = errors.New("obsolete line folding in request head")

	errRequestLine = errors.New("the request line must be: method, one space, target, one space, version")
)

// validRequestLine checks the request line's shape (RFC 9112 §3): exactly
// two single spaces and no control characters. fasthttp takes the target up
// to the last space, so "GET /a b HTTP/1.1" would reach routing as "/a b".
func validRequestLine(l []byte) bool {
	spaces := 0
	for i, ch := range l {
		switch {
		case ch == ' ':
			if i == 0 || l[i-1] == ' ' {
				return false
			}
			spaces++
		case ch < 0x21 || ch == 0x7f:
			return false
		}
	}
	return spaces == 2 && l[len(l)-1] != ' '
}

// route answers one complete request. raw is the request (head and body) and
// is only valid during the call.
func (s *Server) route(c *conn, raw []byte, headLen int) {
	ls := c.ls
	path := string(ls.uri.Path())
	switch {
	case path == "/health/" || path == "/health":
		if !ls.hdr.IsGet() && !ls.hdr.IsHead() {
			s.replyError(c, "health", fasthttp.StatusMethodNotAllowed, "method_not_allowed", "use GET", false)
			return
		}
		if s.draining.Load() {
			s.reply(c, "health", fasthttp.StatusServiceUnavailable, []byte(`{"status":"draining"}`), false)
			return
		}
		s.reply(c, "health", fasthttp.StatusOK, []byte(`{"status":"ok"}`), false)
	case strings.HasPrefix(path, "/ws/"):
		s.upgrade(c, raw[:headLen], path)
	case strings.HasPrefix(path, "/api/"):
		s.serveAPI(c, raw)
	case s.console != nil && console.Owns(path):
		s.serveConsole(c, path)
	default:
		s.replyError(c, "other", fasthttp.StatusNotFound, "not_found", "no such route", false)
	}
}

// reply writes a JSON response for the request in ls.hdr.
func (s *Server) reply(c *conn, route string, status int, body []byte, closeConn bool) {
	ls := c.ls
	resp := &ls.resp
	resp.Reset()
	resp.SetStatusCode(status)
	resp.Header.SetContentType("application/json")
	resp.SetBodyRaw(body)
	resp.SkipBody = ls.hdr.IsHead()
	if closeConn || ls.hdr.ConnectionClose() || (!ls.hdr.IsHTTP11() && !bytes.EqualFold(ls.hdr.Peek(fasthttp.HeaderConnection), []byte("keep-alive"))) {
		resp.SetConnectionClose()
		c.closeTCP = true
	}
	ls.out.Reset()
	_, _ = resp.WriteTo(&ls.out)
	_, _ = c.gc.Write(ls.out.Bytes())
	s.metrics.httpRequests.WithLabelValues(route, strconv.Itoa(status)).Inc()
}

func (s *Server) replyError(c *conn, route string, status int, code, msg string, closeConn bool) {
	s.reply(c, route, status, wire.HTTPError(code, msg), closeConn)
}

// APIHandler serves one /api/* request off the event loop. ctx ends when the
// edge stops waiting for the answer (APITimeout): the handler must return
// soon after, because it holds one of APIConcurrency slots until it does.
type APIHandler func(ctx context.Context, rc *fasthttp.RequestCtx)

// serveAPI runs the API handler off the loop on a bounded pool; the answer
// comes back through the loop's mailbox. Pipelined requests wait (c.busy).
func (s *Server) serveAPI(c *conn, raw []byte) {
	if s.api == nil {
		s.replyError(c, "api", fasthttp.StatusNotFound, "not_found", "the HTTP API is not enabled", false)
		return
	}
	select {
	case s.apiSem <- struct{}{}:
	default:
		s.metrics.rejected.WithLabelValues("api_concurrency").Inc()
		s.replyError(c, "api", fasthttp.StatusServiceUnavailable, "unavailable", "too many requests in flight", false)
		return
	}
	req := append([]byte(nil), raw...)
	var remote net.Addr
	if a, ok := c.gc.RemoteAddr().(*net.TCPAddr); ok {
		cp := *a
		remote = &cp
	}
	c.busy = true
	s.apiWG.Add(1)
	go func() {
		defer s.apiWG.Done()
		out, closeConn, status := s.runAPI(req, remote)
		s.metrics.httpRequests.WithLabelValues("api", strconv.Itoa(status)).Inc()
		c.ls.run(func() {
			if c.state != stHTTP {
				return
			}
			c.busy = false
			c.reqStart = 0
			_, _ = c.gc.Write(out)
			if closeConn {
				c.dropTCP()
				return
			}
			// Requests pipelined behind this one are still buffered.
			_ = c.gc.Wake(nil)
		})
	}()
}

// runAPI parses a copied request and runs the handler with a deadline.
func (s *Server) runAPI(raw []byte, remote net.Addr) (out []byte, closeConn bool, status int) {
	var req fasthttp.Request
	var ctx fasthttp.RequestCtx
	br := bufio.NewReader(bytes.NewReader(raw))
	err := req.Read(br)
	if err == nil && req.MayContinue() {
		// fasthttp leaves the body of an "Expect: 100-continue" request to
		// the caller; the edge already answered 100 and holds the body.
		err = req.ContinueReadBody(br, s.cfg.MaxBodyBytes)
	}
	if err != nil {
		<-s.apiSem
		return apiError(fasthttp.StatusBadRequest, "invalid_request", "malformed HTTP request"), true, fasthttp.StatusBadRequest
	}
	closeConn = req.Header.ConnectionClose()
	ctx.Init(&req, remote, nil)
	// One deadline for the answer and the handler's work: when the client
	// is told "timed out", the handler's model or database call is
	// cancelled too, and its slot comes back.
	hctx, cancel := context.WithTimeout(context.Background(), s.cfg.APITimeout)
	defer cancel()
	done := make(chan struct{})
	go func() {
		// The slot is held until the handler returns, even after a
		// timeout answered the client: handlers stuck on a dead database
		// stay within APIConcurrency.
		defer func() { <-s.apiSem }()
		defer close(done)
		defer func() {
			if r := recover(); r != nil {
				s.log.Error("api handler panic", "panic", r, "path", string(req.URI().Path()))
				ctx.Response.Reset()
				ctx.Response.SetStatusCode(fasthttp.StatusInternalServerError)
				ctx.Response.SetBodyString(`{"error":"internal","message":"internal error"}`)
			}
		}()
		s.api(hctx, &ctx)
	}()
	select {
	case <-done:
	case <-hctx.Done():
		// The client is answered now; the handler sees hctx end.
		return apiError(fasthttp.StatusServiceUnavailable, "unavailable", "request timed out"), true, fasthttp.StatusServiceUnavailable
	}
	if closeConn {
		ctx.Response.SetConnectionClose()
	}
	var b bytes.Buffer
	_, _ = ctx.Response.WriteTo(&b)
	return b.Bytes(), closeConn || ctx.Response.ConnectionClose(), ctx.Response.StatusCode()
}

func apiError(status int, code, msg string) []byte {
	var resp fasthttp.Response
	resp.SetStatusCode(status)
	resp.Header.SetContentType("application/json")
	resp.SetBody(wire.HTTPError(code, msg))
	resp.SetConnectionClose()
	var b bytes.Buffer
	_, _ = resp.WriteTo(&b)
	return b.Bytes()
}
