package chat

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/wsedge/wsedge/chat/history"
	"github.com/wsedge/wsedge/chat/model"
	"github.com/wsedge/wsedge/internal/ids"
	"github.com/wsedge/wsedge/internal/wire"
)

// Error codes of chat error frames (PROTOCOL.md §2).
const (
	codeInvalidJSON    = "invalid_json"
	codeInvalidMessage = "invalid_message"
	codeDataRequired   = "data_required"
	codeBusy           = "busy"
	codeTurnInProgress = "turn_in_progress"
	codeUpstream       = "upstream_error"
	codeTextRequired   = "text_required"
	codeRateLimited    = "rate_limited"
)

// Conn is the chat protocol of one /ws/chat/ socket. OnText, OnBinary and
// OnClose are called on the socket's event loop; the streaming turn runs on
// a pool worker. mu orders what both sides send, so a client never sees a
// frame of its next turn before the end of the previous one.
type Conn struct {
	s    *Service
	id   string
	sink Sink

	mu     sync.Mutex
	thread string // current thread: the last turn's
	active *turn
	closed bool
	// Turn-rate bucket, refilled lazily when a turn asks for a token: no
	// timer per socket.
	allowance float64
	refilled  time.Time
}

// turn is one accepted chat message and its answer.
type turn struct {
	c        *Conn
	thread   string
	message  string
	channel  json.RawMessage
	data     json.RawMessage
	ctx      context.Context
	cancel   context.CancelCauseFunc
	accepted time.Time

	// Written only by the worker.
	answer    strings.Builder // text sent to the client since the last rewrite
	firstSent bool
	attempts  int
	rewrites  int
	inTokens  int
	outTokens int
	guardrail string // the guardrail's account of the last intervention
}

// Open starts the chat protocol for a socket that has just upgraded.
func (s *Service) Open(connectionID string, sink Sink) *Conn {
	return &Conn{s: s, id: connectionID, sink: sink, allowance: float64(s.cfg.TurnBurst), refilled: time.Now()}
}

// allowTurn takes one turn from the socket's bucket (TurnRate per minute,
// TurnBurst at once). Called with c.mu held.
func (c *Conn) allowTurn(now time.Time) bool {
	cfg := &c.s.cfg
	c.allowance = min(float64(cfg.TurnBurst), c.allowance+now.Sub(c.refilled).Minutes()*cfg.TurnRate)
	c.refilled = now
	if c.allowance < 1 {
		return false
	}
	c.allowance--
	return true
}

// OnBinary answers a binary frame; the socket stays open.
func (c *Conn) OnBinary() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.sink.Send(wire.ErrorFrame(codeTextRequired, "frames must be JSON text"))
	}
}

// OnClose cancels the streaming turn, if any: its upstream stream closes
// within microseconds.
func (c *Conn) OnClose() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.active != nil {
		c.active.cancel(errClientGone)
	}
}

var null = []byte("null")

func isNull(raw json.RawMessage) bool { return len(raw) == 0 || bytes.Equal(raw, null) }

