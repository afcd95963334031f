package main

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/wsedge/wsedge/chat/model/fakebedrock"
	"github.com/wsedge/wsedge/edge"
	"github.com/wsedge/wsedge/internal/testenv"
)

// chatEnv is mapEnv (config_test.go) under a name of this file's own.
func chatEnv(m map[string]string) env {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestLoadChatConfig(t *testing.T) {
	tests := []struct {
		name   string
		vars   map[string]string
		secret string
		check  func(t *testing.T, c chatConfig)
		errs   []string
	}{
		{name: "defaults", check: func(t *testing.T, c chatConfig) {
			if c.Service.Workers != 256 || c.Service.Queue != 256 || c.Service.TurnTimeout != 2*time.Minute ||
				c.Service.Rewrites != 2 || c.Service.HistoryMessages != 20 || c.Bedrock.ChatModelID != "" ||
				c.DatabaseURL != "" || !c.CSRFSecretRandom || len(c.API.CSRFSecret) != 32 || c.API.APIKey != "" {
				t.Fatalf("%+v", c)
			}
		}},
		{name: "csrf falls back to SECRET_KEY", secret: "s3cret-s3cret-s3cret", check: func(t *testing.T, c chatConfig) {
			if string(c.API.CSRFSecret) != "s3cret-s3cret-s3cret" || c.CSRFSecretRandom {
				t.Fatal(string(c.API.CSRFSecret))
			}
		}},
		{name: "CSRF_SECRET_KEY wins", secret: "other", vars: map[string]string{"CSRF_SECRET_KEY": "csrf"}, check: func(t *testing.T, c chatConfig) {
			if string(c.API.CSRFSecret) != "csrf" {
				t.Fatal(string(c.API.CSRFSecret))
			}
		}},
		{name: "bedrock", vars: map[string]string{"BEDROCK_MODEL_ID_CHAT": "m1", "AWS_BEDROCK_REGION": "eu-west-1",
			"BEDROCK_GUARDRAIL_ID": "g", "BEDROCK_GUARDRAIL_VERSION": "3", "MAXIMUM_GUARDRAIL_REWRITES": "5",
			"CHAT_WORKERS": "2000", "CHAT_QUEUE": "10", "CHAT_TURN_TIMEOUT": "45s", "AUTH_API_KEY": "k"},
			check: func(t *testing.T, c chatConfig) {
				b := c.Bedrock
				if b.ChatModelID != "m1" || b.SummaryModelID != "m1" || b.GuardrailID != "g" || b.GuardrailVersion != "3" ||
					c.BedrockRegion != "eu-west-1" || c.Service.Rewrites != 5 || c.Service.Workers != 2000 || b.Clients != 2000 ||
					c.Service.Queue != 10 || c.Service.TurnTimeout != 45*time.Second || c.API.APIKey != "k" {
					t.Fatalf("%+v", c)
				}
			}},
		{name: "limits", vars: map[string]string{"CHAT_MAX_MESSAGE_CHARS": "500", "CHAT_TURN_RATE": "6", "CHAT_TURN_BURST": "2",
			"CHAT_HISTORY_TTL": "0", "CHAT_HISTORY_API_BYTES": "64KiB", "CHAT_SUMMARY_CHARS": "9000", "CHAT_MAX_ANSWER_CHARS": "2000",
			"CHAT_MEMORY_HISTORY_BYTES": "16MiB"},
			check: func(t *testing.T, c chatConfig) {
				s := c.Service
				if s.MaxMessageChars != 500 || s.TurnRate != 6 || s.TurnBurst != 2 || c.HistoryTTL != 0 || s.HistoryBytes != 64<<10 ||
					s.SummaryChars != 9000 || s.MaxAnswerChars != 2000 || c.MemoryHistoryBytes != 16<<20 {
					t.Fatalf("%+v", c)
				}
			}},
		{name: "limit defaults", check: func(t *testing.T, c chatConfig) {
			s := c.Service
			if s.MaxMessageChars != 4000 || s.TurnRate != 20 || s.TurnBurst != 5 || c.HistoryTTL != 720*time.Hour ||
				s.HistoryBytes != 256<<10 || s.SummaryChars != 32000 || s.MaxAnswerChars != 16000 || c.MemoryHistoryBytes != 256<<20 {
				t.Fatalf("%+v", c)
			}
		}},
		{name: "limit errors", vars: map[string]string{"CHAT_MAX_MESSAGE_CHARS": "30000", "CHAT_HISTORY_TTL": "30s", "CHAT_TURN_RATE": "0"},
			errs: []string{"CHAT_MAX_MESSAGE_CHARS=30000 must not exceed CHAT_HISTORY_CHARS=24000", "CHAT_HISTORY_TTL=30s", "CHAT_TURN_RATE"}},
		{name: "summary model", vars: map[string]string{"BEDROCK_MODEL_ID_CHAT": "m1", "BEDROCK_MODEL_ID_SUMMARY": "m2"},
			check: func(t *testing.T, c chatConfig) {
				if c.Bedrock.SummaryModelID != "m2" {
					t.Fatal(c.Bedrock.SummaryModelID)
				}
			}},
		{name: "DATABASE_URL wins over PSQL", vars: map[string]string{"DATABASE_URL": "postgres://a@b/c", "PSQL_HOST": "x"},
			check: func(t *testing.T, c chatConfig) {
				if c.DatabaseURL != "postgres://a@b/c" {
					t.Fatal(c.DatabaseURL)
				}
			}},
		{name: "PSQL variables", vars: map[string]string{"PSQL_HOST": "db.internal", "PSQL_PORT": "6543",
			"PSQL_BOT_USERNAME": "bot", "PSQL_BOT_PASSWORD": "p@ss/word", "PSQL_STATE_DATABASE": "state", "PSQL_SSLMODE": "require"},
			check: func(t *testing.T, c chatConfig) {
				if c.DatabaseURL != "postgres://bot:p%40ss%2Fword@db.internal:6543/state?sslmode=require" {
					t.Fatal(c.DatabaseURL)
				}
			}},
		{name: "errors", vars: map[string]string{"BEDROCK_GUARDRAIL_ID": "g", "CHAT_WORKERS": "0", "CHAT_TURN_TIMEOUT": "soon",
			"MAXIMUM_GUARDRAIL_REWRITES": "x", "PSQL_HOST": "h", "PSQL_PORT": "99999"},
			errs: []string{"BEDROCK_GUARDRAIL_ID and BEDROCK_GUARDRAIL_VERSION", "need BEDROCK_MODEL_ID_CHAT", "CHAT_WORKERS=0",
				"CHAT_TURN_TIMEOUT", "MAXIMUM_GUARDRAIL_REWRITES", "PSQL_PORT"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := loadChatConfig(chatEnv(tc.vars), tc.secret)
			if len(tc.errs) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				tc.check(t, c)
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, e := range tc.errs {
				if !strings.Contains(err.Error(), e) {
					t.Errorf("error %q lacks %q", err, e)
				}
			}
		})
	}
}

type testSink struct {
	mu     sync.Mutex
	frames []map[string]any
	ended  chan struct{}
}

func (s *testSink) Send(p []byte) bool {
	var m map[string]any
	_ = json.Unmarshal(p, &m)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.frames = append(s.frames, m)
	if m["type"] == "end" {
		close(s.ended)
	}
	return true
}
func (s *testSink) Close(uint16, string) {}

func (s *testSink) text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for _, f := range s.frames {
		if f["type"] == "token" {
			b.WriteString(f["content"].(string))
		}
	}
	return b.String()
}

