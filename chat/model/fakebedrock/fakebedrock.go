// Package fakebedrock is a scriptable stand-in for the Bedrock runtime's
// ConverseStream API on 127.0.0.1: plain HTTP/1.1 (Start) or TLS with HTTP/2
// offered by ALPN, as AWS's endpoints do (StartTLS). It encodes its events
// with the SDK's own event-stream encoder, so the real bedrockruntime client
// decodes them exactly as it decodes AWS's. It also models a guardrail's
// stream processing (Script.Guardrail). Tests and the chat benchmark start
// it; nothing in production imports it.
package fakebedrock

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
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
	// Gate, when not nil, holds the stream here until it is closed (tests
	// use it to prove that a token reached the client before the rest of
	// the answer was even produced).
	Gate <-chan struct{}
}

// Script is the server's answer to one request.
type Script struct {
	// Status, when not 0 or 200, fails the request before any stream with
	// this HTTP status, ErrorType as x-amzn-ErrorType and a JSON message.
	Status    int
	ErrorType string
	Steps     []Step
	// Guardrail, when set and the request carries a guardrailConfig, vets
	// the text of the steps as Bedrock Guardrails does on a stream.
	Guardrail *Guardrail
}

// Guardrail models Bedrock Guardrails applied to a ConverseStream response,
// in the request's streamProcessingMode:
//
//   - sync: each text chunk is held for ScanDelay while the guardrail scans
//     it, then sent; a chunk that violates the policy is withheld (the client
//     never sees it), and the stream ends with the guardrail's blocked
//     message as a delta, messageStop guardrail_intervened, and metadata
//     whose trace (when the request asked for one) names the policy;
//   - async: each chunk is sent at once and scanned after; a violating chunk
//     has already been sent when the intervention follows it.
//
// A chunk violates the policy when it contains one of Blocked (case
// insensitive).
type Guardrail struct {
	Blocked   []string
	ScanDelay time.Duration
	// Message is the guardrail's blocked-output messaging
	// [DefaultBlockedMessage].
	Message string
}

// DefaultBlockedMessage is Bedrock's default blocked-output message.
const DefaultBlockedMessage = "Sorry, the model cannot answer this question."

func (g *Guardrail) violates(text string) bool {
	low := strings.ToLower(text)
	for _, w := range g.Blocked {
		if w != "" && strings.Contains(low, strings.ToLower(w)) {
			return true
		}
	}
	return false
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
	// Trace is guardrailConfig.trace.
	Trace string
	// Proto is the HTTP protocol the request came over ("HTTP/1.1",
	// "HTTP/2.0").
	Proto string
}

// Handler chooses the script for a request. It runs on the request's goroutine.
type Handler func(Request) Script

// Server is a running fake.
type Server struct {
	// URL is the base endpoint, e.g. http://127.0.0.1:43111 or
	// https://127.0.0.1:43111.
	URL string

	ts        *httptest.Server
	handler   Handler
	done      chan struct{}
	closeOnce sync.Once

	conns   atomic.Int64 // TCP connections accepted
	active  atomic.Int64 // streams being written
	aborted atomic.Int64 // streams whose client went away before the end

	mu       sync.Mutex
	requests []Request
}

// Start listens on a free 127.0.0.1 port and serves h over plain HTTP/1.1.
func Start(h Handler) (*Server, error) { return start(h, false, false) }

// StartTLS serves h over TLS with a self-signed certificate for 127.0.0.1,
// offering HTTP/2 by ALPN (the Go HTTP/2 server allows 250 concurrent
// streams per connection). Clients trust it through CertPEM or RootCAs.
func StartTLS(h Handler) (*Server, error) { return start(h, true, true) }

// StartTLSHTTP1 serves h over TLS with HTTP/1.1 only, like an HTTPS proxy
// that does not speak HTTP/2.
func StartTLSHTTP1(h Handler) (*Server, error) { return start(h, true, false) }

