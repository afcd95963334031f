package chat

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/wsedge/wsedge/chat/history"
	"github.com/wsedge/wsedge/chat/model"
	"github.com/wsedge/wsedge/chat/model/fakebedrock"
)

const connID = "0123456789abcdef0123456789abcdef"

type env struct {
	svc    *Service
	store  *history.Memory
	mirror *fakeMirror
	fake   *fakebedrock.Server
}

// newEnv builds a service; with script != nil the model is Bedrock against a
// fake that answers script(request), else the local model with delay.
func newEnv(t *testing.T, cfg Config, script fakebedrock.Handler, guarded bool, delay time.Duration) *env {
	t.Helper()
	e := &env{store: history.NewMemory(0, 0), mirror: &fakeMirror{}}
	var m model.Model = model.Local{Delay: delay}
	if script != nil {
		srv, err := fakebedrock.Start(script)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = srv.Close() })
		e.fake = srv
		bc := model.BedrockConfig{
			AWS:         aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("AKIDFAKE", "fake", "")},
			ChatModelID: "test-model",
			Options:     []func(*bedrockruntime.Options){func(o *bedrockruntime.Options) { o.BaseEndpoint = aws.String(srv.URL) }},
		}
		if guarded {
			bc.GuardrailID, bc.GuardrailVersion = "gr", "1"
		}
		b, err := model.NewBedrock(bc)
		if err != nil {
			t.Fatal(err)
		}
		m = b
	}
	svc, err := New(cfg, m, e.store, e.mirror, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Stalled test streams are cancelled after this grace.
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_ = svc.Shutdown(ctx)
	})
	e.svc = svc
	return e
}

func (e *env) outcomes(outcome string) float64 {
	return counterValue(e.svc.m.turns.WithLabelValues(outcome))
}

// waitOutcome waits until n turns ended with outcome (the worker is done).
func (e *env) waitOutcome(t *testing.T, outcome string, n float64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); e.outcomes(outcome) < n; time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %v %q turns (have %v)", n, outcome, e.outcomes(outcome))
		}
	}
}

func TestRejectedFrames(t *testing.T) {
	e := newEnv(t, Config{}, nil, false, 0)
	tests := []struct {
		name, payload, code string
	}{
		{"not json", `{"type":"chat"`, "invalid_json"},
		{"not json text", `hello`, "invalid_json"},
		{"array", `[1,2]`, "invalid_message"},
		{"string", `"chat"`, "invalid_message"},
		{"null", `null`, "invalid_message"},
		{"no type", `{"message":"hi"}`, "invalid_message"},
		{"type not string", `{"type":1,"message":"hi"}`, "invalid_message"},
		{"unknown type", `{"type":"hello","message":"hi"}`, "invalid_message"},
		{"no message", `{"type":"chat"}`, "invalid_message"},
		{"empty message", `{"type":"chat","message":""}`, "invalid_message"},
		{"blank message", `{"type":"chat","message":"  \n"}`, "invalid_message"},
		{"message not string", `{"type":"chat","message":42}`, "invalid_message"},
		{"thread bad chars", `{"type":"chat","message":"hi","thread_id":"a/b"}`, "invalid_message"},
		{"thread too long", `{"type":"chat","message":"hi","thread_id":"` + strings.Repeat("a", 129) + `"}`, "invalid_message"},
		{"thread empty", `{"type":"chat","message":"hi","thread_id":""}`, "invalid_message"},
		{"thread not string", `{"type":"chat","message":"hi","thread_id":7}`, "invalid_message"},
		{"channel not string", `{"type":"chat","message":"hi","channel":1}`, "invalid_message"},
		{"web without data", `{"type":"chat","message":"hi","channel":"web"}`, "data_required"},
		{"web with null data", `{"type":"chat","message":"hi","channel":"web","data":null}`, "data_required"},
		{"message too long", `{"type":"chat","message":"` + strings.Repeat("é", 4001) + `"}`, "invalid_message"},
		{"message far too long", `{"type":"chat","message":"` + strings.Repeat("a", 100000) + `"}`, "invalid_message"},
		{"data too large", `{"type":"chat","message":"hi","channel":"web","data":"` + strings.Repeat("d", 16<<10) + `"}`, "invalid_message"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sink := newSink()
			c := e.svc.Open(connID, sink)
			c.OnText([]byte(tc.payload))
			got := sink.types()
			if len(got) != 1 || got[0] != "error:"+tc.code {
				t.Fatalf("frames %v, want one error:%s", got, tc.code)
			}
			if msg, _ := sink.snapshot()[0]["message"].(string); msg == "" {
				t.Fatal("error frame without message")
			}
		})
	}
	t.Run("binary", func(t *testing.T) {
		sink := newSink()
		c := e.svc.Open(connID, sink)
		c.OnBinary()
		if got := sink.types(); len(got) != 1 || got[0] != "error:text_required" || sink.closes != 0 {
			t.Fatalf("frames %v closes %d", got, sink.closes)
		}
		c.OnText([]byte(`{"type":"chat","message":"still usable"}`))
		sink.wait(t, "end", 1)
	})
	t.Run("cancel without a turn is ignored", func(t *testing.T) {
		sink := newSink()
		e.svc.Open(connID, sink).OnText([]byte(`{"type":"cancel"}`))
		if got := sink.types(); len(got) != 0 {
			t.Fatalf("frames %v", got)
		}
	})
}

