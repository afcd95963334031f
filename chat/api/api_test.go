package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/wsedge/wsedge/chat/history"
)

type fakeBackend struct {
	threads map[string][]history.Message
	down    bool
	hang    bool // block until the request's context ends
}

func (f *fakeBackend) History(ctx context.Context, id string) ([]history.Message, error) {
	if f.hang {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if f.down {
		return nil, errors.New("connection refused")
	}
	if m, ok := f.threads[id]; ok {
		return m, nil
	}
	return nil, history.ErrNotFound
}

func (f *fakeBackend) Summarize(ctx context.Context, id string) (string, error) {
	msgs, err := f.History(ctx, id)
	if err != nil {
		return "", err
	}
	return "summary of " + msgs[0].Content, nil
}

// serve runs the handler on an in-memory listener behind a real fasthttp
// server and returns a client for it. Each request's context ends after
// timeout, as the edge's does.
func serve(t *testing.T, cfg Config, b Backend) *fasthttp.Client {
	t.Helper()
	return serveTimeout(t, cfg, b, 5*time.Second)
}

func serveTimeout(t *testing.T, cfg Config, b Backend, timeout time.Duration) *fasthttp.Client {
	t.Helper()
	h, err := NewHandler(cfg, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln := fasthttputil.NewInmemoryListener()
	srv := &fasthttp.Server{Handler: func(rc *fasthttp.RequestCtx) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		h(ctx, rc)
	}, MaxRequestBodySize: 1 << 20}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown(); _ = ln.Close() })
	return &fasthttp.Client{Dial: func(string) (net.Conn, error) { return ln.Dial() }}
}

type reply struct {
	status int
	body   map[string]any
	header *fasthttp.ResponseHeader
}

