package chat

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/wsedge/wsedge/chat/history"
	"github.com/wsedge/wsedge/chat/model"
	"github.com/wsedge/wsedge/internal/wire"
)

// The turn engine: what a worker does with an admitted chat message (history,
// model attempts, guardrail rewrites, streaming, storing and mirroring) and
// how the turn ends for the client.

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