func newThreadID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// OnText handles one complete text message. It never blocks: it validates,
// answers errors through the sink, and hands an accepted turn to the pool.
func (c *Conn) OnText(payload []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	fail := func(code, msg string) { c.sink.Send(wire.ErrorFrame(code, msg)) }
	if !json.Valid(payload) {
		fail(codeInvalidJSON, "the message is not valid JSON")
		return
	}
	var in map[string]json.RawMessage
	if err := json.Unmarshal(payload, &in); err != nil || in == nil {
		fail(codeInvalidMessage, "the message must be a JSON object")
		return
	}
	var typ string
	if err := json.Unmarshal(in["type"], &typ); err != nil {
		fail(codeInvalidMessage, `"type" must be "chat" or "cancel"`)
		return
	}
	switch typ {
	case "cancel":
		if c.active != nil {
			c.active.cancel(errClientCancel)
		}
		return
	case "chat":
	default:
		fail(codeInvalidMessage, `"type" must be "chat" or "cancel"`)
		return
	}
	var msg string
	if err := json.Unmarshal(in["message"], &msg); err != nil || strings.TrimSpace(msg) == "" {
		fail(codeInvalidMessage, `"message" must be a non-empty string`)
		return
	}
	if limit := c.s.cfg.MaxMessageChars; len(msg) > limit && (len(msg) > 4*limit || utf8.RuneCountInString(msg) > limit) {
		fail(codeInvalidMessage, fmt.Sprintf(`"message" is longer than %d characters`, limit))
		return
	}
	thread := c.thread
	if raw := in["thread_id"]; !isNull(raw) {
		if err := json.Unmarshal(raw, &thread); err != nil || !ids.Valid(thread) {
			fail(codeInvalidMessage, `"thread_id" must be 1-128 characters of A-Z a-z 0-9 _ . : -`)
			return
		}
	}
	if thread != "" && !c.mayContinue(thread) {
		fail(codeThreadForbidden, "continuing this thread_id needs a join token whose sid covers it")
		return
	}
	var channel string
	if raw := in["channel"]; !isNull(raw) {
		if err := json.Unmarshal(raw, &channel); err != nil {
			fail(codeInvalidMessage, `"channel" must be a string`)
			return
		}
	}
	if len(in["data"]) > c.s.cfg.MaxDataBytes {
		fail(codeInvalidMessage, fmt.Sprintf(`"data" is larger than %d bytes`, c.s.cfg.MaxDataBytes))
		return
	}
	if channel == "web" && isNull(in["data"]) {
		fail(codeDataRequired, `"data" is required when "channel" is "web"`)
		return
	}
	if c.active != nil {
		fail(codeTurnInProgress, "a turn is already streaming on this connection; send cancel to stop it")
		return
	}
	if !c.allowTurn(time.Now()) {
		c.s.m.rejections.WithLabelValues("rate_limited").Inc()
		fail(codeRateLimited, fmt.Sprintf("too many turns on this connection (at most %g a minute); try again shortly", c.s.cfg.TurnRate))
		return
	}
	if err := c.s.pool.admit(); err != nil {
		reason, text := "full", "the server is busy; try again shortly"
		if errors.Is(err, errPoolClosing) {
			reason, text = "shutting_down", "the server is shutting down; reconnect and try again"
		}
		c.s.m.rejections.WithLabelValues(reason).Inc()
		c.allowance++ // not started: the turn is given back
		fail(codeBusy, text)
		return
	}
	if thread == "" {
		thread = c.newThread()
	}
	c.thread = thread
	t := &turn{c: c, thread: thread, message: msg, channel: in["channel"], data: in["data"], accepted: time.Now()}
	t.ctx, t.cancel = context.WithCancelCause(c.s.base)
	c.active = t
	c.sink.Send(wire.SessionStarted(thread, c.id))
	c.s.pool.submit(t)
}

// errSinkGone stops a stream whose socket refused a frame.
var errSinkGone = errors.New("chat socket refused a frame")

// emit sends one token frame and remembers the text as sent.
func (t *turn) emit(s *Service, delta string) error {
	if !t.firstSent {
		t.firstSent = true
		s.m.ttft.Observe(time.Since(t.accepted).Seconds())
	}
	if !t.c.sink.Send(wire.Token(delta)) {
		t.cancel(errClientGone)
		return errSinkGone
	}
	s.m.tokens.Inc()
	t.answer.WriteString(delta)
	return nil
}

// rewrite tells the client to discard the tokens of this turn shown so far:
// the guardrail stopped the attempt they belong to; what follows replaces
// them.
func (t *turn) rewrite(s *Service) error {
	t.rewrites++
	t.answer.Reset()
	if !t.c.sink.Send(wire.Rewrite(t.rewrites)) {
		t.cancel(errClientGone)
		return errSinkGone
	}
	return nil
}

