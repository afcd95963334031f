package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsedge/wsedge/chat"
	"github.com/wsedge/wsedge/chat/api"
	"github.com/wsedge/wsedge/chat/history"
	"github.com/wsedge/wsedge/chat/model"
	"github.com/wsedge/wsedge/edge"
)

// chatConfig is the chat side's configuration, parsed once.
type chatConfig struct {
	Service chat.Config
	API     api.Config
	// CSRFSecretRandom: no CSRF_SECRET_KEY nor SECRET_KEY; tokens work only
	// on this instance until it restarts.
	CSRFSecretRandom bool

	Bedrock       model.BedrockConfig // AWS is loaded by newChat
	BedrockRegion string
	LocalDelay    time.Duration

	DatabaseURL      string
	DatabaseMaxConns int
	// HistoryTTL is the retention of chat history (0: kept until a cap
	// drops it); MemoryHistoryBytes caps the in-memory store.
	HistoryTTL         time.Duration
	MemoryHistoryBytes int
}

func loadChatConfig(e env, secretKey string) (chatConfig, error) {
	var c chatConfig
	var errs []error
	check := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	var err error
	c.API.APIKey = e.str("", "AUTH_API_KEY")
	if s := e.str(secretKey, "CSRF_SECRET_KEY"); s != "" {
		c.API.CSRFSecret = []byte(s)
	} else {
		c.API.CSRFSecret = make([]byte, 32)
		_, _ = rand.Read(c.API.CSRFSecret)
		c.CSRFSecretRandom = true
	}
	c.API.MaxBody, err = e.size(64<<10, 1<<10, 16<<20, "CHAT_API_MAX_BODY")
	check(err)

	s, d := &c.Service, chat.Defaults()
	s.Workers, err = e.integer(d.Workers, 1, 100000, "CHAT_WORKERS")
	check(err)
	s.Queue, err = e.integer(d.Queue, 1, 100000, "CHAT_QUEUE")
	check(err)
	s.TurnTimeout, err = e.duration(d.TurnTimeout, time.Second, time.Hour, "CHAT_TURN_TIMEOUT")
	check(err)
	s.HistoryMessages, err = e.integer(d.HistoryMessages, 1, 1000, "CHAT_HISTORY_MESSAGES")
	check(err)
	s.HistoryChars, err = e.integer(d.HistoryChars, 100, 1<<22, "CHAT_HISTORY_CHARS")
	check(err)
	s.Rewrites, err = e.integer(d.Rewrites, 0, 10, "MAXIMUM_GUARDRAIL_REWRITES")
	check(err)
	s.MaxMessageChars, err = e.integer(d.MaxMessageChars, 1, 1<<20, "CHAT_MAX_MESSAGE_CHARS")
	check(err)
	if err == nil && s.MaxMessageChars > s.HistoryChars {
		errs = append(errs, fmt.Errorf("CHAT_MAX_MESSAGE_CHARS=%d must not exceed CHAT_HISTORY_CHARS=%d: a new message must fit in what is sent to the model",
			s.MaxMessageChars, s.HistoryChars))
	}
	s.MaxAnswerChars, err = e.integer(d.MaxAnswerChars, 100, 1<<22, "CHAT_MAX_ANSWER_CHARS")
	check(err)
	s.MaxDataBytes, err = e.size(d.MaxDataBytes, 64, 1<<20, "CHAT_MAX_DATA_BYTES")
	check(err)
	rate, err := e.integer(int(d.TurnRate), 1, 60000, "CHAT_TURN_RATE")
	check(err)
	s.TurnRate = float64(rate)
	s.TurnBurst, err = e.integer(d.TurnBurst, 1, 1000, "CHAT_TURN_BURST")
	check(err)
	rate, err = e.integer(int(d.ThreadTurnRate), 1, 60000, "CHAT_THREAD_TURN_RATE")
	check(err)
	s.ThreadTurnRate = float64(rate)
	s.ThreadTurnBurst, err = e.integer(d.ThreadTurnBurst, 1, 1000, "CHAT_THREAD_TURN_BURST")
	check(err)
	s.HistoryBytes, err = e.size(d.HistoryBytes, 1<<10, 64<<20, "CHAT_HISTORY_API_BYTES")
	check(err)
	s.SummaryChars, err = e.integer(d.SummaryChars, 100, 1<<22, "CHAT_SUMMARY_CHARS")
	check(err)
	c.HistoryTTL, err = e.duration(720*time.Hour, 0, 100*365*24*time.Hour, "CHAT_HISTORY_TTL")
	check(err)
	if err == nil && c.HistoryTTL > 0 && c.HistoryTTL < time.Minute {
		errs = append(errs, fmt.Errorf("CHAT_HISTORY_TTL=%s: must be 0 (keep) or at least 1m", c.HistoryTTL))
	}
	c.MemoryHistoryBytes, err = e.size(256<<20, 1<<20, 1<<40, "CHAT_MEMORY_HISTORY_BYTES")
	check(err)
	s.SystemPrompt = e.str("", "CHAT_SYSTEM_PROMPT")

	b := &c.Bedrock
	b.ChatModelID = e.str("", "BEDROCK_MODEL_ID_CHAT")
	b.SummaryModelID = e.str(b.ChatModelID, "BEDROCK_MODEL_ID_SUMMARY")
	b.GuardrailID = e.str("", "BEDROCK_GUARDRAIL_ID")
	b.GuardrailVersion = e.str("", "BEDROCK_GUARDRAIL_VERSION")
	if (b.GuardrailID == "") != (b.GuardrailVersion == "") {
		errs = append(errs, errors.New("BEDROCK_GUARDRAIL_ID and BEDROCK_GUARDRAIL_VERSION must be set together"))
	}
	if b.ChatModelID == "" && (b.GuardrailID != "" || e.str("", "BEDROCK_MODEL_ID_SUMMARY") != "") {
		errs = append(errs, errors.New("BEDROCK_GUARDRAIL_*/BEDROCK_MODEL_ID_SUMMARY need BEDROCK_MODEL_ID_CHAT"))
	}
	maxTokens, err := e.integer(1024, 1, 1<<20, "BEDROCK_MAX_TOKENS")
	check(err)
	b.MaxTokens = int32(maxTokens)
	b.IdleTimeout, err = e.duration(30*time.Second, 100*time.Millisecond, time.Hour, "BEDROCK_IDLE_TIMEOUT")
	check(err)
	b.Retries, err = e.integer(0, 0, 10, "BEDROCK_RETRIES")
	check(err)
	b.Clients = s.Workers
	c.BedrockRegion = e.str("", "AWS_BEDROCK_REGION")
	c.LocalDelay, err = e.duration(30*time.Millisecond, 0, 10*time.Second, "LOCAL_MODEL_DELAY")
	check(err)

	c.DatabaseURL = e.str("", "DATABASE_URL")
	if host := e.str("", "PSQL_HOST"); c.DatabaseURL == "" && host != "" {
		port, err := e.integer(5432, 1, 65535, "PSQL_PORT")
		check(err)
		u := url.URL{Scheme: "postgres", Host: net.JoinHostPort(host, fmt.Sprint(port)),
			Path: "/" + e.str("postgres", "PSQL_STATE_DATABASE", "PSQL_DATABASE")}
		user := e.str("", "PSQL_BOT_USERNAME", "PSQL_USERNAME", "PSQL_USER")
		if pw, _, ok := e.first("PSQL_BOT_PASSWORD", "PSQL_PASSWORD"); ok {
			u.User = url.UserPassword(user, pw)
		} else if user != "" {
			u.User = url.User(user)
		}
		if mode := e.str("", "PSQL_SSLMODE"); mode != "" {
			u.RawQuery = url.Values{"sslmode": {mode}}.Encode()
		}
		c.DatabaseURL = u.String()
	}
	c.DatabaseMaxConns, err = e.integer(10, 1, 1000, "DATABASE_MAX_CONNS")
	check(err)
	return c, errors.Join(errs...)
}