// The per-socket turn bucket: TurnBurst turns at once, then rate_limited
// (the socket stays usable); a turn refused busy gives its token back.
func TestTurnRate(t *testing.T) {
	e := newEnv(t, Config{TurnBurst: 2, TurnRate: 1, Workers: 1, Queue: 1}, nil, false, 0)
	sink := newSink()
	c := e.svc.Open(connID, sink)
	for i := 1; i <= 2; i++ {
		c.OnText([]byte(`{"type":"chat","message":"hi"}`))
		sink.wait(t, "end", i)
	}
	c.OnText([]byte(`{"type":"chat","message":"hi"}`))
	if got := sink.types(); got[len(got)-1] != "error:rate_limited" {
		t.Fatalf("frames %v", got)
	}
	if got := counterValue(e.svc.m.rejections.WithLabelValues("rate_limited")); got != 1 {
		t.Fatalf("rate_limited counted %v times", got)
	}
	// A fresh socket has its own bucket; busy refunds.
	for deadline := time.Now().Add(10 * time.Second); len(e.svc.pool.slots) > 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) { // the workers give their slots back after the turn is counted
			t.Fatal("pool slots not released")
		}
	}
	c2 := e.svc.Open(connID, newSink())
	c2.mu.Lock()
	c2.allowance = 1
	c2.mu.Unlock()
	for range 2 { // hold the worker and the queue place
		if err := e.svc.pool.admit(); err != nil {
			t.Fatal(err)
		}
	}
	s2 := newSink()
	c2.sink = s2
	c2.OnText([]byte(`{"type":"chat","message":"hi"}`))
	if got := s2.types(); len(got) != 1 || got[0] != "error:busy" || c2.allowance < 1 {
		t.Fatalf("frames %v allowance %v", got, c2.allowance)
	}
	e.svc.pool.release()
	e.svc.pool.release()
	c2.OnText([]byte(`{"type":"chat","message":"hi"}`))
	s2.wait(t, "end", 1)
}

