package edge

import (
	"bufio"
	"bytes"
	"testing"

	"github.com/valyala/fasthttp"
)

// FuzzHTTPHead feeds arbitrary bytes to the edge's request-head reader, the
// code that decides where a request ends before anything is routed. Every
// input must end in one of three ways, without a panic: "wait for more", an
// error answer (4xx, connection closed), or a request whose head ends exactly
// where fasthttp, reading the same bytes on its own, ends it. Any other
// outcome is a desync: the edge and its parser (or a proxy in front) would
// see different requests on one connection. Seeds: testdata/fuzz/FuzzHTTPHead.
func FuzzHTTPHead(f *testing.F) {
	for _, s := range []string{
		"GET /health/ HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /health/ HTTP/1.1\r\nHost: x\n\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /api/thread/history HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}",
	} {
		f.Add([]byte(s))
	}
	cfg := Defaults()
	ls := newLoopState(&Server{cfg: cfg}, nil)
	f.Fuzz(func(t *testing.T, data []byte) {
		headLen, bodyLen, herr := ls.readHead(data, cfg.MaxHeaderBytes, cfg.MaxBodyBytes)

		// fasthttp's own view of the whole input.
		var hdr fasthttp.RequestHeader
		rd := bytes.NewReader(data)
		br := bufio.NewReaderSize(rd, max(len(data), 16))
		ferr := hdr.Read(br)
		fEnd := len(data) - br.Buffered() - rd.Len()

		switch {
		case herr != nil:
			if herr.status < 400 || herr.status > 499 || herr.code == "" || herr.msg == "" {
				t.Fatalf("error answer %+v", herr)
			}
		case headLen == 0:
			if len(data) > cfg.MaxHeaderBytes {
				t.Fatalf("waiting for more with %d bytes buffered, over the head limit", len(data))
			}
			if ferr == nil {
				t.Fatalf("edge waits for more; fasthttp read a %d-byte head", fEnd)
			}
		default:
			if ferr != nil || fEnd != headLen {
				t.Fatalf("desync: edge head %d bytes, fasthttp %d (%v)", headLen, fEnd, ferr)
			}
			if headLen > cfg.MaxHeaderBytes || bodyLen < 0 || bodyLen > cfg.MaxBodyBytes {
				t.Fatalf("head %d, body %d: over the limits", headLen, bodyLen)
			}
			if !bytes.HasSuffix(data[:headLen], []byte("\r\n\r\n")) {
				t.Fatalf("head does not end with an empty CRLF line: %q", data[:headLen])
			}
		}
	})
}