// The chat service serves the edge's chat sockets and the API; edge and chat
// do not import each other, so their contracts are checked here.
var (
	_ edge.ChatConn = (*chat.Conn)(nil)
	_ chat.Sink     = edge.ChatSink(nil)
	_ api.Backend   = (*chat.Service)(nil)
	_ chat.Mirror   = mirrorFunc(nil)
)

// newChat builds model, history store (running migrations), worker pool and
// API handler. close drains turns and releases the pool/db.
func newChat(ctx context.Context, cfg chatConfig, mirror chat.Mirror, log *slog.Logger,
	reg prometheus.Registerer) (svc *chat.Service, apiHandler edge.APIHandler, close func(context.Context) error, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.CSRFSecretRandom {
		log.Warn("chat: neither CSRF_SECRET_KEY nor SECRET_KEY is set; CSRF tokens use a random secret and work only on this instance until it restarts")
	}
	var m model.Model
	if cfg.Bedrock.ChatModelID == "" {
		m = model.Local{Delay: cfg.LocalDelay}
		log.Warn("chat: using the LOCAL DEMO MODEL (BEDROCK_MODEL_ID_CHAT is not set): answers are canned and echo the request")
	} else {
		// One transport for every stream (model.TransportOptions: HTTP/2
		// where the endpoint offers it, connection limits from the
		// workers). A BuildableClient still honours AWS_CA_BUNDLE.
		opts := []func(*awsconfig.LoadOptions) error{awsconfig.WithHTTPClient(awshttp.NewBuildableClient().
			WithTransportOptions(model.TransportOptions(cfg.Service.Workers)))}
		if cfg.BedrockRegion != "" {
			opts = append(opts, awsconfig.WithRegion(cfg.BedrockRegion))
		}
		awsCfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("chat: aws config: %w", err)
		}
		bc := cfg.Bedrock
		bc.AWS = awsCfg
		b, err := model.NewBedrock(bc)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("chat: %w", err)
		}
		m = b
		log.Info("chat: using Amazon Bedrock", "model", bc.ChatModelID, "summary_model", bc.SummaryModelID,
			"region", awsCfg.Region, "guardrail", bc.GuardrailID != "")
	}

	var store history.Store
	if cfg.DatabaseURL == "" {
		store = history.NewMemoryWith(history.MemoryConfig{MaxBytes: int64(cfg.MemoryHistoryBytes), TTL: cfg.HistoryTTL})
		log.Warn("chat: thread history is in memory (DATABASE_URL is not set): it is lost on restart and not shared between instances")
	} else {
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		pg, err := history.OpenPostgres(octx, cfg.DatabaseURL, history.PostgresConfig{
			MaxConns: int32(cfg.DatabaseMaxConns), TTL: cfg.HistoryTTL, Log: log})
		cancel()
		if err != nil {
			return nil, nil, nil, fmt.Errorf("chat: %w", err)
		}
		store = pg
		log.Info("chat: thread history in PostgreSQL", "max_conns", cfg.DatabaseMaxConns, "ttl", cfg.HistoryTTL)
	}

	svc, err = chat.New(cfg.Service, m, store, mirror, log, reg)
	if err != nil {
		store.Close()
		return nil, nil, nil, err
	}
	apiHandler, err = api.NewHandler(cfg.API, svc, log)
	if err != nil {
		_ = svc.Shutdown(ctx)
		store.Close()
		return nil, nil, nil, err
	}
	close = func(ctx context.Context) error {
		err := svc.Shutdown(ctx)
		store.Close()
		return err
	}
	return svc, apiHandler, close, nil
}