func do(t *testing.T, c *fasthttp.Client, method, path string, headers map[string]string, body string) reply {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://chat.test" + path)
	req.Header.SetMethod(method)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	if body != "" {
		req.SetBodyString(body)
		req.Header.SetContentType("application/json")
	}
	if err := c.DoTimeout(req, resp, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	r := reply{status: resp.StatusCode(), header: &fasthttp.ResponseHeader{}}
	resp.Header.CopyTo(r.header)
	if ct := string(resp.Header.ContentType()); ct != "application/json" {
		t.Fatalf("%s %s: content type %q", method, path, ct)
	}
	if err := json.Unmarshal(resp.Body(), &r.body); err != nil {
		t.Fatalf("%s %s: body %q: %v", method, path, resp.Body(), err)
	}
	return r
}

func TestAPI(t *testing.T) {
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	b := &fakeBackend{threads: map[string][]history.Message{
		"t1": {{Role: "user", Content: "hi", CreatedAt: created}, {Role: "assistant", Content: "hello", Escalated: true, CreatedAt: created}},
	}}
	c := serve(t, Config{APIKey: "k3y", CSRFSecret: []byte("secret"), MaxBody: 256}, b)
	tokReply := do(t, c, "GET", "/api/csrf-token/", nil, "")
	token, _ := tokReply.body["csrfToken"].(string)
	if tokReply.status != 200 || token == "" {
		t.Fatalf("csrf-token: %d %v", tokReply.status, tokReply.body)
	}
	foreign := csrf{secret: []byte("other secret"), ttl: time.Hour}.issue(time.Now())
	expired := csrf{secret: []byte("secret"), ttl: -time.Second}.issue(time.Now())
	good := map[string]string{"Authorization": "k3y", "X-CSRFToken": token}
	bearer := map[string]string{"Authorization": "Bearer k3y", "X-CSRFToken": token}
	tests := []struct {
		name, method, path string
		headers            map[string]string
		body               string
		status             int
		code               string
	}{
		{"history", "POST", "/api/thread/history", good, `{"thread_id":"t1"}`, 200, ""},
		{"history with bearer and slash", "POST", "/api/thread/history/", bearer, `{"thread_id":"t1"}`, 200, ""},
		{"summarize", "POST", "/api/thread/summarize", good, `{"thread_id":"t1"}`, 200, ""},
		{"csrf without slash", "GET", "/api/csrf-token", nil, "", 200, ""},
		{"no api key", "POST", "/api/thread/history", map[string]string{"X-CSRFToken": token}, `{"thread_id":"t1"}`, 401, "unauthorized"},
		{"wrong api key", "POST", "/api/thread/history", map[string]string{"Authorization": "k3yy", "X-CSRFToken": token}, `{"thread_id":"t1"}`, 401, "unauthorized"},
		{"401 before 403", "POST", "/api/thread/summarize", map[string]string{"Authorization": "nope"}, `{"thread_id":"t1"}`, 401, "unauthorized"},
		{"no csrf", "POST", "/api/thread/history", map[string]string{"Authorization": "k3y"}, `{"thread_id":"t1"}`, 403, "csrf_failed"},
		{"forged csrf", "POST", "/api/thread/history", map[string]string{"Authorization": "k3y", "X-CSRFToken": foreign}, `{"thread_id":"t1"}`, 403, "csrf_failed"},
		{"expired csrf", "POST", "/api/thread/history", map[string]string{"Authorization": "k3y", "X-CSRFToken": expired}, `{"thread_id":"t1"}`, 403, "csrf_failed"},
		{"garbage csrf", "POST", "/api/thread/history", map[string]string{"Authorization": "k3y", "X-CSRFToken": "a.b"}, `{"thread_id":"t1"}`, 403, "csrf_failed"},
		{"too large", "POST", "/api/thread/history", good, `{"thread_id":"t1","pad":"` + strings.Repeat("x", 300) + `"}`, 413, "too_large"},
		{"not json", "POST", "/api/thread/history", good, `{"thread_id":`, 400, "invalid_json"},
		{"empty body", "POST", "/api/thread/history", good, ``, 400, "invalid_json"},
		{"array", "POST", "/api/thread/history", good, `[]`, 400, "invalid_request"},
		{"no thread", "POST", "/api/thread/history", good, `{}`, 400, "invalid_request"},
		{"bad thread", "POST", "/api/thread/summarize", good, `{"thread_id":"a b"}`, 400, "invalid_request"},
		{"thread not string", "POST", "/api/thread/summarize", good, `{"thread_id":5}`, 400, "invalid_request"},
		{"unknown thread", "POST", "/api/thread/history", good, `{"thread_id":"nope"}`, 404, "thread_not_found"},
		{"unknown thread summary", "POST", "/api/thread/summarize", good, `{"thread_id":"nope"}`, 404, "thread_not_found"},
		{"GET history", "GET", "/api/thread/history", good, "", 405, "method_not_allowed"},
		{"POST csrf", "POST", "/api/csrf-token/", good, "", 405, "method_not_allowed"},
		{"unknown route", "GET", "/api/nope", nil, "", 404, "not_found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, c, tc.method, tc.path, tc.headers, tc.body)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %v", r.status, tc.status, r.body)
			}
			if tc.code != "" && (r.body["error"] != tc.code || r.body["message"] == "") {
				t.Fatalf("body %v, want error %q", r.body, tc.code)
			}
			if tc.status == 405 && len(r.header.Peek("Allow")) == 0 {
				t.Fatal("405 without Allow")
			}
		})
	}

	r := do(t, c, "POST", "/api/thread/history", good, `{"thread_id":"t1"}`)
	want := `{"messages":[{"content":"hi","created_at":"2026-01-02T03:04:05Z","role":"user"},` +
		`{"content":"hello","created_at":"2026-01-02T03:04:05Z","escalated":true,"role":"assistant"}],"thread_id":"t1"}`
	if got, _ := json.Marshal(r.body); string(got) != want {
		t.Fatalf("history body\n%s\nwant\n%s", got, want)
	}
	r = do(t, c, "POST", "/api/thread/summarize", good, `{"thread_id":"t1"}`)
	if r.body["thread_id"] != "t1" || r.body["summary"] != "summary of hi" {
		t.Fatalf("summary body %v", r.body)
	}
	b.down = true
	for _, p := range []string{"/api/thread/history", "/api/thread/summarize"} {
		if r := do(t, c, "POST", p, good, `{"thread_id":"t1"}`); r.status != 503 || r.body["error"] != "unavailable" {
			t.Fatalf("%s with backend down: %d %v", p, r.status, r.body)
		}
	}
}

