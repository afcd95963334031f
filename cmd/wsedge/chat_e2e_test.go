package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/jackc/pgx/v5"

	"github.com/wsedge/wsedge/chat/model/fakebedrock"
	"github.com/wsedge/wsedge/internal/testenv"
)

// chatServer is the real wsedge binary with Bedrock settings pointed at an
// in-process fake Bedrock served over TLS with HTTP/2 (trusted through
// AWS_CA_BUNDLE, as a private endpoint would be).
type chatServer struct {
	addr, admin string
	fake        *fakebedrock.Server
	cmd         *exec.Cmd
	done        chan struct{}
	logs        testenv.Buffer
}

func startChatServer(t *testing.T, h fakebedrock.Handler, vars ...string) *chatServer {
	t.Helper()
	fake, err := fakebedrock.StartTLS(h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fake.Close() })
	ca := filepath.Join(t.TempDir(), "fake-bedrock.pem")
	if err := os.WriteFile(ca, fake.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &chatServer{addr: testenv.FreeAddr(t), admin: testenv.FreeAddr(t), fake: fake, done: make(chan struct{})}
	s.cmd = exec.Command(e2eBinary(t))
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "CHAT_") && !strings.HasPrefix(kv, "BEDROCK_") &&
			!strings.HasPrefix(kv, "DATABASE_") && !strings.HasPrefix(kv, "PSQL_") {
			env = append(env, kv)
		}
	}
	s.cmd.Env = append(env, "DEBUG=1", "LOG_FORMAT=json", "ADDR="+s.addr, "ADMIN_ADDR="+s.admin, "EVENT_LOOPS=1",
		"BEDROCK_MODEL_ID_CHAT=chat-model", "AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=AKIDFAKE", "AWS_SECRET_ACCESS_KEY=fake",
		"AWS_ENDPOINT_URL_BEDROCK_RUNTIME="+fake.URL, "AWS_CA_BUNDLE="+ca, "AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=/nonexistent", "AWS_SHARED_CREDENTIALS_FILE=/nonexistent")
	s.cmd.Env = append(s.cmd.Env, vars...)
	s.cmd.Stderr = &s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		_ = s.cmd.Process.Signal(syscall.SIGKILL)
		<-s.done
		if t.Failed() {
			t.Logf("server log:\n%s", s.log())
		}
	})
	testenv.WaitFor(t, "wsedge /health/", 15*time.Second, func() bool {
		resp, err := http.Get("http://" + s.addr + "/health/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return s
}

func (s *chatServer) log() string { return s.logs.String() }

// chatClient is a /ws/chat/ socket whose frames a goroutine reads into a
// channel, so that a test can wait for one with a deadline.
type chatClient struct {
	t      *testing.T
	conn   net.Conn
	frames chan map[string]any
	closed chan ws.StatusCode
}

func (s *chatServer) dial(t *testing.T) *chatClient {
	t.Helper()
	conn, br, _, err := ws.Dial(context.Background(), "ws://"+s.addr+"/ws/chat/")
	if err != nil {
		t.Fatal(err)
	}
	c := &chatClient{t: t, conn: conn, frames: make(chan map[string]any, 1024), closed: make(chan ws.StatusCode, 1)}
	var r io.Reader = conn
	if br != nil {
		r = io.MultiReader(br, conn)
	}
	go func() {
		defer close(c.frames)
		for {
			h, err := ws.ReadHeader(r)
			if err != nil {
				return
			}
			p := make([]byte, h.Length)
			if _, err := io.ReadFull(r, p); err != nil {
				return
			}
			if h.Masked {
				ws.Cipher(p, h.Mask, 0)
			}
			switch h.OpCode {
			case ws.OpText:
				var m map[string]any
				if json.Unmarshal(p, &m) == nil {
					c.frames <- m
				}
			case ws.OpClose:
				code, _ := ws.ParseCloseFrameData(p)
				c.closed <- code
				return
			}
		}
	}()
	t.Cleanup(func() { conn.Close() })
	return c
}

func (c *chatClient) send(s string) {
	c.t.Helper()
	if err := wsutil.WriteClientText(c.conn, []byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

func (c *chatClient) next() map[string]any {
	c.t.Helper()
	select {
	case m, ok := <-c.frames:
		if !ok {
			c.t.Fatal("socket closed")
		}
		return m
	case <-time.After(15 * time.Second):
		c.t.Fatal("no frame within 15 s")
	}
	return nil
}

// expect returns the next frame, which must have type typ ("error:<code>"
// for an error frame).
func (c *chatClient) expect(typ string) map[string]any {
	c.t.Helper()
	m := c.next()
	got, _ := m["type"].(string)
	if got == "error" {
		got += ":" + fmt.Sprint(m["error"])
	}
	if got != typ {
		c.t.Fatalf("want %s, got %v", typ, m)
	}
	return m
}

// turn sends a chat message and reads the turn to its end; it returns the
// frame types and what the client shows (the tokens after the last rewrite).
func (c *chatClient) turn(msg string) (types []string, visible string) {
	c.t.Helper()
	b, _ := json.Marshal(map[string]any{"type": "chat", "message": msg, "thread_id": "e2e"})
	c.send(string(b))
	for {
		m := c.next()
		typ, _ := m["type"].(string)
		if typ == "error" {
			typ += ":" + fmt.Sprint(m["error"])
		}
		types = append(types, typ)
		switch typ {
		case "token":
			visible += m["content"].(string)
		case "rewrite":
			visible = ""
		case "end":
			return types, visible
		}
		if strings.HasPrefix(typ, "error:") && len(types) == 1 {
			return types, visible
		}
	}
}

// scripts answers the fake's requests by the last user message, so that one
// server serves every scenario of a test.
type scripts struct {
	mu    sync.Mutex
	gates map[string]chan struct{}
	guard *fakebedrock.Guardrail
	calls map[string]int
}

func (s *scripts) gate(name string) chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gates[name] == nil {
		s.gates[name] = make(chan struct{})
	}
	return s.gates[name]
}

// firstDelay is the fake's own delay before the first chunk.
const firstDelay = 150 * time.Millisecond

func (s *scripts) handle(r fakebedrock.Request) fakebedrock.Script {
	msg := r.Messages[len(r.Messages)-1].Text
	s.mu.Lock()
	s.calls[msg]++
	call := s.calls[msg]
	s.mu.Unlock()
	var sc fakebedrock.Script
	switch {
	case strings.HasPrefix(msg, "gated"):
		// The rest of the answer is produced only once the test has seen
		// the first token: a turn that held the answer back would hang.
		sc = fakebedrock.Script{Steps: []fakebedrock.Step{{Delay: firstDelay, Text: "first "},
			{Gate: s.gate(msg), Text: "second"}, {Stop: "end_turn"}}}
	case strings.HasPrefix(msg, "stall"):
		sc = fakebedrock.Script{Steps: []fakebedrock.Step{{Text: "partial "}, {Stall: true}}}
	case strings.HasPrefix(msg, "provoke") && call == 1:
		sc = fakebedrock.Tokens([]string{"Sure, ", "here is the forbidden part", " and more"}, time.Millisecond, "")
	default:
		sc = fakebedrock.Tokens([]string{"Hi ", "there"}, time.Millisecond, "")
	}
	sc.Guardrail = s.guard
	return sc
}

func newScripts(guarded bool) *scripts {
	s := &scripts{gates: map[string]chan struct{}{}, calls: map[string]int{}}
	if guarded {
		s.guard = &fakebedrock.Guardrail{Blocked: []string{"forbidden"}, ScanDelay: 5 * time.Millisecond}
	}
	return s
}

// metric returns the value of the sample whose line starts with prefix on
// the admin /metrics page, or -1.
func (s *chatServer) metric(t *testing.T, prefix string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + s.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, prefix+" ") {
			var v float64
			_, _ = fmt.Sscan(strings.TrimPrefix(line, prefix+" "), &v)
			return v
		}
	}
	return -1
}

// Cancel, turn_in_progress, disconnect and stall, with and without a
// guardrail, through the real binary: edge, chat pool, Bedrock SDK over
// TLS+HTTP/2 to the fake. A well-behaved client on the same event loop
// (EVENT_LOOPS=1) completes a turn after each scenario.
func TestChatTurnsThroughEdge(t *testing.T) {
	for _, guarded := range []bool{false, true} {
		t.Run(map[bool]string{false: "no guardrail", true: "guardrail"}[guarded], func(t *testing.T) {
			sc := newScripts(guarded)
			vars := []string{"BEDROCK_IDLE_TIMEOUT=1s"}
			if guarded {
				vars = append(vars, "BEDROCK_GUARDRAIL_ID=gr-e2e", "BEDROCK_GUARDRAIL_VERSION=1", "MAXIMUM_GUARDRAIL_REWRITES=2")
			}
			srv := startChatServer(t, sc.handle, vars...)
			bystander := srv.dial(t)
			wellBehaved := func() {
				t.Helper()
				if types, text := bystander.turn("hello"); text != "Hi there" || types[len(types)-1] != "end" {
					t.Fatalf("well-behaved client: %v %q", types, text)
				}
			}
			wellBehaved()

			t.Run("first token streams before the answer is complete", func(t *testing.T) {
				c := srv.dial(t)
				start := time.Now()
				c.send(`{"type":"chat","message":"gated 1","thread_id":"gated"}`)
				c.expect("session_started")
				tok := c.expect("token")
				added := time.Since(start) - firstDelay
				if guarded {
					added -= sc.guard.ScanDelay
				}
				t.Logf("first token %v after the fake's own first-chunk delay", added)
				if tok["content"] != "first " {
					t.Fatalf("first token %v", tok)
				}
				close(sc.gate("gated 1")) // only now does the fake produce the rest
				if c.expect("token")["content"] != "second" {
					t.Fatal("second token")
				}
				c.expect("end")
			})

			// stalled starts a turn whose upstream stalls after one token;
			// closed waits until the fake has seen that stream closed.
			stalled := func(t *testing.T, msg string) (c *chatClient, closed func()) {
				c = srv.dial(t)
				aborted := srv.fake.Aborted()
				c.send(chatFrame("stalled", msg))
				c.expect("session_started")
				c.expect("token")
				return c, func() {
					testenv.WaitFor(t, "upstream stream closed", 5*time.Second, func() bool { return srv.fake.Aborted() == aborted+1 })
				}
			}

			t.Run("cancel ends the turn and closes the upstream stream", func(t *testing.T) {
				c, closed := stalled(t, "stall cancel")
				c.send(chatFrame("stalled", "second"))
				c.expect("error:turn_in_progress")
				start := time.Now()
				c.send(`{"type":"cancel"}`)
				c.expect("end")
				if d := time.Since(start); d > time.Second {
					t.Fatalf("cancel took %v to end the turn", d)
				}
				closed()
				wellBehaved()
			})

			t.Run("disconnect closes the upstream stream", func(t *testing.T) {
				c, closed := stalled(t, "stall gone")
				c.conn.Close()
				closed()
				wellBehaved()
			})

			t.Run("stall fails the turn after BEDROCK_IDLE_TIMEOUT", func(t *testing.T) {
				c := srv.dial(t)
				aborted := srv.fake.Aborted()
				types, _ := c.turn("stall idle")
				if strings.Join(types, ",") != "session_started,token,error:upstream_error,end" {
					t.Fatalf("frames %v", types)
				}
				testenv.WaitFor(t, "upstream stream closed", 5*time.Second, func() bool { return srv.fake.Aborted() == aborted+1 })
				wellBehaved()
			})

			t.Run("guardrail intervention", func(t *testing.T) {
				c := srv.dial(t)
				types, text := c.turn("provoke")
				joined := strings.Join(types, ",")
				if !guarded {
					if text != "Sure, here is the forbidden part and more" || strings.Contains(joined, "rewrite") {
						t.Fatalf("unguarded: %v %q", types, text)
					}
					return
				}
				// Sync stream processing: "Sure, " passed and was shown, the
				// violating chunk was withheld by the guardrail, its blocked
				// message followed, then rewrite and the regenerated answer.
				if joined != "session_started,token,token,rewrite,token,token,end" || text != "Hi there" {
					t.Fatalf("frames %v, shown %q", types, text)
				}
			})

			if got := srv.metric(t, `wsedge_chat_model_tokens_total{direction="output",model="chat-model"}`); got <= 0 {
				t.Fatalf("output tokens metric %v", got)
			}
			if got := srv.metric(t, `wsedge_chat_model_tokens_total{direction="input",model="chat-model"}`); got <= 0 {
				t.Fatalf("input tokens metric %v", got)
			}
			logs := srv.log()
			if !strings.Contains(logs, `"msg":"chat turn ended"`) || !strings.Contains(logs, `"input_tokens":10`) ||
				!strings.Contains(logs, `"output_tokens":2`) {
				t.Fatalf("no per-turn log line with tokens:\n%s", logs)
			}
			if guarded && !strings.Contains(logs, `"guardrail":"Guardrail blocked.; contentPolicy MISCONDUCT"`) {
				t.Fatal("the guardrail trace is not in the turn's log line")
			}
			for _, r := range srv.fake.Requests() {
				if r.Proto != "HTTP/2.0" {
					t.Fatalf("request over %s", r.Proto)
				}
			}
			if n := srv.fake.Connections(); n > 2 {
				t.Fatalf("%d upstream connections for %d requests: the transport is not shared", n, len(srv.fake.Requests()))
			}
		})
	}
}

// api calls POST /api/thread/<op> with a fresh CSRF token.
func (s *chatServer) api(t *testing.T, op, thread string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get("http://" + s.addr + "/api/csrf-token/")
	if err != nil {
		t.Fatal(err)
	}
	var tok struct{ CSRFToken string }
	_ = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	req, _ := http.NewRequest("POST", "http://"+s.addr+"/api/thread/"+op, strings.NewReader(`{"thread_id":"`+thread+`"}`))
	req.Header.Set("X-CSRFToken", tok.CSRFToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func chatFrame(thread, msg string) string {
	b, _ := json.Marshal(map[string]any{"type": "chat", "message": msg, "thread_id": thread})
	return string(b)
}

// readTurn reads an accepted turn to its end and returns the text shown.
func (c *chatClient) readTurn() string {
	c.t.Helper()
	c.expect("session_started")
	text := ""
	for {
		m := c.next()
		switch m["type"] {
		case "token":
			text += m["content"].(string)
		case "end":
			return text
		case "error":
			c.t.Fatalf("turn failed: %v", m)
		}
	}
}

func runeCount(s string) int { return len([]rune(s)) }

// CHAT_THREAD_TURN_RATE: sockets that each stay within their own turn rate
// cannot together drive one thread past the thread's; the refused socket
// keeps its allowance for other threads, and a socket on another thread of
// the same event loop is not affected.
func TestChatThreadTurnRate(t *testing.T) {
	srv := startChatServer(t, func(fakebedrock.Request) fakebedrock.Script {
		return fakebedrock.Tokens([]string{"ok"}, 0, "")
	}, "CHAT_TURN_RATE=1", "CHAT_TURN_BURST=2", "CHAT_THREAD_TURN_RATE=1", "CHAT_THREAD_TURN_BURST=3")
	a, b := srv.dial(t), srv.dial(t)
	a.send(chatFrame("shared", "1"))
	a.readTurn()
	a.send(chatFrame("shared", "2"))
	a.readTurn()
	b.send(chatFrame("shared", "3"))
	b.readTurn()
	// b has one turn of its own left, the thread none.
	b.send(chatFrame("shared", "4"))
	if m := b.expect("error:rate_limited"); !strings.Contains(m["message"].(string), "thread") {
		t.Fatalf("error %v, want the thread's rate", m)
	}
	// The refused turn was given back to b's own bucket.
	b.send(chatFrame("elsewhere", "5"))
	b.readTurn()
	b.send(chatFrame("elsewhere", "6"))
	if m := b.expect("error:rate_limited"); !strings.Contains(m["message"].(string), "connection") {
		t.Fatalf("error %v, want the socket's rate", m)
	}
	other := srv.dial(t)
	other.send(chatFrame("other", "7"))
	other.readTurn()
	if n := srv.metric(t, `wsedge_chat_pool_rejections_total{reason="thread_rate_limited"}`); n != 1 {
		t.Fatalf("thread_rate_limited rejections %v, want 1", n)
	}
}

// Every byte bound of the chat, through the real binary with PostgreSQL
// history: message length, turn rate, what is sent to the model, the stored
// answer, the history API response, the summary request, and retention.
func TestChatLimitsThroughEdge(t *testing.T) {
	pg := testenv.StartPostgres(t)
	srv := startChatServer(t, func(r fakebedrock.Request) fakebedrock.Script {
		switch last := r.Messages[len(r.Messages)-1].Text; {
		case r.ModelID == "summary-model":
			return fakebedrock.Tokens([]string{"A summary."}, 0, "")
		case strings.HasPrefix(last, "long-answer"):
			return fakebedrock.Tokens([]string{strings.Repeat("x", 50), strings.Repeat("y", 50), strings.Repeat("z", 50)}, 0, "")
		}
		return fakebedrock.Tokens([]string{"Hi ", "there"}, 0, "")
	}, "DATABASE_URL="+pg.URL, "BEDROCK_MODEL_ID_SUMMARY=summary-model", "CHAT_MAX_MESSAGE_CHARS=100", "CHAT_HISTORY_CHARS=300",
		"CHAT_TURN_RATE=1", "CHAT_TURN_BURST=3", "CHAT_THREAD_TURN_BURST=20", "CHAT_MAX_ANSWER_CHARS=100", "CHAT_HISTORY_API_BYTES=1KiB",
		"CHAT_SUMMARY_CHARS=200", "CHAT_HISTORY_TTL=1h")

	t.Run("CHAT_MAX_MESSAGE_CHARS and CHAT_MAX_DATA_BYTES", func(t *testing.T) {
		c := srv.dial(t)
		c.send(chatFrame("len", strings.Repeat("é", 101)))
		if m := c.expect("error:invalid_message"); !strings.Contains(m["message"].(string), "100 characters") {
			t.Fatalf("error %v", m)
		}
		c.send(chatFrame("len", strings.Repeat("é", 100))) // 200 bytes, 100 characters
		c.readTurn()
		// CHAT_MAX_DATA_BYTES (default 16 KiB): data is kept with the turn.
		c.send(`{"type":"chat","message":"hi","thread_id":"len","channel":"web","data":"` + strings.Repeat("d", 16<<10) + `"}`)
		if m := c.expect("error:invalid_message"); !strings.Contains(m["message"].(string), "data") {
			t.Fatalf("error %v", m)
		}
	})

	t.Run("per-socket turn rate and what is sent to the model", func(t *testing.T) {
		c := srv.dial(t)
		for i := range 3 {
			c.send(chatFrame("rate", fmt.Sprintf("%d%s", i, strings.Repeat("m", 99))))
			c.readTurn()
		}
		c.send(chatFrame("rate", "one too many"))
		c.expect("error:rate_limited")
		// Another socket has its own allowance.
		other := srv.dial(t)
		other.send(chatFrame("rate", "from another socket"))
		other.readTurn()
		// CHAT_HISTORY_CHARS bounds each request, the new message included.
		for _, r := range srv.fake.Requests() {
			total := 0
			for _, m := range r.Messages {
				total += runeCount(m.Text)
			}
			if total > 300 {
				t.Fatalf("%d characters sent to the model: %+v", total, r.Messages)
			}
		}
		reqs := srv.fake.Requests()
		last := reqs[len(reqs)-1].Messages
		if last[len(last)-1].Text != "from another socket" || len(last) != 5 {
			t.Fatalf("last request %+v", last)
		}
	})

	t.Run("stored answer, history response and summary are bounded", func(t *testing.T) {
		c := srv.dial(t)
		c.send(chatFrame("ans", "long-answer please"))
		if text := c.readTurn(); runeCount(text) != 150 {
			t.Fatalf("client was sent %d characters, want all 150", runeCount(text))
		}
		status, hist := srv.api(t, "history", "ans")
		msgs, _ := hist["messages"].([]any)
		if status != 200 || len(msgs) != 2 || runeCount(msgs[1].(map[string]any)["content"].(string)) != 100 {
			t.Fatalf("history %d %v", status, hist)
		}

		for i := range 15 {
			if i%3 == 0 {
				c = srv.dial(t)
			}
			c.send(chatFrame("big", fmt.Sprintf("%02d %s", i, strings.Repeat("b", 87))))
			c.readTurn()
		}
		status, hist = srv.api(t, "history", "big")
		msgs, _ = hist["messages"].([]any)
		bytes := 0
		for _, m := range msgs {
			bytes += len(m.(map[string]any)["content"].(string))
		}
		if status != 200 || bytes > 1024 || bytes < 900 || msgs[len(msgs)-1].(map[string]any)["content"] != "Hi there" ||
			!strings.HasPrefix(msgs[len(msgs)-2].(map[string]any)["content"].(string), "14 ") {
			t.Fatalf("history: %d messages, %d bytes of content", len(msgs), bytes)
		}

		before := len(srv.fake.Requests())
		if status, sum := srv.api(t, "summarize", "big"); status != 200 || sum["summary"] != "A summary." {
			t.Fatalf("summary %d %v", status, sum)
		}
		reqs := srv.fake.Requests()
		if len(reqs) != before+1 || reqs[before].ModelID != "summary-model" {
			t.Fatalf("no summary request")
		}
		conv := reqs[before].Messages
		total := 0
		for _, m := range conv[:len(conv)-1] {
			total += runeCount(m.Text)
		}
		if total > 200 || total == 0 || !strings.Contains(conv[len(conv)-1].Text, "Summarize") {
			t.Fatalf("summary request carries %d characters of history", total)
		}
	})

	t.Run("CHAT_HISTORY_TTL", func(t *testing.T) {
		ctx := context.Background()
		db, err := pgx.Connect(ctx, pg.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close(ctx)
		if status, _ := srv.api(t, "history", "len"); status != 200 {
			t.Fatalf("history before expiry: %d", status)
		}
		// An hour and a bit later, as far as the database clock is concerned.
		if _, err := db.Exec(ctx, `UPDATE chat_messages SET created_at = now() - interval '61 minutes' WHERE thread_id = 'len'`); err != nil {
			t.Fatal(err)
		}
		if status, body := srv.api(t, "history", "len"); status != 404 {
			t.Fatalf("expired thread: %d %v", status, body)
		}
		// The next turn of the thread does not send expired messages either.
		c := srv.dial(t)
		c.send(chatFrame("len", "after expiry"))
		c.readTurn()
		reqs := srv.fake.Requests()
		if last := reqs[len(reqs)-1].Messages; len(last) != 1 || last[0].Text != "after expiry" {
			t.Fatalf("expired history sent to the model: %+v", last)
		}
	})
}