// countTokens adds a generation's usage to the token counters.
func (s *Service) countTokens(res model.Result) {
	if res.ModelID == "" {
		return
	}
	if res.InputTokens > 0 {
		s.m.modelTokens.WithLabelValues("input", res.ModelID).Add(float64(res.InputTokens))
	}
	if res.OutputTokens > 0 {
		s.m.modelTokens.WithLabelValues("output", res.ModelID).Add(float64(res.OutputTokens))
	}
}

// run executes a turn on a worker.
func (s *Service) run(t *turn) {
	defer t.cancel(nil)
	outcome, kind, err := s.execute(t)
	if err != nil {
		s.m.upstream.WithLabelValues(kind).Inc()
	}
	// Counted last: tests (and dashboards) that see the turn counted see
	// everything else about it.
	s.m.duration.Observe(time.Since(t.accepted).Seconds())
	s.m.turns.WithLabelValues(outcome).Inc()
	// One line per turn with its cost: operators follow spend (and
	// guardrail interventions) per thread from the logs.
	attrs := []any{"connection_id", t.c.id, "thread_id", t.thread, "outcome", outcome,
		"duration", time.Since(t.accepted), "model", s.model.Name(), "attempts", t.attempts, "rewrites", t.rewrites,
		"input_tokens", t.inTokens, "output_tokens", t.outTokens}
	if t.guardrail != "" {
		attrs = append(attrs, "guardrail", t.guardrail)
	}
	if err != nil {
		s.log.Warn("chat turn failed", append(attrs, "type", kind, "err", err)...)
	} else {
		s.log.Info("chat turn ended", attrs...)
	}
}

// execute streams the answer and ends the turn; it returns the outcome and,
// for a failure, the error type and error.
func (s *Service) execute(t *turn) (outcome, kind string, err error) {
	ctx, cancel := context.WithTimeout(t.ctx, s.cfg.TurnTimeout)
	defer cancel()

	var stored []history.Message
	if ctx.Err() == nil {
		hctx, hcancel := context.WithTimeout(ctx, s.cfg.StoreTimeout)
		// Read no more than can be sent: HistoryChars characters are at
		// most 4 bytes each.
		stored, err = s.history.Recent(hctx, t.thread, history.Window{Messages: s.cfg.HistoryMessages, Bytes: 4 * s.cfg.HistoryChars})
		hcancel()
		if err != nil && t.ctx.Err() == nil {
			s.fail(t)
			return outcomeFailed, "history", err
		}
	}
	if ctx.Err() == nil {
		s.mirrorUser(t)
	}
	req := model.Request{
		System:   s.cfg.SystemPrompt,
		Messages: conversation(stored, t.message, s.cfg.HistoryMessages+1, s.cfg.HistoryChars),
		Tools:    true,
	}
	var res model.Result
	guarded := s.model.Guarded()
	reached := false // the model was asked: a cancelled turn that never was stores nothing
	for attempt := 0; ; attempt++ {
		if err = ctx.Err(); err != nil {
			err = context.Cause(ctx)
			break
		}
		reached = true
		req.Rewrite = attempt
		t.attempts++
		// Every delta goes to the client at once: with a guardrail, Bedrock
		// has already vetted it (sync stream processing).
		res, err = s.model.Stream(ctx, req, func(d string) error { return t.emit(s, d) })
		s.countTokens(res)
		t.inTokens += res.InputTokens
		t.outTokens += res.OutputTokens
		if res.Guardrail != "" {
			t.guardrail = res.Guardrail
		}
		if err != nil || !res.Blocked || !guarded {
			break
		}
		// The guardrail stopped this attempt: the client discards what it
		// was shown of it, and sees the regenerated answer (or, past the
		// last allowed rewrite, the fixed refusal) instead.
		if err = t.rewrite(s); err != nil {
			break
		}
		if attempt >= s.cfg.Rewrites {
			break
		}
		s.m.rewrites.Inc()
	}

	if err == nil && res.Blocked {
		// Every attempt was blocked: say so, store nothing (neither the
		// blocked answer nor the message that provoked it).
		if !guarded && t.answer.Len() > 0 {
			s.finish(t, nil, false)
			s.mirrorAnswer(t, outcomeBlocked)
			return outcomeBlocked, "", nil
		}
		if err = t.emit(s, s.cfg.BlockedAnswer); err == nil {
			s.finish(t, nil, false)
			s.mirrorAnswer(t, outcomeBlocked)
			return outcomeBlocked, "", nil
		}
	}
	// A cancelled or disconnected turn stores what the client kept, unless
	// all it kept was discarded by a rewrite: the message that provoked the
	// guardrail is not stored either.
	reached = reached && (t.rewrites == 0 || t.answer.Len() > 0)
	if err != nil {
		switch cause := context.Cause(t.ctx); {
		case errors.Is(cause, errClientCancel):
			if reached {
				s.store(t, false)
			}
			s.finish(t, nil, false)
			s.mirrorAnswer(t, outcomeCancelled)
			return outcomeCancelled, "", nil
		case errors.Is(cause, errClientGone) || errors.Is(err, errSinkGone):
			if reached {
				s.store(t, false)
			}
			s.finish(t, nil, false)
			s.mirrorAnswer(t, outcomeDisconnected)
			return outcomeDisconnected, "", nil
		case errors.Is(cause, errShutdown):
			s.fail(t)
			return outcomeFailed, "shutdown", err
		}
		s.fail(t)
		return outcomeFailed, model.ErrorKind(err), err
	}
	s.store(t, res.Escalate)
	if res.Escalate {
		s.finish(t, wire.Escalation(), true)
		s.mirrorAnswer(t, outcomeEscalated)
		return outcomeEscalated, "", nil
	}
	s.finish(t, nil, false)
	s.mirrorAnswer(t, outcomeCompleted)
	return outcomeCompleted, "", nil
}

