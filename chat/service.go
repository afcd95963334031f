// Package chat runs the chat side of wsedge: the /ws/chat/ protocol of one
// socket (Conn), a bounded worker pool that streams model answers off the
// event loop, thread history, mirroring to /ws/session/<thread_id>/
// listeners, and the queries behind the HTTP API (Service.History,
// Service.Summarize).
package chat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsedge/wsedge/chat/history"
	"github.com/wsedge/wsedge/chat/model"
)

// Sink is the edge's side of one chat WebSocket. Safe to call from any
// goroutine; never blocks. Its methods must not call back into the Conn
// synchronously (the Conn holds its lock while calling them).
type Sink interface {
	// Send queues one JSON text frame for the client, in call order. false =
	// the socket is gone or its outbound queue is over the cap (the edge then
	// closes it with 1013): stop the turn.
	Send(payload []byte) bool
	// Close sends a close frame (code, reason) after the frames already
	// queued, then closes the socket.
	Close(code uint16, reason string)
}

// Mirror publishes a frame to the listeners of /ws/session/<threadID>/ (the
// edge's hub/broker). Never blocks.
type Mirror interface {
	Mirror(threadID string, payload []byte)
}

// Config tunes the service. Zero values take the defaults in brackets
// (Defaults).
type Config struct {
	// Workers is how many turns stream at once [256]; Queue how many more
	// accepted turns may wait for a worker [256]. Beyond both: busy.
	Workers int
	Queue   int
	// TurnTimeout bounds a turn from the moment a worker takes it: history
	// load, every model attempt and the stream [2m].
	TurnTimeout time.Duration
	// HistoryMessages and HistoryChars bound what is sent to the model with
	// each turn, the new message included: the most recent messages that fit
	// both [20, 24000]. Characters are Unicode code points here and in every
	// *Chars setting.
	HistoryMessages int
	HistoryChars    int
	// MaxMessageChars caps a chat message; longer is invalid_message
	// [4000]. It must not exceed HistoryChars, so a new message always fits.
	MaxMessageChars int
	// MaxDataBytes caps the raw JSON of a chat frame's "data" (kept with
	// the turn and mirrored to session listeners); larger is
	// invalid_message [16 KiB]. With MaxMessageChars it bounds the bytes an
	// admitted turn holds, so the pool's places are bounded in bytes too.
	MaxDataBytes int
	// MaxAnswerChars caps the answer stored in history (the client is sent
	// the whole answer, itself bounded by BEDROCK_MAX_TOKENS) [16000].
	MaxAnswerChars int
	// TurnRate (turns per minute) and TurnBurst bound the turns one socket
	// may start; over them a chat frame gets rate_limited [20, 5].
	TurnRate  float64
	TurnBurst int
	// ThreadTurnRate (turns per minute) and ThreadTurnBurst bound the turns
	// started on one thread by all of this instance's sockets together;
	// over them a chat frame gets rate_limited [30, 10].
	ThreadTurnRate  float64
	ThreadTurnBurst int
	// HistoryLimit and HistoryBytes bound History (/api/thread/history):
	// the newest messages within both [1000, 256 KiB of content].
	HistoryLimit int
	HistoryBytes int
	// SummaryMessages and SummaryChars bound the history read for and sent
	// to the summary model: the newest messages within both [200, 32000].
	SummaryMessages int
	SummaryChars    int
	// StoreTimeout bounds each history read or write [5s].
	StoreTimeout time.Duration
	// Rewrites is MAXIMUM_GUARDRAIL_REWRITES: how many times an answer
	// blocked by the guardrail is regenerated [2; 0 is kept: no rewrite].
	Rewrites int
	// SystemPrompt is sent with every chat turn.
	SystemPrompt string
	// BlockedAnswer is streamed when every attempt was blocked.
	BlockedAnswer string
}

// Defaults is the configuration every zero field of a Config takes; the
// settings of cmd/wsedge start from it too.
func Defaults() Config {
	return Config{
		Workers:         256,
		Queue:           256,
		TurnTimeout:     2 * time.Minute,
		HistoryMessages: 20,
		HistoryChars:    24000,
		MaxMessageChars: 4000,
		MaxDataBytes:    16 << 10,
		MaxAnswerChars:  16000,
		TurnRate:        20,
		TurnBurst:       5,
		ThreadTurnRate:  30,
		ThreadTurnBurst: 10,
		HistoryLimit:    1000,
		HistoryBytes:    256 << 10,
		SummaryMessages: 200,
		SummaryChars:    32000,
		StoreTimeout:    5 * time.Second,
		Rewrites:        2,
		SystemPrompt: "You are a helpful customer support assistant. Answer briefly and clearly. " +
			"If the user asks for a human or you cannot help, call the " + model.EscalationTool + " tool.",
		BlockedAnswer: "Sorry, I can't help with that request.",
	}
}

