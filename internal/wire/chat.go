package wire

import "encoding/json"

// The /ws/chat/ frames (PROTOCOL.md §2). Text the model or the client wrote
// is escaped as encoding/json does (HTML-safe).

// SessionStarted opens a turn; a chat thread is its session.
func SessionStarted(thread, connID string) []byte {
	b, _ := json.Marshal(struct {
		Type         string `json:"type"`
		SessionID    string `json:"session_id"`
		ThreadID     string `json:"thread_id"`
		ConnectionID string `json:"connection_id"`
	}{"session_started", thread, thread, connID})
	return b
}

// Token is one piece of the answer.
func Token(content string) []byte {
	b, _ := json.Marshal(struct {
		Type    string `json:"type"`
		Content string `json:"content"`
	}{"token", content})
	return b
}

// Rewrite tells the client to discard the turn's tokens so far.
func Rewrite(attempt int) []byte {
	b, _ := json.Marshal(struct {
		Type    string `json:"type"`
		Attempt int    `json:"attempt"`
	}{"rewrite", attempt})
	return b
}

// Escalation says a human should take over; the socket closes after end.
func Escalation() []byte { return []byte(`{"type":"escalation","should_escalate":true}`) }

// End ends a turn.
func End() []byte { return []byte(`{"type":"end"}`) }

// ChatMirror is a session_message that mirrors a chat turn to the listeners
// of /ws/session/<thread_id>/: client_type "chat", msg a string or null
// (nil), data a JSON value (compacted, as encoding/json does).
func ChatMirror(userType string, msg *string, data json.RawMessage) ([]byte, error) {
	m := null
	if msg != nil {
		m = String(*msg)
	}
	d, err := json.Marshal(data)
	if err != nil {
		return nil, err
	}
	return AppendSessionMessage(nil, string(String(userType)), `"chat"`, m, d), nil
}