// finish ends the turn for the client: the frames in before (an error or
// the escalation) then end; after an escalation the socket is closed with
// 1000. The connection stops having an active turn in the same critical
// section, so the client's next chat frame, sent after it sees end, is
// accepted.
func (s *Service) finish(t *turn, before []byte, escalation bool) {
	c := t.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.active == t {
		c.active = nil
	}
	if c.closed {
		return
	}
	if before != nil {
		c.sink.Send(before)
	}
	c.sink.Send(wire.End())
	if escalation {
		c.closed = true
		c.sink.Close(1000, "escalation")
	}
}

// fail ends a failed turn with upstream_error then end. Nothing is stored.
func (s *Service) fail(t *turn) {
	msg := "the model failed to answer; please try again"
	if errors.Is(context.Cause(t.ctx), errShutdown) {
		msg = "the server is shutting down; please reconnect and try again"
	}
	s.finish(t, wire.ErrorFrame(codeUpstream, msg), false)
	s.mirrorEvent(t, `{"event":"error","error":"upstream_error"}`)
}

// store saves the user message and the answer sent (possibly partial) as a
// pair. It runs after the turn's context may be cancelled, so it uses its
// own deadline.
func (s *Service) store(t *turn, escalated bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.ctx), s.cfg.StoreTimeout)
	defer cancel()
	err := s.history.Append(ctx, t.thread, []history.Message{
		{Role: model.RoleUser, Content: t.message},
		{Role: model.RoleAssistant, Content: clipChars(t.answer.String(), s.cfg.MaxAnswerChars), Escalated: escalated},
	})
	if err != nil {
		s.m.upstream.WithLabelValues("history").Inc()
		s.log.Error("chat turn not stored", "thread_id", t.thread, "err", err)
	}
}

// clipChars cuts s to at most n characters.
func clipChars(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := 0
	for j := range s {
		if i == n {
			return s[:j]
		}
		i++
	}
	return s
}