func (c *Config) defaults() {
	d := Defaults()
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.Workers, d.Workers)
	def(&c.Queue, d.Queue)
	def(&c.HistoryMessages, d.HistoryMessages)
	def(&c.HistoryChars, d.HistoryChars)
	def(&c.MaxMessageChars, d.MaxMessageChars)
	c.MaxMessageChars = min(c.MaxMessageChars, c.HistoryChars)
	def(&c.MaxAnswerChars, d.MaxAnswerChars)
	def(&c.MaxDataBytes, d.MaxDataBytes)
	def(&c.TurnBurst, d.TurnBurst)
	if c.TurnRate <= 0 {
		c.TurnRate = d.TurnRate
	}
	def(&c.ThreadTurnBurst, d.ThreadTurnBurst)
	if c.ThreadTurnRate <= 0 {
		c.ThreadTurnRate = d.ThreadTurnRate
	}
	def(&c.HistoryLimit, d.HistoryLimit)
	def(&c.HistoryBytes, d.HistoryBytes)
	def(&c.SummaryMessages, d.SummaryMessages)
	def(&c.SummaryChars, d.SummaryChars)
	// Zero rewrites is a setting, not an unset field.
	c.Rewrites = max(c.Rewrites, 0)
	if c.TurnTimeout <= 0 {
		c.TurnTimeout = d.TurnTimeout
	}
	if c.StoreTimeout <= 0 {
		c.StoreTimeout = d.StoreTimeout
	}
	if c.SystemPrompt == "" {
		c.SystemPrompt = d.SystemPrompt
	}
	if c.BlockedAnswer == "" {
		c.BlockedAnswer = d.BlockedAnswer
	}
}

// Service owns the worker pool and everything a turn needs.
type Service struct {
	cfg     Config
	model   model.Model
	history history.Store
	mirror  Mirror
	log     *slog.Logger
	m       *metrics
	pool    *pool
	threads *threadRates

	base       context.Context
	cancelBase context.CancelCauseFunc
}

// Causes of a turn's cancellation, told apart by context.Cause.
var (
	errClientCancel = errors.New("cancelled by the client")
	errClientGone   = errors.New("chat socket closed")
	errShutdown     = errors.New("server shutting down")
)

