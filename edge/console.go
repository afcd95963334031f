package edge

import (
	"bytes"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/wsedge/wsedge/edge/console"
)

// serveConsole answers the built-in console's files (CONSOLE=1) on the loop:
// they are small and precomputed, so there is nothing to hand off.
func (s *Server) serveConsole(c *conn, path string) {
	ls := c.ls
	if !ls.hdr.IsGet() && !ls.hdr.IsHead() {
		s.replyError(c, "console", fasthttp.StatusMethodNotAllowed, "method_not_allowed", "use GET", false)
		return
	}
	if path+"/" == console.Prefix {
		s.consoleReply(c, fasthttp.StatusMovedPermanently, console.File{}, console.Prefix)
		return
	}
	f, ok := s.console.Lookup(path)
	if !ok {
		s.replyError(c, "console", fasthttp.StatusNotFound, "not_found", "no such console file", false)
		return
	}
	if inm := ls.hdr.Peek("If-None-Match"); len(inm) > 0 && bytes.Contains(inm, []byte(f.ETag)) {
		s.consoleReply(c, fasthttp.StatusNotModified, console.File{ETag: f.ETag}, "")
		return
	}
	s.consoleReply(c, fasthttp.StatusOK, f, "")
}

func (s *Server) consoleReply(c *conn, status int, f console.File, location string) {
	ls := c.ls
	resp := &ls.resp
	resp.Reset()
	resp.SetStatusCode(status)
	if f.ContentType != "" {
		resp.Header.SetContentType(f.ContentType)
	}
	if f.ETag != "" {
		resp.Header.Set("ETag", f.ETag)
	}
	if location != "" {
		resp.Header.Set("Location", location)
	}
	resp.Header.Set("Cache-Control", "no-cache")
	resp.Header.Set("X-Content-Type-Options", "nosniff")
	resp.Header.Set("Content-Security-Policy", console.CSP)
	resp.SetBodyRaw(f.Body)
	resp.SkipBody = ls.hdr.IsHead() || status == fasthttp.StatusNotModified
	if ls.hdr.ConnectionClose() || (!ls.hdr.IsHTTP11() && !bytes.EqualFold(ls.hdr.Peek("Connection"), []byte("keep-alive"))) {
		resp.SetConnectionClose()
		c.closeTCP = true
	}
	ls.out.Reset()
	_, _ = resp.WriteTo(&ls.out)
	_, _ = c.gc.Write(ls.out.Bytes())
	s.metrics.httpRequests.WithLabelValues("console", strconv.Itoa(status)).Inc()
}
