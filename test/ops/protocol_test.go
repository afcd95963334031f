package ops

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

// Exceptions, each with its reason. The replay is strict by default: a new
// section's examples fail the test until they are marked (see "Examples in
// this file" in docs/PROTOCOL.md) or listed here.
var (
	// unmarkedSections: headings whose plain ```json blocks are not replayed.
	unmarkedSections = map[string]string{}
	// unprovokedTypes: "route type" of server frames this scenario does not
	// make the server send.
	unprovokedTypes = map[string]string{
		"chat rewrite": "needs a Bedrock guardrail; cmd/wsedge/chat_e2e_test.go provokes it against the fake Bedrock",
	}
	// unprovokedErrors: error codes shown in examples that the scenario does
	// not provoke.
	unprovokedErrors = map[string]string{}
	// looseKeys hold any JSON value (passed through from clients or events).
	looseKeys = map[string]bool{"msg": true, "data": true}
	// mapKeys are objects keyed by data (client types), not by field names.
	mapKeys = map[string]bool{"by_type": true}
)

type example struct {
	line           int
	section        string
	dir, route     string // send|recv, session|chat|http
	first, refused bool
	method, path   string // http only
	body           string
	decoded        any
}

func (e example) String() string {
	return fmt.Sprintf("PROTOCOL.md:%d (%s) %s %s", e.line, e.section, e.dir, e.route)
}

var inlineFrame = regexp.MustCompile("`(\\{\"type\":\"([a-z_.]+)\"[^`]*)`")

