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
	now := time.Now()
	if !c.allowTurn(now) {
		c.s.m.rejections.WithLabelValues("rate_limited").Inc()
		fail(codeRateLimited, fmt.Sprintf("too many turns on this connection (at most %g a minute); try again shortly", c.s.cfg.TurnRate))
		return
	}
	if thread == "" {
		thread = c.newThread()
	}
	switch c.s.threads.take(thread, now) {
	case threadRateLimited:
		c.s.m.rejections.WithLabelValues("thread_rate_limited").Inc()
		c.allowance++ // not started: the turn is given back
		fail(codeRateLimited, fmt.Sprintf("too many turns on this thread (at most %g a minute from all connections); try again shortly", c.s.cfg.ThreadTurnRate))
		return
	case threadTableFull:
		c.s.m.rejections.WithLabelValues("thread_table_full").Inc()
		c.allowance++
		fail(codeRateLimited, "too many threads are active on this server; try again shortly")
		return
	}
	if err := c.s.pool.admit(); err != nil {
		reason, text := "full", "the server is busy; try again shortly"
		if errors.Is(err, errPoolClosing) {
			reason, text = "shutting_down", "the server is shutting down; reconnect and try again"
		}
		c.s.m.rejections.WithLabelValues(reason).Inc()
		c.allowance++ // not started: the turn is given back
		c.s.threads.giveBack(thread)
		fail(codeBusy, text)
		return
	}
	c.thread = thread
	t := &turn{c: c, thread: thread, message: msg, channel: in["channel"], data: in["data"], accepted: time.Now()}
	t.ctx, t.cancel = context.WithCancelCause(c.s.base)
	c.active = t
	c.sink.Send(wire.SessionStarted(thread, c.id))
	c.s.pool.submit(t)
}
