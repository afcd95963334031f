// Package model is the chat turn's view of a language model: one streaming
// generation at a time per call, text deltas delivered in order, and a result
// that says how the generation ended.
package model

import (
	"context"
	"errors"
	"fmt"
)

// Roles of a conversation message. Bedrock requires them to alternate,
// starting with RoleUser.
const (
	RoleUser      = "user"
	RoleAssistant = "assistant"
)

// EscalationTool is the name of the tool the model calls to hand the
// conversation to a human agent.
const EscalationTool = "escalate_to_human"

// Message is one entry of the conversation sent to the model.
type Message struct {
	Role    string
	Content string
}

// Request is one generation.
type Request struct {
	// System is the system prompt.
	System string
	// Messages alternate user/assistant and end with the user's new message.
	Messages []Message
	// Tools offers the escalate_to_human tool to the model.
	Tools bool
	// Summary selects the summary model (BEDROCK_MODEL_ID_SUMMARY) instead of
	// the chat model.
	Summary bool
	// Rewrite is 0 for the first attempt and n for the n-th regeneration after
	// a guardrail intervention; models add a rewrite instruction when > 0.
	Rewrite int
}

// Stop reasons reported in Result.StopReason (Bedrock's names).
const (
	StopEndTurn   = "end_turn"
	StopToolUse   = "tool_use"
	StopMaxTokens = "max_tokens"
	StopGuardrail = "guardrail_intervened"
	StopFiltered  = "content_filtered"
)

// Result describes a generation that reached its end (messageStop).
type Result struct {
	StopReason string
	// Escalate is true when the model called the escalate_to_human tool.
	Escalate bool
	// Blocked is true when a guardrail or content filter stopped the answer:
	// the text delivered for this attempt must be discarded and never stored.
	Blocked      bool
	InputTokens  int
	OutputTokens int
	// ModelID is the model that answered (the label of the token metrics).
	ModelID string
	// Guardrail is the guardrail's account of an intervention from the
	// stream's trace ("Guardrail blocked.; contentPolicy MISCONDUCT"), for
	// logs; "" when none was reported.
	Guardrail string
}

// Model streams generations. Implementations are safe for concurrent use.
type Model interface {
	// Name labels the model in logs and metrics ("local", "bedrock:<id>").
	Name() string
	// ModelIDs lists the ids a Result.ModelID can take (chat and summary
	// models), so that their token counters exist from start.
	ModelIDs() []string
	// Guarded reports whether a guardrail vets the answers: an attempt it
	// stops (Result.Blocked) is regenerated, and the client told to discard
	// what it was shown of it.
	Guarded() bool
	// Stream runs one generation. onDelta receives each text delta in order;
	// an error from onDelta stops the generation and is returned as is.
	// Stream returns only after the upstream stream is closed.
	Stream(ctx context.Context, req Request, onDelta func(string) error) (Result, error)
}

// Kinds of upstream failure, used as the metrics label and in logs.
const (
	KindThrottled   = "throttled"
	KindModel       = "model_error"
	KindUnavailable = "unavailable"
	KindValidation  = "validation"
	KindTruncated   = "truncated"
	KindTimeout     = "timeout"
	KindStalled     = "stalled"
	KindOther       = "other"
)

// Error is an upstream failure of a generation.
type Error struct {
	Kind string
	Err  error
}

func (e *Error) Error() string { return fmt.Sprintf("model %s: %v", e.Kind, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// ErrorKind returns the Kind of an *Error in err's chain, or KindOther.
func ErrorKind(err error) string {
	var me *Error
	if errors.As(err, &me) {
		return me.Kind
	}
	return KindOther
}

// ErrTruncated is the cause of a stream that closed without messageStop.
var ErrTruncated = errors.New("stream closed without messageStop")

// ErrStalled is the cause of a stream that sent nothing for the idle timeout.
var ErrStalled = errors.New("no event from upstream within the idle timeout")