// parseProtocol returns the marked examples, the unmarked json blocks and
// the types of inline frames in the prose.
func parseProtocol(t *testing.T, path string) (marked, unmarked []example, inline map[string]int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	inline = map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var (
		section string
		cur     *example
		inCode  bool
		body    []string
	)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case cur != nil && trimmed == "```":
			cur.body = strings.Join(body, "\n")
			if err := json.Unmarshal([]byte(cur.body), &cur.decoded); err != nil {
				t.Errorf("%v: not JSON: %v", *cur, err)
			}
			if cur.dir == "" {
				unmarked = append(unmarked, *cur)
			} else {
				marked = append(marked, *cur)
			}
			cur, body = nil, nil
		case cur != nil:
			body = append(body, line)
		case inCode && strings.HasPrefix(trimmed, "```"):
			inCode = false
		case inCode:
		case strings.HasPrefix(trimmed, "```json"):
			e := example{line: n, section: section}
			fields := strings.Fields(strings.TrimPrefix(trimmed, "```"))[1:]
			if len(fields) > 0 {
				if len(fields) < 2 || (fields[0] != "send" && fields[0] != "recv") {
					t.Errorf("PROTOCOL.md:%d: bad example marker %q", n, trimmed)
					continue
				}
				e.dir, e.route = fields[0], fields[1]
				rest := fields[2:]
				if e.route == "http" {
					if len(rest) != 2 {
						t.Errorf("PROTOCOL.md:%d: http examples need METHOD and path: %q", n, trimmed)
						continue
					}
					e.method, e.path = rest[0], rest[1]
				} else {
					for _, fl := range rest {
						switch fl {
						case "first":
							e.first = true
						case "refused":
							e.refused = true
						default:
							t.Errorf("PROTOCOL.md:%d: unknown flag %q", n, fl)
						}
					}
					if e.route != "session" && e.route != "chat" {
						t.Errorf("PROTOCOL.md:%d: unknown route %q", n, e.route)
					}
				}
			}
			cur = &e
		case strings.HasPrefix(trimmed, "```"):
			inCode = true
		case strings.HasPrefix(line, "#"):
			section = strings.TrimSpace(strings.TrimLeft(line, "#"))
		default:
			for _, m := range inlineFrame.FindAllStringSubmatch(line, -1) {
				inline[m[2]] = n
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return marked, unmarked, inline
}

// observed collects what the server really sent, by "route type" (and
// "http METHOD path" for HTTP bodies).
type observed struct {
	frames map[string][]any
	errors map[string]bool
}

func (o *observed) add(route string, m map[string]any) {
	key := route + " " + fmt.Sprint(m["type"])
	o.frames[key] = append(o.frames[key], any(m))
	if m["type"] == "error" {
		o.errors[fmt.Sprint(m["error"])] = true
	}
}

// TestProtocolExamples replays docs/PROTOCOL.md against a running server.
func TestProtocolExamples(t *testing.T) {
	doc := filepath.Join(repoRoot, "docs", "PROTOCOL.md")
	marked, unmarked, inline := parseProtocol(t, doc)
	for _, e := range unmarked {
		if _, ok := unmarkedSections[e.section]; !ok {
			t.Errorf("%v: a ```json block without a send/recv marker; mark it or list its section in unmarkedSections with a reason", e)
		}
	}
	if len(marked) < 20 {
		t.Fatalf("only %d marked examples found in %s", len(marked), doc)
	}

	s := startServer(t, map[string]string{"LOCAL_MODEL_DELAY": "10ms", "RECONNECT_JITTER": "1s"})
	obs, listener := scenario(t, s)

	// Inline frames must name a type some example shows.
	shown := map[string]bool{}
	for _, e := range marked {
		if m, ok := e.decoded.(map[string]any); ok {
			shown[fmt.Sprint(m["type"])] = true
		}
	}
	for typ, line := range inline {
		if !shown[typ] && typ != "console.rtt" {
			t.Errorf("PROTOCOL.md:%d: inline frame of type %q, which no example shows", line, typ)
		}
	}

	for _, e := range marked {
		if e.dir == "send" {
			t.Run(fmt.Sprintf("line%d_send_%s", e.line, e.route), func(t *testing.T) { replaySend(t, s, e) })
		}
	}
	// Shutdown last: the reconnect hint, then 1001.
	s.Terminate()
	m, _ := listener.until("reconnect")
	obs.add("session", m)
	if code := listener.closeCode(); code != 1001 {
		t.Errorf("on shutdown: close %d, want 1001", code)
	}
	for _, e := range marked {
		if e.dir == "recv" {
			t.Run(fmt.Sprintf("line%d_recv_%s", e.line, e.route), func(t *testing.T) { checkRecv(t, e, obs) })
		}
	}
}

// checkRecv compares a server→client example by shape with real frames.
func checkRecv(t *testing.T, e example, obs *observed) {
	key := e.route
	if e.route == "http" {
		key = "http " + e.method + " " + e.path
	} else {
		m, ok := e.decoded.(map[string]any)
		if !ok {
			t.Fatalf("%v: a frame must be a JSON object", e)
		}
		key += " " + fmt.Sprint(m["type"])
		if m["type"] == "error" {
			code := fmt.Sprint(m["error"])
			if _, ok := unprovokedErrors[code]; !ok && !obs.errors[code] {
				t.Errorf("%v: error code %q was never sent by the server in the scenario", e, code)
			}
		}
	}
	real := obs.frames[key]
	if len(real) == 0 {
		if _, ok := unprovokedTypes[key]; !ok {
			t.Errorf("%v: the server never sent a %q in the scenario", e, key)
		}
		return
	}
	var diffs []string
	for _, r := range real {
		d := shapeDiff(e.decoded, r, "", "")
		if d == "" {
			return
		}
		diffs = append(diffs, d)
	}
	slices.Sort(diffs)
	t.Errorf("%v: no real %q has the example's shape:\n  example: %s\n  differences: %s", e, key, e.body, strings.Join(slices.Compact(diffs), "\n               "))
}

// shapeDiff describes how real differs in shape from doc ("" if it does not).
func shapeDiff(doc, real any, key, at string) string {
	if looseKeys[key] {
		return ""
	}
	switch d := doc.(type) {
	case map[string]any:
		r, ok := real.(map[string]any)
		if !ok {
			return fmt.Sprintf("%s: object in the example, %T in reality", at, real)
		}
		if mapKeys[key] {
			for _, dv := range d {
				for _, rv := range r {
					if diff := shapeDiff(dv, rv, "", at+".*"); diff != "" {
						return diff
					}
				}
			}
			return ""
		}
		var missing, extra []string
		for k := range d {
			if _, ok := r[k]; !ok {
				extra = append(extra, k)
			}
		}
		for k := range r {
			if _, ok := d[k]; !ok {
				missing = append(missing, k)
			}
		}
		if len(missing)+len(extra) > 0 {
			sort.Strings(missing)
			sort.Strings(extra)
			return fmt.Sprintf("%s: keys only in the example %v, only in reality %v", at, extra, missing)
		}
		for k, dv := range d {
			if diff := shapeDiff(dv, r[k], k, at+"."+k); diff != "" {
				return diff
			}
		}
		return ""
	case []any:
		r, ok := real.([]any)
		if !ok {
			return fmt.Sprintf("%s: array in the example, %T in reality", at, real)
		}
		for _, dv := range d {
			for _, rv := range r {
				if diff := shapeDiff(dv, rv, key, at+"[]"); diff != "" {
					return diff
				}
			}
		}
		return ""
	default:
		if fmt.Sprintf("%T", doc) != fmt.Sprintf("%T", real) {
			return fmt.Sprintf("%s: %T in the example, %T in reality", at, doc, real)
		}
		return ""
	}
}

// scenario makes the server send every kind of frame and body the document
// shows, and records them. It returns a session socket left open for the
// shutdown at the end.
func scenario(t *testing.T, s *server) (*observed, *wsConn) {
	obs := &observed{frames: map[string][]any{}, errors: map[string]bool{}}
	rec := func(route string, ms ...map[string]any) {
		for _, m := range ms {
			obs.add(route, m)
		}
	}
	// Two listeners, hello, presence, broadcast, echo, errors after hello.
	a := dialWS(t, s, "/ws/session/11/")
	m, _ := a.until("connected")
	rec("session", m)
	a.send(`{"type":"hello","user_type":"admin","client_type":"web"}`)
	b := dialWS(t, s, "/ws/session/11/")
	b.until("connected")
	b.send(`{"type":"hello","user_type":"agent","client_type":"ios"}`)
	b.send(`{"type":"presence"}`)
	b.until("presence") // b's hello is processed: it is a member now
	a.send(`{"type":"presence"}`)
	m, before := a.until("presence")
	rec("session", append(before, m)...)
	a.send(`{"type":"broadcast","msg":"hello","data":{"order":42}}`)
	m, _ = b.until("session_message")
	rec("session", m)
	m, before = a.until("session_message")
	rec("session", append(before, m)...)
	a.send(`{"type":"ping","t":1}`)
	m, before = a.until("echo")
	rec("session", append(before, m)...)
	a.send(`not json`)
	a.send(`{"type":"hello","user_type":"again"}`)
	a.sendBinary([]byte{1, 2, 3})
	for range 3 {
		m, before = a.until("error")
		rec("session", append(before, m)...)
	}
	// Not a hello first: hello_required, then 4001.
	c := dialWS(t, s, "/ws/session/11/")
	c.until("connected")
	c.send(`{"type":"broadcast","msg":"too early"}`)
	m, _ = c.until("error")
	rec("session", m)
	if code := c.closeCode(); code != 4001 {
		t.Errorf("broadcast before hello: close %d, want 4001", code)
	}

	// Chat, watched by a session listener of the thread.
	w := dialWS(t, s, "/ws/session/demo-thread/")
	w.until("connected")
	w.send(`{"type":"hello","user_type":"agent","client_type":"web"}`)
	w.send(`{"type":"presence"}`)
	w.until("presence") // the hello is processed: mirrored frames will reach w
	ch := dialWS(t, s, "/ws/chat/")
	ch.send(`{"type":"chat","message":"Hello, how can you help?","thread_id":"demo-thread","channel":"web","data":[]}`)
	m, before = ch.until("end")
	rec("chat", append(before, m)...)
	for range 2 {
		m, _ = w.until("session_message")
		rec("session", m)
	}
	ch.send(`{"type":"chat","message":"hi","channel":"web"}`)
	m, _ = ch.until("error")
	rec("chat", m)
	ch.send(`{"type":"chat","message":"I want a human","thread_id":"escalated-thread"}`)
	m, before = ch.until("end")
	rec("chat", append(before, m)...)
	if code := ch.closeCode(); code != 1000 {
		t.Errorf("after escalation: close %d, want 1000", code)
	}

	// HTTP bodies.
	for _, p := range []string{"/health/", "/api/csrf-token/"} {
		code, _, body := get(t, s.HTTP(p))
		if code != http.StatusOK {
			t.Errorf("GET %s = %d", p, code)
		}
		recHTTP(t, obs, "GET "+p, body)
	}
	for _, req := range []struct{ path, body string }{
		{"/api/thread/history", `{"thread_id":"demo-thread"}`},
		{"/api/thread/summarize", `{"thread_id":"demo-thread"}`},
		{"/api/thread/history", `{"thread_id":"no-such-thread"}`},
	} {
		_, body := post(t, s, req.path, req.body)
		recHTTP(t, obs, "POST "+req.path, body)
	}
	return obs, a
}

func recHTTP(t *testing.T, obs *observed, key string, body []byte) {
	t.Helper()
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Errorf("%s: body %q is not JSON", key, body)
		return
	}
	obs.frames["http "+key] = append(obs.frames["http "+key], v)
}

