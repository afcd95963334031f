package edge

import (
	"bufio"
	"bytes"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/wsedge/wsedge/internal/wire"
)

var headEnd = []byte("\r\n\r\n")

// onHTTP parses and answers every complete request held for c. fasthttp parses
// request heads; only complete heads (and bodies, by Content-Length) are
// handed to it, because its readers expect blocking input.
func (s *Server) onHTTP(c *conn) {
	ls := c.ls
	for c.state == stHTTP && !c.closeTCP {
		n := c.gc.InboundBuffered()
		if n == 0 {
			c.reqStart = 0
			return
		}
		if c.reqStart == 0 {
			c.reqStart = c.lastRx
		}
		if c.busy {
			// A pipelined request waits for the one in flight; cap what it may hold.
			if n > s.cfg.MaxHeaderBytes+s.cfg.MaxBodyBytes {
				c.closeTCP = true
			}
			return
		}
		buf, _ := c.gc.Peek(n)
		end := bytes.Index(buf, headEnd)
		if end < 0 {
			if len(buf) > s.cfg.MaxHeaderBytes {
				s.replyError(c, "other", fasthttp.StatusRequestHeaderFieldsTooLarge, "too_large", "request head too large", true)
			}
			return
		}
		headLen := end + len(headEnd)
		if headLen > s.cfg.MaxHeaderBytes {
			s.replyError(c, "other", fasthttp.StatusRequestHeaderFieldsTooLarge, "too_large", "request head too large", true)
			return
		}
		ls.rd.Reset(buf[:headLen])
		ls.br.Reset(&ls.rd)
		ls.hdr.Reset()
		ls.hdr.DisableNormalizing()
		if err := ls.hdr.Read(ls.br); err != nil {
			s.replyError(c, "other", fasthttp.StatusBadRequest, "invalid_request", "malformed HTTP request", true)
			return
		}
		cl := ls.hdr.ContentLength()
		if cl == -2 { // no Content-Length: a request without a body
			cl = 0
		}
		if cl < 0 {
			s.replyError(c, "other", fasthttp.StatusLengthRequired, "invalid_request", "send the body with Content-Length; chunked bodies are not accepted", true)
			return
		}
		if cl > s.cfg.MaxBodyBytes {
			s.replyError(c, "other", fasthttp.StatusRequestEntityTooLarge, "too_large", "request body over "+strconv.Itoa(s.cfg.MaxBodyBytes)+" bytes", true)
			return
		}
		if len(buf) < headLen+cl {
			// curl and others wait for this before sending a body over 1 KiB.
			if !c.continued && bytes.EqualFold(ls.hdr.Peek("Expect"), []byte("100-continue")) {
				c.continued = true
				_, _ = c.gc.Write([]byte("HTTP/1.1 100 Continue\r\n\r\n"))
			}
			return
		}
		ls.uri.Reset()
		if err := ls.uri.Parse(nil, ls.hdr.RequestURI()); err != nil {
			s.replyError(c, "other", fasthttp.StatusBadRequest, "invalid_request", "malformed request URI", true)
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
	case path == "/ready/" || path == "/ready" || path == "/live/" || path == "/live":
		s.probe(c, path)
	case strings.HasPrefix(path, "/ws/"):
		s.upgrade(c, raw[:headLen], path)
	case strings.HasPrefix(path, "/api/"):
		s.serveAPI(c, raw)
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
	if closeConn || ls.hdr.ConnectionClose() || (!ls.hdr.IsHTTP11() && !bytes.EqualFold(ls.hdr.Peek("Connection"), []byte("keep-alive"))) {
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
		s.api(&ctx)
	}()
	timer := time.NewTimer(s.cfg.APITimeout)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		// The handler goes on in the background; the client is answered now.
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
