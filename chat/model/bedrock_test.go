package model_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"

	"github.com/wsedge/wsedge/chat/model"
	"github.com/wsedge/wsedge/chat/model/fakebedrock"
)

func startFake(t *testing.T, h fakebedrock.Handler) *fakebedrock.Server {
	t.Helper()
	srv, err := fakebedrock.Start(h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

func newBedrock(t *testing.T, url string, mod func(*model.BedrockConfig)) *model.Bedrock {
	t.Helper()
	cfg := model.BedrockConfig{
		AWS: aws.Config{
			Region:      "us-east-1",
			Credentials: credentials.NewStaticCredentialsProvider("AKIDFAKE", "fake", ""),
		},
		ChatModelID: "anthropic.claude-test:0",
		Options:     []func(*bedrockruntime.Options){func(o *bedrockruntime.Options) { o.BaseEndpoint = aws.String(url) }},
	}
	if mod != nil {
		mod(&cfg)
	}
	b, err := model.NewBedrock(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var hello = model.Request{System: "be brief", Tools: true, Messages: []model.Message{
	{Role: model.RoleUser, Content: "earlier"}, {Role: model.RoleAssistant, Content: "answer"},
	{Role: model.RoleUser, Content: "Hello"},
}}

func collect(b model.Model, ctx context.Context, req model.Request) (string, model.Result, error) {
	var sb strings.Builder
	res, err := b.Stream(ctx, req, func(d string) error { sb.WriteString(d); return nil })
	return sb.String(), res, err
}

func TestBedrockScripts(t *testing.T) {
	tests := []struct {
		name     string
		script   fakebedrock.Script
		cfg      func(*model.BedrockConfig)
		timeout  time.Duration
		text     string
		escalate bool
		blocked  bool
		kind     string // "" = success
	}{
		{name: "tokens", script: fakebedrock.Tokens([]string{"Hel", "lo", " there"}, time.Millisecond, ""), text: "Hello there"},
		{name: "max tokens", script: fakebedrock.Tokens([]string{"cut"}, 0, "max_tokens"), text: "cut"},
		{name: "escalation tool", script: fakebedrock.Script{Steps: []fakebedrock.Step{
			{Text: "Let me get someone. "}, {ToolUse: model.EscalationTool}, {Stop: "tool_use"}}},
			text: "Let me get someone. ", escalate: true},
		{name: "other tool is no escalation", script: fakebedrock.Script{Steps: []fakebedrock.Step{
			{ToolUse: "lookup"}, {Stop: "tool_use"}}}},
		{name: "guardrail intervened", script: fakebedrock.Tokens([]string{"Sorry, blocked."}, 0, "guardrail_intervened"),
			cfg:  func(c *model.BedrockConfig) { c.GuardrailID, c.GuardrailVersion = "gr-1", "1" },
			text: "Sorry, blocked.", blocked: true},
		{name: "content filtered", script: fakebedrock.Tokens([]string{"x"}, 0, "content_filtered"), text: "x", blocked: true},
		{name: "throttled before stream", script: fakebedrock.Throttled(), kind: model.KindThrottled},
		{name: "server error before stream", script: fakebedrock.Script{Status: 503, ErrorType: "ServiceUnavailableException"}, kind: model.KindUnavailable},
		{name: "validation", script: fakebedrock.Script{Status: 400, ErrorType: "ValidationException"}, kind: model.KindValidation},
		{name: "throttled mid stream", script: fakebedrock.Script{Steps: []fakebedrock.Step{
			{Text: "a"}, {Exception: "throttlingException"}}}, text: "a", kind: model.KindThrottled},
		{name: "model error mid stream", script: fakebedrock.Script{Steps: []fakebedrock.Step{
			{Text: "a"}, {Exception: "modelStreamErrorException"}}}, text: "a", kind: model.KindModel},
		{name: "internal error mid stream", script: fakebedrock.Script{Steps: []fakebedrock.Step{
			{Exception: "internalServerException"}}}, kind: model.KindUnavailable},
		{name: "truncated", script: fakebedrock.Script{Steps: []fakebedrock.Step{{Text: "par"}, {Truncate: true}}},
			text: "par", kind: model.KindTruncated},
		{name: "stalled hits idle timeout", script: fakebedrock.Script{Steps: []fakebedrock.Step{{Text: "a"}, {Stall: true}}},
			cfg: func(c *model.BedrockConfig) { c.IdleTimeout = 200 * time.Millisecond }, text: "a", kind: model.KindStalled},
		{name: "stalled hits turn deadline", script: fakebedrock.Script{Steps: []fakebedrock.Step{{Stall: true}}},
			timeout: 300 * time.Millisecond, kind: model.KindTimeout},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := startFake(t, func(fakebedrock.Request) fakebedrock.Script { return tc.script })
			b := newBedrock(t, srv.URL, tc.cfg)
			ctx := context.Background()
			if tc.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.timeout)
				defer cancel()
			}
			start := time.Now()
			text, res, err := collect(b, ctx, hello)
			if tc.kind == "" {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
			} else if got := model.ErrorKind(err); err == nil || got != tc.kind {
				t.Fatalf("err = %v (kind %q), want kind %q", err, got, tc.kind)
			}
			if text != tc.text || res.Escalate != tc.escalate || res.Blocked != tc.blocked {
				t.Fatalf("text %q escalate %v blocked %v, want %q %v %v", text, res.Escalate, res.Blocked, tc.text, tc.escalate, tc.blocked)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("took %s: something retried or hung", d)
			}
		})
	}
}