func callAPI(t *testing.T, h edge.APIHandler, method, path, token, body string) (int, map[string]any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var rc fasthttp.RequestCtx
	rc.Request.Header.SetMethod(method)
	rc.Request.SetRequestURI(path)
	rc.Request.Header.Set("Authorization", "Bearer key")
	rc.Request.Header.Set("X-CSRFToken", token)
	rc.Request.SetBodyString(body)
	h(ctx, &rc)
	var out map[string]any
	if err := json.Unmarshal(rc.Response.Body(), &out); err != nil {
		t.Fatalf("%s: %q", path, rc.Response.Body())
	}
	return rc.Response.StatusCode(), out
}

// The whole chat side as main wires it: Bedrock settings pointing at the fake,
// PostgreSQL history, the API; history survives a restart of the service.
func TestNewChatBedrockPostgres(t *testing.T) {
	fake, err := fakebedrock.Start(func(r fakebedrock.Request) fakebedrock.Script {
		if r.ModelID == "summary-model" {
			return fakebedrock.Tokens([]string{"The user ", "said hello."}, 0, "")
		}
		return fakebedrock.Tokens([]string{"Hi ", "from ", "Bedrock"}, time.Millisecond, "")
	})
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	pg := testenv.StartPostgres(t)
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": "AKIDFAKE", "AWS_SECRET_ACCESS_KEY": "fake", "AWS_SESSION_TOKEN": "", "AWS_REGION": "us-east-1",
		"AWS_ENDPOINT_URL_BEDROCK_RUNTIME": fake.URL, "AWS_BEARER_TOKEN_BEDROCK": "", "AWS_PROFILE": "", "AWS_ENDPOINT_URL": "",
		"AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CA_BUNDLE": "",
		"AWS_EC2_METADATA_DISABLED": "true",
	} {
		t.Setenv(k, v)
	}
	cfg, err := loadChatConfig(chatEnv(map[string]string{
		"BEDROCK_MODEL_ID_CHAT": "chat-model", "BEDROCK_MODEL_ID_SUMMARY": "summary-model", "AWS_BEDROCK_REGION": "eu-central-1",
		"DATABASE_URL": pg.URL, "AUTH_API_KEY": "key", "CHAT_WORKERS": "4",
	}), "a-long-enough-secret-key")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	start := func() (func(context.Context) error, edge.APIHandler, *testSink) {
		svc, h, closeFn, err := newChat(ctx, cfg, nil, nil, prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		sink := &testSink{ended: make(chan struct{})}
		svc.Open("0123456789abcdef0123456789abcdef", sink).OnText([]byte(`{"type":"chat","message":"Hello","thread_id":"persist"}`))
		select {
		case <-sink.ended:
		case <-time.After(10 * time.Second):
			t.Fatal("turn did not end")
		}
		if got := sink.text(); got != "Hi from Bedrock" {
			t.Fatalf("answer %q (frames %v)", got, sink.frames)
		}
		return closeFn, h, sink
	}
	closeFn, _, _ := start()
	if err := closeFn(ctx); err != nil {
		t.Fatal(err)
	}
	closeFn, h, _ := start() // a restarted server: same database, migrations again
	defer closeFn(ctx)

	_, tok := callAPI(t, h, "GET", "/api/csrf-token/", "", "")
	token := tok["csrfToken"].(string)
	status, hist := callAPI(t, h, "POST", "/api/thread/history", token, `{"thread_id":"persist"}`)
	msgs, _ := hist["messages"].([]any)
	if status != 200 || len(msgs) != 4 {
		t.Fatalf("history %d %v", status, hist)
	}
	status, sum := callAPI(t, h, "POST", "/api/thread/summarize", token, `{"thread_id":"persist"}`)
	if status != 200 || sum["summary"] != "The user said hello." {
		t.Fatalf("summary %d %v", status, sum)
	}
	reqs := fake.Requests()
	if len(reqs) != 3 || reqs[1].ModelID != "chat-model" || len(reqs[1].Messages) != 3 {
		t.Fatalf("requests %+v", reqs)
	}

	pg.Stop()
	if status, body := callAPI(t, h, "POST", "/api/thread/history", token, `{"thread_id":"persist"}`); status != 503 {
		t.Fatalf("database down: %d %v", status, body)
	}
}

func TestNewChatLocal(t *testing.T) {
	cfg, err := loadChatConfig(chatEnv(map[string]string{"LOCAL_MODEL_DELAY": "0s"}), "")
	if err != nil {
		t.Fatal(err)
	}
	svc, h, closeFn, err := newChat(context.Background(), cfg, nil, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn(context.Background())
	sink := &testSink{ended: make(chan struct{})}
	svc.Open("0123456789abcdef0123456789abcdef", sink).OnText([]byte(`{"type":"chat","message":"Hello, how can you help?","thread_id":"optional-thread-id","channel":"web","data":[]}`))
	<-sink.ended
	if !strings.Contains(sink.text(), "local demo model") {
		t.Fatalf("answer %q", sink.text())
	}
	_, tok := callAPI(t, h, "GET", "/api/csrf-token/", "", "")
	if status, _ := callAPI(t, h, "POST", "/api/thread/history", tok["csrfToken"].(string), `{"thread_id":"optional-thread-id"}`); status != 200 {
		t.Fatalf("history %d", status)
	}
}