var hex32 = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestTurnStreamsAndStoresHistory(t *testing.T) {
	e := newEnv(t, Config{}, nil, false, 0)
	sink := newSink()
	c := e.svc.Open(connID, sink)
	c.OnText([]byte(`{"type":"chat","message":"Hello, how can you help?","channel":"web","data":[{"k":1}]}`))
	frames := sink.wait(t, "end", 1)
	types := sink.types()
	if types[0] != "session_started" || types[len(types)-1] != "end" || len(types) < 4 {
		t.Fatalf("frames %v", types)
	}
	for _, ty := range types[1 : len(types)-1] {
		if ty != "token" {
			t.Fatalf("frames %v", types)
		}
	}
	thread, _ := frames[0]["thread_id"].(string)
	if !hex32.MatchString(thread) || frames[0]["session_id"] != thread || frames[0]["connection_id"] != connID {
		t.Fatalf("session_started %v", frames[0])
	}
	answer := sink.text()
	if !strings.Contains(answer, "local demo model") || !strings.Contains(answer, "Hello, how can you help?") {
		t.Fatalf("answer %q", answer)
	}
	e.waitOutcome(t, outcomeCompleted, 1)
	msgs, _ := e.store.Recent(context.Background(), thread, history.Window{})
	if len(msgs) != 2 || msgs[0].Content != "Hello, how can you help?" || msgs[1].Content != answer {
		t.Fatalf("history %+v", msgs)
	}

	// The next turn without thread_id continues the thread, with its history.
	c.OnText([]byte(`{"type":"chat","message":"again"}`))
	frames = sink.wait(t, "end", 2)
	var second map[string]any
	for _, fr := range frames[1:] {
		if fr["type"] == "session_started" {
			second = fr
		}
	}
	if second["thread_id"] != thread || !strings.Contains(sink.text(), "2 earlier messages") {
		t.Fatalf("second turn %v, text %q", second, sink.text())
	}
	// An explicit thread_id switches threads.
	c.OnText([]byte(`{"type":"chat","message":"other","thread_id":"t-2:x.y_z"}`))
	frames = sink.wait(t, "end", 3)
	if !strings.Contains(sink.raw[len(sink.raw)-1], "end") {
		t.Fatal("not ended")
	}
	found := false
	for _, fr := range frames {
		if fr["type"] == "session_started" && fr["thread_id"] == "t-2:x.y_z" {
			found = true
		}
	}
	if !found {
		t.Fatal("thread_id not used")
	}

	// Mirrored: user message and the answer, once per turn.
	e.waitOutcome(t, outcomeCompleted, 3)
	mirrored := e.mirror.get(thread)
	if len(mirrored) != 4 || mirrored[0]["user_type"] != "user" || mirrored[0]["msg"] != "Hello, how can you help?" ||
		mirrored[0]["client_type"] != "chat" || mirrored[1]["user_type"] != "assistant" || mirrored[1]["msg"] != answer {
		t.Fatalf("mirrored %v", mirrored)
	}
	if d := mirrored[0]["data"].(map[string]any); d["channel"] != "web" || d["event"] != "message" {
		t.Fatalf("mirrored data %v", d)
	}
}

func TestOneTurnAtATime(t *testing.T) {
	e := newEnv(t, Config{}, nil, false, 5*time.Millisecond)
	sink := newSink()
	c := e.svc.Open(connID, sink)
	c.OnText([]byte(`{"type":"chat","message":"first"}`))
	sink.wait(t, "token", 1)
	c.OnText([]byte(`{"type":"chat","message":"second"}`))
	sink.wait(t, "end", 1)
	types := sink.types()
	n := map[string]int{}
	for _, ty := range types {
		n[ty]++
	}
	if n["session_started"] != 1 || n["end"] != 1 || n["error:turn_in_progress"] != 1 {
		t.Fatalf("frames %v", types)
	}
	if !strings.Contains(sink.text(), `"first"`) {
		t.Fatalf("text %q", sink.text())
	}
}

func TestCancelStopsTurnAndStoresPartial(t *testing.T) {
	e := newEnv(t, Config{}, func(fakebedrock.Request) fakebedrock.Script {
		return fakebedrock.Script{Steps: []fakebedrock.Step{{Text: "partial "}, {Text: "answer"}, {Stall: true}}}
	}, false, 0)
	sink := newSink()
	c := e.svc.Open(connID, sink)
	c.OnText([]byte(`{"type":"chat","message":"q","thread_id":"th"}`))
	sink.wait(t, "token", 2)
	c.OnText([]byte(`{"type":"cancel"}`))
	sink.wait(t, "end", 1)
	e.waitOutcome(t, outcomeCancelled, 1)
	if got := sink.types(); strings.Join(got, ",") != "session_started,token,token,end" {
		t.Fatalf("frames %v", got)
	}
	msgs, _ := e.store.Recent(context.Background(), "th", history.Window{})
	if len(msgs) != 2 || msgs[1].Content != "partial answer" {
		t.Fatalf("history %+v", msgs)
	}
	// Usable again.
	c.OnText([]byte(`{"type":"chat","message":"q2"}`))
	sink.wait(t, "session_started", 2)
}