func start(h Handler, tls, h2 bool) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("fakebedrock listen: %w", err)
	}
	s := &Server{handler: h, done: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /model/{modelId}/converse-stream", s.converseStream)
	// The header timeout also bounds the TLS handshake: generous, so that
	// a benchmark on a saturated machine measures wsedge, not the fake
	// dropping connections mid-handshake.
	s.ts = &httptest.Server{Listener: ln, Config: &http.Server{Handler: mux, ReadHeaderTimeout: 30 * time.Second,
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				s.conns.Add(1)
			}
		}}}
	if tls {
		s.ts.EnableHTTP2 = h2
		s.ts.StartTLS()
	} else {
		s.ts.Start()
	}
	s.URL = s.ts.URL
	return s, nil
}

// CertPEM is the TLS certificate in PEM (for AWS_CA_BUNDLE); nil without TLS.
func (s *Server) CertPEM() []byte {
	if c := s.ts.Certificate(); c != nil {
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return nil
}

// RootCAs is a pool that trusts the server's certificate; nil without TLS.
func (s *Server) RootCAs() *x509.CertPool {
	c := s.ts.Certificate()
	if c == nil {
		return nil
	}
	p := x509.NewCertPool()
	p.AddCert(c)
	return p
}

// Connections is how many TCP connections the server has accepted.
func (s *Server) Connections() int64 { return s.conns.Load() }

// Active is how many streams are being answered right now.
func (s *Server) Active() int64 { return s.active.Load() }

// Aborted is how many streams ended because the client closed them (or the
// connection) before the script's end.
func (s *Server) Aborted() int64 { return s.aborted.Load() }

// Close stops the server, releasing stalled streams. Later calls do nothing.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		close(s.done)
		s.ts.CloseClientConnections()
		s.ts.Close()
	})
	return nil
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
		ID    string `json:"guardrailIdentifier"`
		Mode  string `json:"streamProcessingMode"`
		Trace string `json:"trace"`
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
	req := Request{ModelID: r.PathValue("modelId"), Proto: r.Proto}
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
		req.Guardrail, req.StreamMode, req.Trace = body.GuardrailConfig.ID, body.GuardrailConfig.Mode, body.GuardrailConfig.Trace
	}
	s.mu.Lock()
	s.requests = append(s.requests, req)
	s.mu.Unlock()

	script := s.handler(req)
	if script.Status != 0 && script.Status != http.StatusOK {
		writeError(w, script.Status, script.ErrorType, "scripted failure")
		return
	}
	g := script.Guardrail
	if req.Guardrail == "" {
		g = nil // no guardrailConfig in the request: nothing vets the output
	}
	s.active.Add(1)
	defer s.active.Add(-1)
	if err := s.stream(w, r, script.Steps, g, req); errors.Is(err, errGone) {
		s.aborted.Add(1)
	}
}

func writeError(w http.ResponseWriter, status int, errType, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-ErrorType", errType)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": msg})
}

// errGone means the client went away or the server is closing.
var errGone = errors.New("fakebedrock: client gone")