// New starts the worker pool. mirror may be nil (nothing is mirrored).
func New(cfg Config, m model.Model, h history.Store, mirror Mirror, log *slog.Logger, reg prometheus.Registerer) (*Service, error) {
	cfg.defaults()
	if m == nil || h == nil {
		return nil, errors.New("chat: model and history store are required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s := &Service{cfg: cfg, model: m, mirror: mirror, log: log,
		threads: newThreadRates(cfg.ThreadTurnRate, cfg.ThreadTurnBurst, maxTrackedThreads)}
	s.base, s.cancelBase = context.WithCancelCause(context.Background())
	p := newPool(cfg.Workers, cfg.Queue, s.run)
	met, err := newMetrics(reg, p, m.ModelIDs())
	if err != nil {
		p.stop()
		return nil, fmt.Errorf("chat metrics: %w", err)
	}
	s.pool, s.m, s.history = p, met, timedStore{Store: h, m: met}
	log.Info("chat service started", "model", m.Name(), "guarded", m.Guarded(),
		"workers", cfg.Workers, "queue", cfg.Queue, "turn_timeout", cfg.TurnTimeout,
		"max_message_chars", cfg.MaxMessageChars, "turn_rate_per_min", cfg.TurnRate, "turn_burst", cfg.TurnBurst,
		"thread_turn_rate_per_min", cfg.ThreadTurnRate, "thread_turn_burst", cfg.ThreadTurnBurst)
	return s, nil
}

// Shutdown refuses new turns and lets running ones finish until ctx is done;
// then it cancels the rest (their clients get upstream_error and end) and
// waits a moment for them to unwind. It returns ctx's error if it had to
// cancel.
func (s *Service) Shutdown(ctx context.Context) error {
	s.pool.close()
	idle := s.pool.idle()
	var err error
	select {
	case <-idle:
	case <-ctx.Done():
		err = ctx.Err()
		s.cancelBase(errShutdown)
		// Cancelled turns end within microseconds of their stream closing;
		// the bound only guards against a store write that hangs.
		select {
		case <-idle:
		case <-time.After(s.cfg.StoreTimeout + time.Second):
		}
	}
	s.cancelBase(errShutdown)
	s.pool.stop()
	return err
}

// History returns the thread's newest messages, oldest first, within
// Config.HistoryLimit messages and Config.HistoryBytes of content. An
// unknown (or expired) thread is history.ErrNotFound.
func (s *Service) History(ctx context.Context, threadID string) ([]history.Message, error) {
	return s.recent(ctx, threadID, history.Window{Messages: s.cfg.HistoryLimit, Bytes: s.cfg.HistoryBytes})
}

func (s *Service) recent(ctx context.Context, threadID string, w history.Window) ([]history.Message, error) {
	msgs, err := s.history.Recent(ctx, threadID, w)
	if err != nil {
		return nil, err
	}
	if len(msgs) == 0 {
		return nil, history.ErrNotFound
	}
	return msgs, nil
}

// summaryInstruction is the last user message of a summary request.
const summaryInstruction = "Summarize the conversation above in a few sentences: what the user wanted, " +
	"what was answered, and whether anything is still open."

// Summarize asks the summary model for a summary of the thread.
func (s *Service) Summarize(ctx context.Context, threadID string) (string, error) {
	// Read no more than can be sent: SummaryChars characters are at most
	// 4 bytes each.
	msgs, err := s.recent(ctx, threadID, history.Window{Messages: s.cfg.SummaryMessages, Bytes: 4 * s.cfg.SummaryChars})
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.TurnTimeout)
	defer cancel()
	conv := conversation(msgs, summaryInstruction, s.cfg.SummaryMessages+1, s.cfg.SummaryChars+utf8.RuneCountInString(summaryInstruction))
	var b strings.Builder
	res, err := s.model.Stream(ctx, model.Request{
		System:   "You write short, factual summaries of customer support conversations.",
		Messages: conv, Summary: true,
	}, func(d string) error { b.WriteString(d); return nil })
	s.countTokens(res)
	if err != nil {
		s.m.upstream.WithLabelValues(model.ErrorKind(err)).Inc()
		return "", fmt.Errorf("summarize %q: %w", threadID, err)
	}
	if res.Blocked {
		return "", fmt.Errorf("summarize %q: the summary was blocked by the guardrail", threadID)
	}
	return strings.TrimSpace(b.String()), nil
}

// Placeholders for stored messages that cannot be sent to the model as is.
const (
	noAnswer        = "(no answer: the user cancelled)"
	escalatedMarker = "[This conversation was escalated to a human agent.]"
)

// conversation turns stored messages plus the new user message into what
// the model accepts: the most recent messages within maxMsgs messages and
// maxChars characters, the new message included (0: unbounded), starting
// with a user message, roles alternating, no empty text. The new message is
// always sent (OnText caps it below maxChars).
func conversation(stored []history.Message, user string, maxMsgs, maxChars int) []model.Message {
	var out []model.Message
	for _, m := range stored {
		content := m.Content
		if m.Role == model.RoleAssistant {
			if m.Escalated {
				content = strings.TrimSpace(content + "\n\n" + escalatedMarker)
			} else if strings.TrimSpace(content) == "" {
				content = noAnswer
			}
		} else if strings.TrimSpace(content) == "" {
			continue
		}
		if n := len(out); n > 0 && out[n-1].Role == m.Role {
			out[n-1].Content += "\n\n" + content
			continue
		}
		out = append(out, model.Message{Role: m.Role, Content: content})
	}
	// A stored thread ends with an answer; if it ends with a user message
	// (written by hand), that message gets an empty answer so roles alternate.
	if n := len(out); n > 0 && out[n-1].Role == model.RoleUser {
		out = append(out, model.Message{Role: model.RoleAssistant, Content: noAnswer})
	}
	// Keep the newest stored messages that fit next to the new one.
	budget := maxChars - utf8.RuneCountInString(user)
	start, chars := len(out), 0
	for start > 0 {
		next := chars + utf8.RuneCountInString(out[start-1].Content)
		if (maxMsgs > 0 && len(out)-start+2 > maxMsgs) || (maxChars > 0 && next > budget) {
			break
		}
		start, chars = start-1, next
	}
	for start < len(out) && out[start].Role != model.RoleUser {
		start++
	}
	return append(out[start:len(out):len(out)], model.Message{Role: model.RoleUser, Content: user})
}