func TestCloseCancelsUpstream(t *testing.T) {
	e := newEnv(t, Config{}, func(fakebedrock.Request) fakebedrock.Script {
		return fakebedrock.Script{Steps: []fakebedrock.Step{{Text: "a"}, {Stall: true}}}
	}, false, 0)
	sink := newSink()
	c := e.svc.Open(connID, sink)
	c.OnText([]byte(`{"type":"chat","message":"q","thread_id":"gone"}`))
	sink.wait(t, "token", 1)
	start := time.Now()
	c.OnClose()
	e.waitOutcome(t, outcomeDisconnected, 1)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("upstream cancelled after %s", d)
	}
	if got := sink.types(); strings.Join(got, ",") != "session_started,token" {
		t.Fatalf("frames after close %v", got)
	}
	if e.svc.pool.running.Load() != 0 {
		t.Fatal("worker still busy")
	}
	msgs, _ := e.store.Recent(context.Background(), "gone", history.Window{})
	if len(msgs) != 2 || msgs[1].Content != "a" {
		t.Fatalf("history %+v", msgs)
	}
	c.OnText([]byte(`{"type":"chat","message":"after close"}`))
	if len(sink.types()) != 2 {
		t.Fatal("closed conn answered")
	}
}

func TestSinkRefusalStopsTurn(t *testing.T) {
	e := newEnv(t, Config{}, nil, false, time.Millisecond)
	sink := newSink()
	sink.refuseAfter = 3
	c := e.svc.Open(connID, sink)
	c.OnText([]byte(`{"type":"chat","message":"q"}`))
	e.waitOutcome(t, outcomeDisconnected, 1)
	if got := sink.types(); len(got) != 3 {
		t.Fatalf("frames %v", got)
	}
}

func TestBusyWhenPoolFull(t *testing.T) {
	e := newEnv(t, Config{Workers: 1, Queue: 1}, func(fakebedrock.Request) fakebedrock.Script {
		return fakebedrock.Script{Steps: []fakebedrock.Step{{Text: "a"}, {Stall: true}}}
	}, false, 0)
	var sinks []*fakeSink
	var conns []*Conn
	for range 3 {
		s := newSink()
		sinks, conns = append(sinks, s), append(conns, e.svc.Open(connID, s))
	}
	conns[0].OnText([]byte(`{"type":"chat","message":"1"}`))
	sinks[0].wait(t, "token", 1)
	conns[1].OnText([]byte(`{"type":"chat","message":"2"}`)) // queued
	conns[2].OnText([]byte(`{"type":"chat","message":"3"}`)) // refused at once
	if got := sinks[2].types(); len(got) != 1 || got[0] != "error:busy" {
		t.Fatalf("third: %v", got)
	}
	if got := sinks[1].types(); len(got) != 1 || got[0] != "session_started" {
		t.Fatalf("queued: %v", got)
	}
	if counterValue(e.svc.m.rejections.WithLabelValues("full")) != 1 {
		t.Fatal("rejection not counted")
	}
	// Freeing the worker lets the queued turn run, and a slot opens.
	conns[0].OnText([]byte(`{"type":"cancel"}`))
	sinks[1].wait(t, "token", 1)
	conns[2].OnText([]byte(`{"type":"chat","message":"3 again"}`))
	sinks[2].wait(t, "session_started", 1)
}