// stream writes the scripted events. It returns errGone when the client
// went away (or the server is closing) before the script ended.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, steps []Step, g *Guardrail, req Request) error {
	flusher, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "application/vnd.amazon.eventstream")
	w.WriteHeader(http.StatusOK)
	if flusher != nil {
		flusher.Flush()
	}
	enc := eventstream.NewEncoder()
	flush := func() {
		if flusher != nil {
			flusher.Flush()
		}
	}
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
			return errGone
		}
		flush()
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
		return err
	}
	block := 0
	textOpen := false
	outputTokens := 0
	closeText := func() error {
		if !textOpen {
			return nil
		}
		textOpen = false
		return send("contentBlockStop", map[string]int{"contentBlockIndex": block})
	}
	delta := func(text string) error {
		textOpen = true
		outputTokens++
		return send("contentBlockDelta", map[string]any{"contentBlockIndex": block, "delta": map[string]string{"text": text}})
	}
	stop := func(reason string, trace any) error {
		if err := closeText(); err != nil {
			return err
		}
		if err := send("messageStop", map[string]string{"stopReason": reason}); err != nil {
			return err
		}
		md := map[string]any{
			"usage":   map[string]int{"inputTokens": 10, "outputTokens": outputTokens, "totalTokens": 10 + outputTokens},
			"metrics": map[string]int{"latencyMs": 1},
		}
		if trace != nil {
			md["trace"] = trace
		}
		return send("metadata", md)
	}
	// intervene ends the stream the way Bedrock does when the guardrail
	// blocks the output: its blocked message, guardrail_intervened, and the
	// trace when the request enabled it.
	intervene := func() error {
		msg := g.Message
		if msg == "" {
			msg = DefaultBlockedMessage
		}
		if err := delta(msg); err != nil {
			return err
		}
		var trace any
		if req.Trace == "enabled" || req.Trace == "enabled_full" {
			trace = map[string]any{"guardrail": map[string]any{
				"actionReason": "Guardrail blocked.",
				"outputAssessments": map[string]any{req.Guardrail: []any{map[string]any{
					"contentPolicy": map[string]any{"filters": []any{map[string]any{
						"type": "MISCONDUCT", "confidence": "HIGH", "filterStrength": "HIGH", "action": "BLOCKED", "detected": true,
					}}},
				}}},
			}}
		}
		return stop("guardrail_intervened", trace)
	}
	for _, st := range steps {
		if st.Gate != nil {
			select {
			case <-st.Gate:
			case <-r.Context().Done():
				return errGone
			case <-s.done:
				return errGone
			}
		}
		if err := wait(st.Delay); err != nil {
			return err
		}
		var err error
		switch {
		case st.Text != "" && g != nil && req.StreamMode != "async":
			// sync: the chunk is scanned before it is released.
			if err = wait(g.ScanDelay); err != nil {
				return err
			}
			if g.violates(st.Text) {
				return intervene()
			}
			err = delta(st.Text)
		case st.Text != "" && g != nil:
			// async: sent at once, scanned after; a violation stops what
			// follows, too late for this chunk.
			if err = delta(st.Text); err != nil {
				return err
			}
			if err = wait(g.ScanDelay); err != nil {
				return err
			}
			if g.violates(st.Text) {
				return intervene()
			}
		case st.Text != "":
			err = delta(st.Text)
		case st.ToolUse != "":
			if textOpen {
				if err = closeText(); err != nil {
					return err
				}
				block++
			}
			if err = send("contentBlockStart", map[string]any{"contentBlockIndex": block,
				"start": map[string]any{"toolUse": map[string]string{"toolUseId": fmt.Sprintf("tooluse_%d", block), "name": st.ToolUse}}}); err != nil {
				return err
			}
			if err = send("contentBlockDelta", map[string]any{"contentBlockIndex": block,
				"delta": map[string]any{"toolUse": map[string]string{"input": `{"reason":"scripted"}`}}}); err != nil {
				return err
			}
			err = send("contentBlockStop", map[string]int{"contentBlockIndex": block})
			block++
		case st.Stop != "":
			return stop(st.Stop, nil)
		case st.Exception != "":
			var h eventstream.Headers
			h.Set(":message-type", eventstream.StringValue("exception"))
			h.Set(":exception-type", eventstream.StringValue(st.Exception))
			h.Set(":content-type", eventstream.StringValue("application/json"))
			_ = enc.Encode(w, eventstream.Message{Headers: h, Payload: []byte(`{"message":"scripted ` + st.Exception + `"}`)})
			flush()
			return nil
		case st.Truncate:
			return nil
		case st.Stall:
			select {
			case <-r.Context().Done():
			case <-s.done:
			}
			return errGone
		}
		if err != nil {
			return err
		}
	}
	return nil
}