// post sends an API request with a fresh CSRF token.
func post(t *testing.T, s *server, path, body string) (int, []byte) {
	t.Helper()
	_, _, tok := get(t, s.HTTP("/api/csrf-token/"))
	var ct struct {
		CSRFToken string `json:"csrfToken"`
	}
	if err := json.Unmarshal(tok, &ct); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, s.HTTP(path), strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-CSRFToken", ct.CSRFToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// replaySend sends a client→server example and checks it is accepted (or,
// when marked refused, that it is refused with an error frame).
func replaySend(t *testing.T, s *server, e example) {
	if e.route == "http" {
		code, body := post(t, s, e.path, e.body)
		if code != http.StatusOK {
			t.Errorf("%v: %d %s", e, code, body)
		}
		return
	}
	m, _ := e.decoded.(map[string]any)
	switch e.route {
	case "session":
		c := dialWS(t, s, "/ws/session/replay/")
		c.until("connected")
		if !e.first {
			c.send(`{"type":"hello","user_type":"replay","client_type":"test"}`)
		}
		c.send(e.body)
		if e.refused {
			c.until("error")
			return
		}
		c.send(`{"type":"presence"}`)
		_, before := c.until("presence")
		for _, f := range before {
			if f["type"] == "error" {
				t.Errorf("%v: answered with %v", e, f)
			}
		}
	case "chat":
		c := dialWS(t, s, "/ws/chat/")
		if m["type"] == "cancel" {
			c.send(`{"type":"chat","message":"a long enough question"}`)
			c.until("session_started")
		}
		c.send(e.body)
		_, before := c.until("end")
		for _, f := range before {
			if f["type"] == "error" {
				t.Errorf("%v: answered with %v", e, f)
			}
		}
	}
}
