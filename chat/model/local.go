package model

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

var _ Model = Local{}

// Local is the embedded demo model used when no Bedrock model is configured.
// It is deterministic: the same request always streams the same answer, which
// says plainly that it is a local demo model and echoes the request, so the
// quick start works offline and tests can predict every token.
type Local struct {
	// Delay between two deltas, so that the answer visibly streams. Zero
	// streams as fast as the consumer takes it.
	Delay time.Duration
}

// localEscalationTrigger makes the local model call the escalation tool when
// the user's message contains it (case-insensitive), to demonstrate
// escalation without an LLM.
const localEscalationTrigger = "human"

// Name implements Model.
func (Local) Name() string { return "local" }

// ModelIDs implements Model.
func (Local) ModelIDs() []string { return []string{"local"} }

// Guarded implements Model: the local model has no guardrail.
func (Local) Guarded() bool { return false }

// Stream implements Model.
func (l Local) Stream(ctx context.Context, req Request, onDelta func(string) error) (Result, error) {
	text, escalate := l.answer(req)
	res := Result{ModelID: "local"}
	for _, part := range splitWords(text) {
		if l.Delay > 0 {
			t := time.NewTimer(l.Delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return res, context.Cause(ctx)
			case <-t.C:
			}
		} else if err := ctx.Err(); err != nil {
			return res, context.Cause(ctx)
		}
		if err := onDelta(part); err != nil {
			return res, err
		}
		res.OutputTokens++
	}
	res.InputTokens = 0
	for _, m := range req.Messages {
		res.InputTokens += len(strings.Fields(m.Content))
	}
	res.StopReason = StopEndTurn
	if escalate {
		res.StopReason, res.Escalate = StopToolUse, true
	}
	return res, nil
}

func (Local) answer(req Request) (string, bool) {
	if len(req.Messages) == 0 {
		return "I am the local demo model of wsedge and received no message.", false
	}
	last := req.Messages[len(req.Messages)-1].Content
	if req.Summary {
		users := 0
		for _, m := range req.Messages {
			if m.Role == RoleUser {
				users++
			}
		}
		return fmt.Sprintf("Summary by the local demo model (no LLM configured): the thread has %d messages, %d from the user. The latest request was: %q.",
			len(req.Messages)-1, users-1, clip(last, 200)), false
	}
	var b strings.Builder
	b.WriteString("Hello! I am the local demo model built into wsedge, not a real LLM: set BEDROCK_MODEL_ID_CHAT to answer with Amazon Bedrock. ")
	fmt.Fprintf(&b, "You said: %q. ", clip(last, 500))
	if n := len(req.Messages) - 1; n > 0 {
		fmt.Fprintf(&b, "This thread already has %d earlier messages, which I received as context. ", n)
	}
	escalate := req.Tools && strings.Contains(strings.ToLower(last), localEscalationTrigger)
	if escalate {
		b.WriteString("You asked for a human, so I am handing this conversation to a human agent.")
	} else {
		b.WriteString("Ask for a human to see an escalation.")
	}
	return b.String(), escalate
}

// splitWords cuts text into word-sized deltas that keep their trailing space,
// so that concatenating the deltas gives back text exactly.
func splitWords(text string) []string {
	var parts []string
	for len(text) > 0 {
		i := strings.IndexByte(text, ' ')
		if i < 0 {
			parts = append(parts, text)
			break
		}
		parts = append(parts, text[:i+1])
		text = text[i+1:]
	}
	return parts
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
