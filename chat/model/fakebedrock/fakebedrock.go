// Package fakebedrock is a scriptable stand-in for the Bedrock runtime's
// ConverseStream API, served over plain HTTP on 127.0.0.1. It encodes its
// events with the SDK's own event-stream encoder, so the real
// bedrockruntime client decodes them exactly as it decodes AWS's. Tests and
// the chat benchmark start it; nothing in production imports it.
package fakebedrock

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
)

// Step is one scripted action of a stream, performed after Delay.
// Exactly one of the action fields should be set.
type Step struct {
	Delay time.Duration
	// Text sends a contentBlockDelta with this text.
	Text string
	// ToolUse sends a tool-use content block (start, input delta, stop)
	// calling the named tool.
	ToolUse string
	// Stop sends messageStop with this stop reason, then a metadata event.
	Stop string
	// Exception sends an exception event of this type (for example
	// "throttlingException", "modelStreamErrorException") and ends the stream.
	Exception string
	// Truncate ends the response here, cleanly at the HTTP level, without
	// messageStop: what a connection lost mid-stream looks like to the SDK.
	Truncate bool
	// Stall sends nothing more and holds the response open until the client
	// goes away or the server closes.
	Stall bool
}

// Script is the server's answer to one request.
type Script struct {
	// Status, when not 0 or 200, fails the request before any stream with
	// this HTTP status, ErrorType as x-amzn-ErrorType and a JSON message.
	Status    int
	ErrorType string
	Steps     []Step
}

// Tokens scripts a stream that sends each text as one delta, waiting every
// before each, and ends with stop ("end_turn" when empty).
func Tokens(texts []string, every time.Duration, stop string) Script {
	if stop == "" {
		stop = "end_turn"
	}
	steps := make([]Step, 0, len(texts)+1)
	for _, t := range texts {
		steps = append(steps, Step{Delay: every, Text: t})
	}
	return Script{Steps: append(steps, Step{Stop: stop})}
}

// Throttled scripts a 429 ThrottlingException before the stream.
func Throttled() Script {
	return Script{Status: http.StatusTooManyRequests, ErrorType: "ThrottlingException"}
}

// Message is one conversation message as received.
type Message struct {
	Role string
	Text string
}

// Request is what the fake received, decoded loosely.
type Request struct {
	ModelID  string
	Messages []Message
	System   string
	// Tools lists the names of the tools in toolConfig.
	Tools []string
	// Guardrail is guardrailConfig.guardrailIdentifier, "" when absent.
	Guardrail string
	// StreamMode is guardrailConfig.streamProcessingMode.
	StreamMode string
}

// Handler chooses the script for a request. It runs on the request's goroutine.
type Handler func(Request) Script

// Server is a running fake.
type Server struct {
	// URL is the base endpoint, e.g. http://127.0.0.1:43111.
	URL string

	srv       *http.Server
	handler   Handler
	done      chan struct{}
	closeOnce sync.Once

	mu       sync.Mutex
	requests []Request
}

// Start listens on a free 127.0.0.1 port and serves h.
func Start(h Handler) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("fakebedrock listen: %w", err)
	}
	s := &Server{URL: "http://" + ln.Addr().String(), handler: h, done: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /model/{modelId}/converse-stream", s.converseStream)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// Close stops the server, releasing stalled streams. Later calls do nothing.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.done)
		err = s.srv.Close()
	})
	return err
}

// Requests returns a copy of the requests received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

type wireBody struct {
	Messages []struct {
		Role    string `json:"role"`
		Content []struct {
			Text *string `json:"text"`
		} `json:"content"`
	} `json:"messages"`
	System []struct {
		Text string `json:"text"`
	} `json:"system"`
	ToolConfig *struct {
		Tools []struct {
			ToolSpec struct {
				Name string `json:"name"`
			} `json:"toolSpec"`
		} `json:"tools"`
	} `json:"toolConfig"`
	GuardrailConfig *struct {
		ID   string `json:"guardrailIdentifier"`
		Mode string `json:"streamProcessingMode"`
	} `json:"guardrailConfig"`
}

