package chat

import (
	"encoding/json"

	"github.com/wsedge/wsedge/internal/wire"
)

// Mirroring: listeners of /ws/session/<thread_id>/ (a human agent watching)
// get session_message frames with client_type "chat":
//
//   - the user's message when a worker starts the turn:
//     user_type "user", msg = the text, data = {"event":"message","channel":…,"data":…}
//   - the assistant's answer once, when the turn ends:
//     user_type "assistant", msg = the whole text the client was sent,
//     data = {"event":"answer","outcome":"completed|cancelled|disconnected|blocked|escalated"}
//   - an escalation: user_type "assistant", msg null, data = {"event":"escalation","should_escalate":true}
//   - a failure: user_type "assistant", msg null, data = {"event":"error","error":"upstream_error"}
//
// The answer is mirrored whole rather than token by token: one frame per
// turn instead of one per token keeps the broker's load independent of
// answer length, and a watcher still sees every turn as it completes.

func (s *Service) publish(t *turn, userType string, msg *string, data json.RawMessage) {
	if s.mirror == nil {
		return
	}
	b, err := wire.ChatMirror(userType, msg, data)
	if err != nil {
		return
	}
	s.mirror.Mirror(t.thread, b)
}

func orNull(raw json.RawMessage) json.RawMessage {
	if isNull(raw) {
		return null
	}
	return raw
}

func (s *Service) mirrorUser(t *turn) {
	data, _ := json.Marshal(struct {
		Event   string          `json:"event"`
		Channel json.RawMessage `json:"channel"`
		Data    json.RawMessage `json:"data"`
	}{"message", orNull(t.channel), orNull(t.data)})
	s.publish(t, "user", &t.message, data)
}

func (s *Service) mirrorAnswer(t *turn, outcome string) {
	text := t.answer.String()
	data, _ := json.Marshal(struct {
		Event   string `json:"event"`
		Outcome string `json:"outcome"`
	}{"answer", outcome})
	s.publish(t, "assistant", &text, data)
	if outcome == outcomeEscalated {
		s.mirrorEvent(t, `{"event":"escalation","should_escalate":true}`)
	}
}

func (s *Service) mirrorEvent(t *turn, data string) {
	s.publish(t, "assistant", nil, json.RawMessage(data))
}