func TestEscalation(t *testing.T) {
	e := newEnv(t, Config{}, func(fakebedrock.Request) fakebedrock.Script {
		return fakebedrock.Script{Steps: []fakebedrock.Step{{Text: "Connecting you."}, {ToolUse: model.EscalationTool}, {Stop: "tool_use"}}}
	}, false, 0)
	sink := newSink()
	c := e.svc.Open(connID, sink)
	c.OnText([]byte(`{"type":"chat","message":"a human please","thread_id":"esc"}`))
	sink.wait(t, "end", 1)
	e.waitOutcome(t, outcomeEscalated, 1)
	if got := strings.Join(sink.types(), ","); got != "session_started,token,escalation,end" {
		t.Fatalf("frames %s", got)
	}
	if sink.closes != 1 || sink.closeCode != 1000 || sink.closeReason != "escalation" {
		t.Fatalf("close %d %q ×%d", sink.closeCode, sink.closeReason, sink.closes)
	}
	if esc := sink.snapshot()[2]; esc["should_escalate"] != true {
		t.Fatalf("escalation frame %v", esc)
	}
	msgs, _ := e.store.Recent(context.Background(), "esc", history.Window{})
	if len(msgs) != 2 || msgs[1].Content != "Connecting you." || !msgs[1].Escalated {
		t.Fatalf("history %+v", msgs)
	}
	mirrored := e.mirror.get("esc")
	if last := mirrored[len(mirrored)-1]; last["data"].(map[string]any)["event"] != "escalation" {
		t.Fatalf("mirrored %v", mirrored)
	}
	if reqs := e.fake.Requests(); len(reqs[0].Tools) != 1 || reqs[0].Tools[0] != model.EscalationTool {
		t.Fatalf("tools %v", reqs[0].Tools)
	}
	c.OnText([]byte(`{"type":"chat","message":"more"}`))
	if len(sink.types()) != 4 {
		t.Fatal("escalated conn accepted another turn")
	}
}

func TestUpstreamFailures(t *testing.T) {
	tests := []struct {
		name    string
		script  fakebedrock.Script
		cfg     Config
		kind    string
		partial string
	}{
		{name: "throttled before stream", script: fakebedrock.Throttled(), kind: model.KindThrottled},
		{name: "throttled mid stream", script: fakebedrock.Script{Steps: []fakebedrock.Step{{Text: "x"}, {Exception: "throttlingException"}}},
			kind: model.KindThrottled, partial: "x"},
		{name: "model error", script: fakebedrock.Script{Steps: []fakebedrock.Step{{Exception: "modelStreamErrorException"}}}, kind: model.KindModel},
		{name: "truncated", script: fakebedrock.Script{Steps: []fakebedrock.Step{{Text: "x"}, {Truncate: true}}}, kind: model.KindTruncated, partial: "x"},
		{name: "stalled past the turn deadline", script: fakebedrock.Script{Steps: []fakebedrock.Step{{Stall: true}}},
			cfg: Config{TurnTimeout: 300 * time.Millisecond}, kind: model.KindTimeout},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.cfg, func(fakebedrock.Request) fakebedrock.Script { return tc.script }, false, 0)
			sink := newSink()
			c := e.svc.Open(connID, sink)
			c.OnText([]byte(`{"type":"chat","message":"q","thread_id":"f"}`))
			sink.wait(t, "end", 1)
			e.waitOutcome(t, outcomeFailed, 1)
			want := "session_started,error:upstream_error,end"
			if tc.partial != "" {
				want = "session_started,token,error:upstream_error,end"
			}
			if got := strings.Join(sink.types(), ","); got != want {
				t.Fatalf("frames %s, want %s", got, want)
			}
			if counterValue(e.svc.m.upstream.WithLabelValues(tc.kind)) != 1 {
				t.Fatalf("upstream error %q not counted; frames %v", tc.kind, sink.raw)
			}
			if msgs, _ := e.store.Recent(context.Background(), "f", history.Window{}); len(msgs) != 0 {
				t.Fatalf("failed turn stored %+v", msgs)
			}
			c.OnText([]byte(`{"type":"chat","message":"again"}`))
			sink.wait(t, "end", 2)
		})
	}
}