func (s *Server) converseStream(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	var body wireBody
	if err := json.Unmarshal(raw, &body); err != nil {
		writeError(w, http.StatusBadRequest, "ValidationException", "malformed body: "+err.Error())
		return
	}
	req := Request{ModelID: r.PathValue("modelId")}
	for _, m := range body.Messages {
		msg := Message{Role: m.Role}
		for _, c := range m.Content {
			if c.Text != nil {
				msg.Text += *c.Text
			}
		}
		req.Messages = append(req.Messages, msg)
	}
	for _, sb := range body.System {
		req.System += sb.Text
	}
	if body.ToolConfig != nil {
		for _, t := range body.ToolConfig.Tools {
			req.Tools = append(req.Tools, t.ToolSpec.Name)
		}
	}
	if body.GuardrailConfig != nil {
		req.Guardrail, req.StreamMode = body.GuardrailConfig.ID, body.GuardrailConfig.Mode
	}
	s.mu.Lock()
	s.requests = append(s.requests, req)
	s.mu.Unlock()

	script := s.handler(req)
	if script.Status != 0 && script.Status != http.StatusOK {
		writeError(w, script.Status, script.ErrorType, "scripted failure")
		return
	}
	s.stream(w, r, script.Steps)
}

func writeError(w http.ResponseWriter, status int, errType, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-ErrorType", errType)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": msg})
}

// errGone means the client went away or the server is closing.
var errGone = errors.New("fakebedrock: client gone")

func (s *Server) stream(w http.ResponseWriter, r *http.Request, steps []Step) {
	flusher, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "application/vnd.amazon.eventstream")
	w.WriteHeader(http.StatusOK)
	if flusher != nil {
		flusher.Flush()
	}
	enc := eventstream.NewEncoder()
	send := func(eventType string, payload any) error {
		p, err := json.Marshal(payload)
		if err != nil {
			return err
		}
		var h eventstream.Headers
		h.Set(":event-type", eventstream.StringValue(eventType))
		h.Set(":message-type", eventstream.StringValue("event"))
		h.Set(":content-type", eventstream.StringValue("application/json"))
		if err := enc.Encode(w, eventstream.Message{Headers: h, Payload: p}); err != nil {
			return err
		}
		if flusher != nil {
			flusher.Flush()
		}
		return nil
	}
	wait := func(d time.Duration) error {
		if d <= 0 {
			return nil
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-r.Context().Done():
			return errGone
		case <-s.done:
			return errGone
		}
	}
	if err := send("messageStart", map[string]string{"role": "assistant"}); err != nil {
		return
	}
	block := 0
	textOpen := false
	for _, st := range steps {
		if err := wait(st.Delay); err != nil {
			return
		}
		var err error
		switch {
		case st.Text != "":
			textOpen = true
			err = send("contentBlockDelta", map[string]any{"contentBlockIndex": block, "delta": map[string]string{"text": st.Text}})
		case st.ToolUse != "":
			if textOpen {
				if err = send("contentBlockStop", map[string]int{"contentBlockIndex": block}); err != nil {
					return
				}
				block++
				textOpen = false
			}
			if err = send("contentBlockStart", map[string]any{"contentBlockIndex": block,
				"start": map[string]any{"toolUse": map[string]string{"toolUseId": fmt.Sprintf("tooluse_%d", block), "name": st.ToolUse}}}); err != nil {
				return
			}
			if err = send("contentBlockDelta", map[string]any{"contentBlockIndex": block,
				"delta": map[string]any{"toolUse": map[string]string{"input": `{"reason":"scripted"}`}}}); err != nil {
				return
			}
			err = send("contentBlockStop", map[string]int{"contentBlockIndex": block})
			block++
		case st.Stop != "":
			if textOpen {
				if err = send("contentBlockStop", map[string]int{"contentBlockIndex": block}); err != nil {
					return
				}
				textOpen = false
			}
			if err = send("messageStop", map[string]string{"stopReason": st.Stop}); err != nil {
				return
			}
			err = send("metadata", map[string]any{
				"usage":   map[string]int{"inputTokens": 10, "outputTokens": len(steps), "totalTokens": 10 + len(steps)},
				"metrics": map[string]int{"latencyMs": 1},
			})
		case st.Exception != "":
			var h eventstream.Headers
			h.Set(":message-type", eventstream.StringValue("exception"))
			h.Set(":exception-type", eventstream.StringValue(st.Exception))
			h.Set(":content-type", eventstream.StringValue("application/json"))
			_ = enc.Encode(w, eventstream.Message{Headers: h, Payload: []byte(`{"message":"scripted ` + st.Exception + `"}`)})
			if flusher != nil {
				flusher.Flush()
			}
			return
		case st.Truncate:
			return
		case st.Stall:
			select {
			case <-r.Context().Done():
			case <-s.done:
			}
			return
		}
		if err != nil {
			return
		}
	}
}
