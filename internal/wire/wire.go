// Package wire builds every frame the server sends (docs/PROTOCOL.md), for
// the edge and the chat service alike, so that no shape is written twice and
// none can drift from the document (wire_test.go checks each against its
// example there). Builders return the JSON text of a frame; the edge frames
// it (edge/wsframe).
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

// String is s as a JSON string, escaped as encoding/json does.
func String(s string) []byte {
	b, _ := json.Marshal(s)
	return b
}