// With a guardrail, vetted deltas stream at once; an attempt the guardrail
// stops is followed by a rewrite frame and the regenerated answer. The
// fake's guardrail runs in the request's stream processing mode (sync), so
// the blocked chunk itself is never sent.
func TestGuardrailRewrites(t *testing.T) {
	tests := []struct {
		name     string
		blocked  int // attempts blocked before one passes
		rewrites int
		visible  string // what the client shows after the last rewrite
		frames   []string
		stored   bool
		requests int
	}{
		{name: "passes first time", blocked: 0, rewrites: 2, visible: "clean answer", stored: true, requests: 1,
			frames: []string{"session_started", "token", "token", "end"}},
		{name: "rewritten once", blocked: 1, rewrites: 2, visible: "clean answer", stored: true, requests: 2,
			frames: []string{"session_started", "token", "token", "rewrite", "token", "token", "end"}},
		{name: "always blocked", blocked: 9, rewrites: 2, visible: "Sorry, I can't help with that request.", requests: 3,
			frames: []string{"session_started", "token", "token", "rewrite", "token", "token", "rewrite", "token", "token", "rewrite", "token", "end"}},
		{name: "no rewrites allowed", blocked: 1, rewrites: 0, visible: "Sorry, I can't help with that request.", requests: 1,
			frames: []string{"session_started", "token", "token", "rewrite", "token", "end"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			n := 0
			g := &fakebedrock.Guardrail{Blocked: []string{"forbidden"}}
			e := newEnv(t, Config{Rewrites: tc.rewrites}, func(fakebedrock.Request) fakebedrock.Script {
				mu.Lock()
				defer mu.Unlock()
				n++
				if n <= tc.blocked {
					s := fakebedrock.Tokens([]string{"Sure, ", "forbidden stuff", "more"}, 0, "end_turn")
					s.Guardrail = g
					return s
				}
				s := fakebedrock.Tokens([]string{"clean ", "answer"}, 0, "end_turn")
				s.Guardrail = g
				return s
			}, true, 0)
			if tc.rewrites == 0 {
				e.svc.cfg.Rewrites = 0
			}
			sink := newSink()
			e.svc.Open(connID, sink).OnText([]byte(`{"type":"chat","message":"q","thread_id":"g"}`))
			sink.wait(t, "end", 1)
			if got := sink.types(); strings.Join(got, ",") != strings.Join(tc.frames, ",") {
				t.Fatalf("frames %v, want %v", got, tc.frames)
			}
			if got := sink.visible(); got != tc.visible {
				t.Fatalf("client shows %q", got)
			}
			rw := 0
			for _, f := range sink.snapshot() {
				if f["type"] == "rewrite" {
					rw++
					if f["attempt"] != float64(rw) {
						t.Fatalf("rewrite frame %v, want attempt %d", f, rw)
					}
				}
			}
			for _, raw := range sink.raw {
				if strings.Contains(raw, "forbidden") {
					t.Fatalf("the blocked chunk reached the client: %s", raw)
				}
			}
			reqs := e.fake.Requests()
			if len(reqs) != tc.requests || reqs[0].Guardrail != "gr" || reqs[0].StreamMode != "sync" || reqs[0].Trace != "enabled" {
				t.Fatalf("%d requests %+v", len(reqs), reqs)
			}
			if len(reqs) > 1 && !strings.Contains(reqs[1].System, "blocked") {
				t.Fatal("rewrite request lacks the rewrite instruction")
			}
			e.waitOutcome(t, map[bool]string{true: outcomeCompleted, false: outcomeBlocked}[tc.stored], 1)
			msgs, _ := e.store.Recent(context.Background(), "g", history.Window{})
			if tc.stored != (len(msgs) == 2) {
				t.Fatalf("stored %+v", msgs)
			}
			for _, m := range msgs {
				if strings.Contains(m.Content, "Sure") || strings.Contains(m.Content, "cannot answer") {
					t.Fatalf("text of a blocked attempt stored: %+v", msgs)
				}
			}
			if got := counterValue(e.svc.m.modelTokens.WithLabelValues("output", "test-model")); got == 0 {
				t.Fatal("no output tokens counted")
			}
		})
	}
}