func TestBedrockRequestShape(t *testing.T) {
	srv := startFake(t, func(fakebedrock.Request) fakebedrock.Script { return fakebedrock.Tokens([]string{"ok"}, 0, "") })
	b := newBedrock(t, srv.URL, func(c *model.BedrockConfig) {
		c.SummaryModelID = "summary-model"
		c.GuardrailID, c.GuardrailVersion = "gr-1", "DRAFT"
	})
	if _, _, err := collect(b, context.Background(), hello); err != nil {
		t.Fatal(err)
	}
	rw := hello
	rw.Rewrite, rw.Summary, rw.Tools = 1, true, false
	if _, _, err := collect(b, context.Background(), rw); err != nil {
		t.Fatal(err)
	}
	reqs := srv.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests", len(reqs))
	}
	r := reqs[0]
	if r.ModelID != "anthropic.claude-test:0" || r.System != "be brief" || len(r.Messages) != 3 ||
		r.Messages[2] != (fakebedrock.Message{Role: "user", Text: "Hello"}) || r.Messages[1].Role != "assistant" {
		t.Fatalf("request %+v", r)
	}
	if len(r.Tools) != 1 || r.Tools[0] != model.EscalationTool || r.Guardrail != "gr-1" || r.StreamMode != "sync" {
		t.Fatalf("tools %v guardrail %q mode %q", r.Tools, r.Guardrail, r.StreamMode)
	}
	r = reqs[1]
	if r.ModelID != "summary-model" || len(r.Tools) != 0 || !strings.Contains(r.System, "blocked by the content policy") {
		t.Fatalf("rewrite/summary request %+v", r)
	}
}