func TestNoAPIKeyConfigured(t *testing.T) {
	b := &fakeBackend{threads: map[string][]history.Message{"t": {{Role: "user", Content: "x"}}}}
	c := serve(t, Config{CSRFSecret: []byte("s")}, b)
	token := do(t, c, "GET", "/api/csrf-token/", nil, "").body["csrfToken"].(string)
	if r := do(t, c, "POST", "/api/thread/history", map[string]string{"X-CSRFToken": token}, `{"thread_id":"t"}`); r.status != 200 {
		t.Fatalf("%d %v", r.status, r.body)
	}
	if r := do(t, c, "POST", "/api/thread/history", nil, `{"thread_id":"t"}`); r.status != 403 {
		t.Fatalf("CSRF not enforced without an API key: %d", r.status)
	}
}

// The handler's backend work ends with the context it is given (the edge's
// API timeout), and the client gets 503 unavailable.
func TestHandlerStopsWithContext(t *testing.T) {
	b := &fakeBackend{hang: true}
	c := serveTimeout(t, Config{CSRFSecret: []byte("s")}, b, 200*time.Millisecond)
	token := do(t, c, "GET", "/api/csrf-token/", nil, "").body["csrfToken"].(string)
	r := do(t, c, "POST", "/api/thread/history", map[string]string{"X-CSRFToken": token}, `{"thread_id":"t"}`)
	if r.status != 503 || r.body["error"] != "unavailable" {
		t.Fatalf("hung backend: %d %v", r.status, r.body)
	}
}

// Header names in any case, sent as raw bytes (fasthttp's client would
// normalize them).
func TestHeaderNamesAnyCase(t *testing.T) {
	b := &fakeBackend{threads: map[string][]history.Message{"t": {{Role: "user", Content: "x"}}}}
	h, err := NewHandler(Config{APIKey: "k3y", CSRFSecret: []byte("s")}, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	token := csrf{secret: []byte("s"), ttl: time.Hour}.issue(time.Now())
	body := `{"thread_id":"t"}`
	for _, names := range [][3]string{
		{"authorization", "x-csrftoken", "content-length"},
		{"AUTHORIZATION", "X-CSRFTOKEN", "CONTENT-LENGTH"},
		{"Authorization", "X-CSRFToken", "Content-Length"},
	} {
		raw := "POST /api/thread/history HTTP/1.1\r\nHost: x\r\n" + names[0] + ": Bearer k3y\r\n" +
			names[1] + ": " + token + "\r\n" + names[2] + ": " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
		var rc fasthttp.RequestCtx
		if err := rc.Request.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
			t.Fatal(err)
		}
		h(context.Background(), &rc)
		if rc.Response.StatusCode() != 200 {
			t.Fatalf("%v: %d %s", names, rc.Response.StatusCode(), rc.Response.Body())
		}
	}
}

func TestNewHandlerValidates(t *testing.T) {
	if _, err := NewHandler(Config{}, &fakeBackend{}, nil); err == nil {
		t.Fatal("no CSRF secret accepted")
	}
}

func FuzzCSRFToken(f *testing.F) {
	c := csrf{secret: []byte("fuzz"), ttl: time.Hour}
	now := time.Unix(1_800_000_000, 0)
	f.Add([]byte(c.issue(now)))
	f.Add([]byte("a.b"))
	f.Add([]byte("."))
	f.Fuzz(func(t *testing.T, tok []byte) {
		if c.valid(tok, now) {
			// A valid token must be one we could have signed: re-signing
			// its payload gives the same signature.
			i := strings.IndexByte(string(tok), '.')
			p, err := b64.DecodeString(string(tok[:i]))
			if err != nil || b64.EncodeToString(c.mac(p)) != string(tok[i+1:]) {
				t.Fatalf("accepted unsigned token %q", tok)
			}
		}
	})
}