// Cancelled after a rewrite, before the regenerated answer showed anything:
// the client kept nothing, so nothing is stored (not even the message that
// provoked the guardrail).
func TestCancelAfterRewriteStoresNothing(t *testing.T) {
	var mu sync.Mutex
	n := 0
	e := newEnv(t, Config{Rewrites: 2}, func(fakebedrock.Request) fakebedrock.Script {
		mu.Lock()
		defer mu.Unlock()
		n++
		if n == 1 {
			s := fakebedrock.Tokens([]string{"forbidden"}, 0, "")
			s.Guardrail = &fakebedrock.Guardrail{Blocked: []string{"forbidden"}}
			return s
		}
		return fakebedrock.Script{Steps: []fakebedrock.Step{{Stall: true}}}
	}, true, 0)
	sink := newSink()
	c := e.svc.Open(connID, sink)
	c.OnText([]byte(`{"type":"chat","message":"provoke","thread_id":"rw"}`))
	sink.wait(t, "rewrite", 1)
	c.OnText([]byte(`{"type":"cancel"}`))
	sink.wait(t, "end", 1)
	e.waitOutcome(t, outcomeCancelled, 1)
	if msgs, _ := e.store.Recent(context.Background(), "rw", history.Window{}); len(msgs) != 0 {
		t.Fatalf("stored %+v", msgs)
	}
}

func TestShutdownCancelsTurns(t *testing.T) {
	e := newEnv(t, Config{}, func(fakebedrock.Request) fakebedrock.Script {
		return fakebedrock.Script{Steps: []fakebedrock.Step{{Text: "a"}, {Stall: true}}}
	}, false, 0)
	sink := newSink()
	c := e.svc.Open(connID, sink)
	c.OnText([]byte(`{"type":"chat","message":"q"}`))
	sink.wait(t, "token", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := e.svc.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("shutdown: %v", err)
	}
	if got := strings.Join(sink.types(), ","); got != "session_started,token,error:upstream_error,end" {
		t.Fatalf("frames %s", got)
	}
	other := newSink()
	e.svc.Open(connID, other).OnText([]byte(`{"type":"chat","message":"late"}`))
	if got := other.types(); len(got) != 1 || got[0] != "error:busy" {
		t.Fatalf("after shutdown: %v", got)
	}
}

func TestShutdownDrains(t *testing.T) {
	e := newEnv(t, Config{}, nil, false, time.Millisecond)
	sink := newSink()
	e.svc.Open(connID, sink).OnText([]byte(`{"type":"chat","message":"q"}`))
	if err := e.svc.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := sink.types(); got[len(got)-1] != "end" || e.outcomes(outcomeCompleted) != 1 {
		t.Fatalf("frames %v", got)
	}
}

func TestHistoryAndSummarize(t *testing.T) {
	e := newEnv(t, Config{}, nil, false, 0)
	ctx := context.Background()
	if _, err := e.svc.History(ctx, "none"); !errors.Is(err, history.ErrNotFound) {
		t.Fatalf("history of unknown thread: %v", err)
	}
	if _, err := e.svc.Summarize(ctx, "none"); !errors.Is(err, history.ErrNotFound) {
		t.Fatalf("summary of unknown thread: %v", err)
	}
	_ = e.store.Append(ctx, "s", []history.Message{{Role: "user", Content: "q"}, {Role: "assistant", Content: "a"}})
	msgs, err := e.svc.History(ctx, "s")
	if err != nil || len(msgs) != 2 {
		t.Fatalf("%v %v", msgs, err)
	}
	sum, err := e.svc.Summarize(ctx, "s")
	if err != nil || !strings.Contains(sum, "2 messages, 1 from the user") {
		t.Fatalf("summary %q %v", sum, err)
	}
}

