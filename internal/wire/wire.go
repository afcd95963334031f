// Package wire builds the error shapes of PROTOCOL.md that both the edge and
// the chat service send, so that they cannot drift apart.
package wire

import "encoding/json"

// ErrorFrame is the JSON of a WebSocket error frame:
// {"type":"error","error":code,"message":msg}.
func ErrorFrame(code, msg string) []byte {
	b, _ := json.Marshal(struct {
		Type    string `json:"type"`
		Error   string `json:"error"`
		Message string `json:"message"`
	}{"error", code, msg})
	return b
}

// HTTPError is the JSON body of an HTTP error: {"error":code,"message":msg}.
func HTTPError(code, msg string) []byte {
	b, _ := json.Marshal(struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}{code, msg})
	return b
}