func TestBedrockCancelStopsStream(t *testing.T) {
	srv := startFake(t, func(fakebedrock.Request) fakebedrock.Script {
		return fakebedrock.Script{Steps: []fakebedrock.Step{{Text: "first"}, {Stall: true}}}
	})
	b := newBedrock(t, srv.URL, nil)
	cause := errors.New("client cancelled")
	ctx, cancel := context.WithCancelCause(context.Background())
	var got []string
	done := make(chan error, 1)
	go func() {
		_, err := b.Stream(ctx, hello, func(d string) error {
			got = append(got, d)
			cancel(cause)
			return nil
		})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, cause) {
			t.Fatalf("err = %v, want the cancel cause", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancel did not stop the stream")
	}
	if len(got) != 1 || got[0] != "first" {
		t.Fatalf("deltas %v", got)
	}
}

func TestBedrockDeltaErrorStops(t *testing.T) {
	srv := startFake(t, func(fakebedrock.Request) fakebedrock.Script {
		return fakebedrock.Tokens([]string{"a", "b", "c"}, 0, "")
	})
	b := newBedrock(t, srv.URL, nil)
	stop := errors.New("sink gone")
	n := 0
	_, err := b.Stream(context.Background(), hello, func(string) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("err %v after %d deltas", err, n)
	}
}

// Concurrent streams must not share a client's event-stream decoder; -race
// catches it if they do.
func TestBedrockConcurrentStreams(t *testing.T) {
	srv := startFake(t, func(r fakebedrock.Request) fakebedrock.Script {
		return fakebedrock.Tokens([]string{"x", "y", r.Messages[len(r.Messages)-1].Text}, time.Millisecond, "")
	})
	b := newBedrock(t, srv.URL, func(c *model.BedrockConfig) { c.Clients = 4 })
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 3 {
				msg := fmt.Sprintf("m%d-%d", i, j)
				text, _, err := collect(b, context.Background(), model.Request{Messages: []model.Message{{Role: model.RoleUser, Content: msg}}})
				if err == nil && text != "xy"+msg {
					err = fmt.Errorf("text %q", text)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestNewBedrockValidates(t *testing.T) {
	if _, err := model.NewBedrock(model.BedrockConfig{}); err == nil {
		t.Fatal("no model id accepted")
	}
	if _, err := model.NewBedrock(model.BedrockConfig{ChatModelID: "m", GuardrailID: "g"}); err == nil {
		t.Fatal("guardrail without version accepted")
	}
}

// The fake's guardrail in the request's stream processing mode: with sync
// (what Bedrock.input asks for) the violating chunk never arrives, the
// attempt is Blocked, and the trace is reported; async is modelled too, to
// show what sync protects from.
func TestBedrockGuardrailStreamProcessing(t *testing.T) {
	g := &fakebedrock.Guardrail{Blocked: []string{"forbidden"}, ScanDelay: time.Millisecond}
	script := fakebedrock.Tokens([]string{"Fine, ", "forbidden words", " later"}, 0, "")
	script.Guardrail = g
	srv := startFake(t, func(fakebedrock.Request) fakebedrock.Script { return script })
	guarded := newBedrock(t, srv.URL, func(c *model.BedrockConfig) { c.GuardrailID, c.GuardrailVersion = "gr-1", "1" })
	var deltas []string
	res, err := guarded.Stream(context.Background(), hello, func(d string) error { deltas = append(deltas, d); return nil })
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"Fine, ", fakebedrock.DefaultBlockedMessage}
	if strings.Join(deltas, "|") != strings.Join(want, "|") || !res.Blocked || res.StopReason != model.StopGuardrail {
		t.Fatalf("deltas %q result %+v", deltas, res)
	}
	if !strings.Contains(res.Guardrail, "Guardrail blocked.") || !strings.Contains(res.Guardrail, "contentPolicy MISCONDUCT") {
		t.Fatalf("guardrail trace %q", res.Guardrail)
	}
	if res.OutputTokens != 2 || res.InputTokens != 10 || res.ModelID != "anthropic.claude-test:0" {
		t.Fatalf("usage %+v", res)
	}
	// Without a guardrailConfig nothing vets the stream.
	plain := newBedrock(t, srv.URL, nil)
	text, res, err := collect(plain, context.Background(), hello)
	if err != nil || res.Blocked || text != "Fine, forbidden words later" {
		t.Fatalf("unguarded: %q %+v %v", text, res, err)
	}
	reqs := srv.Requests()
	if reqs[0].StreamMode != "sync" || reqs[0].Trace != "enabled" {
		t.Fatalf("guardrail config %+v", reqs[0])
	}
}

// Every stream shares one client: over TLS the fake offers HTTP/2, and
// many concurrent and sequential streams use a single TCP connection, from
// a cold start (one dial at a time per host); an HTTPS endpoint without
// HTTP/2 is served over HTTP/1.1.
func TestBedrockSharedUpstream(t *testing.T) {
	tests := []struct {
		name  string
		start func(fakebedrock.Handler) (*fakebedrock.Server, error)
		proto string
		conns func(n int64) bool
	}{
		{"https with h2", fakebedrock.StartTLS, "HTTP/2.0", func(n int64) bool { return n == 1 }},
		{"https without h2", fakebedrock.StartTLSHTTP1, "HTTP/1.1", func(n int64) bool { return n >= 2 && n <= 33 }},
		{"plain http", fakebedrock.Start, "HTTP/1.1", func(n int64) bool { return n >= 2 && n <= 32 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := tc.start(func(r fakebedrock.Request) fakebedrock.Script {
				return fakebedrock.Tokens([]string{"x", r.Proto}, time.Millisecond, "")
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = srv.Close() })
			roots := srv.RootCAs()
			b := newBedrock(t, srv.URL, func(c *model.BedrockConfig) {
				c.Clients = 32
				c.AWS.HTTPClient = awshttp.NewBuildableClient().WithTransportOptions(model.TransportOptions(32), func(tr *http.Transport) {
					tr.TLSClientConfig.RootCAs = roots
				})
			})
			for round := range 3 {
				var wg sync.WaitGroup
				errs := make(chan error, 32)
				for range 32 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						text, _, err := collect(b, context.Background(), hello)
						if err == nil && text != "x"+tc.proto {
							err = fmt.Errorf("round %d: text %q", round, text)
						}
						if err != nil {
							errs <- err
						}
					}()
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					t.Fatal(err)
				}
			}
			// 96 streams, 32 at a time.
			if n := srv.Connections(); !tc.conns(n) {
				t.Fatalf("%d TCP connections for 96 streams", n)
			}
		})
	}
}