func TestConversation(t *testing.T) {
	u := func(s string) history.Message { return history.Message{Role: "user", Content: s} }
	a := func(s string) history.Message { return history.Message{Role: "assistant", Content: s} }
	tests := []struct {
		name     string
		stored   []history.Message
		maxMsgs  int
		maxChars int
		want     []string // role:content
	}{
		{name: "empty", want: []string{"user:new"}},
		{name: "pairs", stored: []history.Message{u("q1"), a("a1")}, want: []string{"user:q1", "assistant:a1", "user:new"}},
		{name: "message bound starts with user", stored: []history.Message{u("q1"), a("a1"), u("q2"), a("a2")}, maxMsgs: 4,
			want: []string{"user:q2", "assistant:a2", "user:new"}},
		{name: "char bound", stored: []history.Message{u("long question"), a("long answer"), u("q2"), a("a2")}, maxChars: 10,
			want: []string{"user:q2", "assistant:a2", "user:new"}},
		{name: "leading assistant dropped", stored: []history.Message{a("orphan"), u("q"), a("x")},
			want: []string{"user:q", "assistant:x", "user:new"}},
		{name: "empty answer and escalation", stored: []history.Message{u("q"), a(""), u("q2"), {Role: "assistant", Escalated: true}},
			want: []string{"user:q", "assistant:" + noAnswer, "user:q2", "assistant:" + escalatedMarker, "user:new"}},
		{name: "same roles merged, a trailing question gets no answer", stored: []history.Message{u("q1"), u("q2")},
			want: []string{"user:q1\n\nq2", "assistant:" + noAnswer, "user:new"}},
		{name: "char bound counts the new message", stored: []history.Message{u("12345"), a("67890")}, maxChars: 12,
			want: []string{"user:new"}},
		{name: "char bound fits exactly", stored: []history.Message{u("12345"), a("67890")}, maxChars: 13,
			want: []string{"user:12345", "assistant:67890", "user:new"}},
		{name: "characters, not bytes", stored: []history.Message{u("ééé"), a("ààà")}, maxChars: 9,
			want: []string{"user:ééé", "assistant:ààà", "user:new"}},
		{name: "message bound counts the new message", stored: []history.Message{u("q1"), a("a1")}, maxMsgs: 2,
			want: []string{"user:new"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, m := range conversation(tc.stored, "new", tc.maxMsgs, tc.maxChars) {
				got = append(got, m.Role+":"+m.Content)
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("got %q want %q", got, tc.want)
			}
		})
	}
}

func counterValue(c prometheus.Counter) float64 {
	var pb dto.Metric
	if err := c.Write(&pb); err != nil {
		panic(err)
	}
	return pb.GetCounter().GetValue()
}

func TestTurnCancelledWhileQueuedStoresNothing(t *testing.T) {
	e := newEnv(t, Config{Workers: 1, Queue: 1}, func(fakebedrock.Request) fakebedrock.Script {
		return fakebedrock.Script{Steps: []fakebedrock.Step{{Text: "a"}, {Stall: true}}}
	}, false, 0)
	busy, queued := newSink(), newSink()
	first := e.svc.Open(connID, busy)
	first.OnText([]byte(`{"type":"chat","message":"1","thread_id":"running"}`))
	busy.wait(t, "token", 1)
	second := e.svc.Open(connID, queued)
	second.OnText([]byte(`{"type":"chat","message":"2","thread_id":"queued"}`))
	second.OnText([]byte(`{"type":"cancel"}`))
	first.OnText([]byte(`{"type":"cancel"}`))
	queued.wait(t, "end", 1)
	e.waitOutcome(t, outcomeCancelled, 2)
	if got := strings.Join(queued.types(), ","); got != "session_started,end" {
		t.Fatalf("frames %s", got)
	}
	if msgs, _ := e.store.Recent(context.Background(), "queued", history.Window{}); len(msgs) != 0 {
		t.Fatalf("stored %+v", msgs)
	}
	if len(e.fake.Requests()) != 1 {
		t.Fatal("a cancelled queued turn reached the model")
	}
}
