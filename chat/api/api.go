// Package api serves the chat HTTP API (PROTOCOL.md §3):
// GET /api/csrf-token/, POST /api/thread/history, POST /api/thread/summarize.
//
// The edge calls the handler off the event loop with a fully read request;
// handlers may block on the database or the model until the context the edge
// passes ends (its API timeout, CHAT_API_TIMEOUT).
//
// Header names are case-insensitive: the request comes parsed by fasthttp
// with its default normalization, under which Peek("X-CSRFToken") also finds
// "x-csrftoken:".
package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/wsedge/wsedge/chat/history"
	"github.com/wsedge/wsedge/internal/apikey"
	"github.com/wsedge/wsedge/internal/ids"
	"github.com/wsedge/wsedge/internal/jointoken"
	"github.com/wsedge/wsedge/internal/wire"
)

// Backend answers the API's queries (chat.Service implements it).
type Backend interface {
	// History returns the thread's messages oldest first, or
	// history.ErrNotFound.
	History(ctx context.Context, threadID string) ([]history.Message, error)
	// Summarize returns a model-written summary, or history.ErrNotFound.
	Summarize(ctx context.Context, threadID string) (string, error)
}

// Config configures the handler.
type Config struct {
	// APIKey, when set, is required in the Authorization header of POST
	// requests (as is or after "Bearer ").
	APIKey string
	// CSRFSecret signs CSRF tokens; required.
	CSRFSecret []byte
	// CSRFTTL is how long a token stays valid [12h].
	CSRFTTL time.Duration
	// MaxBody caps a request body [64 KiB]; larger is 413. The edge refuses
	// larger bodies before they arrive; this guards other callers.
	MaxBody int
	// Tokens, when set, lets a join token whose sid covers the thread_id
	// stand in for the API key (docs/SECURITY.md).
	Tokens *jointoken.Verifier
}

type handler struct {
	cfg  Config
	b    Backend
	log  *slog.Logger
	csrf csrf
}

// NewHandler returns the API's request handler (an edge.APIHandler). Its
// database and model work ends with the context it is given.
func NewHandler(cfg Config, b Backend, log *slog.Logger) (func(context.Context, *fasthttp.RequestCtx), error) {
	if len(cfg.CSRFSecret) == 0 {
		return nil, errors.New("api: a CSRF secret is required")
	}
	if b == nil {
		return nil, errors.New("api: backend is required")
	}
	if cfg.CSRFTTL <= 0 {
		cfg.CSRFTTL = 12 * time.Hour
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 64 << 10
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &handler{cfg: cfg, b: b, log: log, csrf: csrf{secret: cfg.CSRFSecret, ttl: cfg.CSRFTTL}}
	return h.serve, nil
}

func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = fasthttp.StatusInternalServerError, wire.HTTPError("internal", "encoding failed")
	}
	writeBody(ctx, status, b)
}

func writeError(ctx *fasthttp.RequestCtx, status int, code, msg string) {
	writeBody(ctx, status, wire.HTTPError(code, msg))
}

func writeBody(ctx *fasthttp.RequestCtx, status int, b []byte) {
	ctx.Response.Header.Set("Cache-Control", "no-store")
	ctx.SetContentType("application/json")
	ctx.SetStatusCode(status)
	ctx.SetBody(b)
}

func (h *handler) serve(c context.Context, ctx *fasthttp.RequestCtx) {
	path := string(ctx.Path())
	if n := len(path); n > 1 && path[n-1] == '/' {
		path = path[:n-1]
	}
	switch path {
	case "/api/csrf-token":
		if !ctx.IsGet() && !ctx.IsHead() {
			ctx.Response.Header.Set("Allow", "GET, HEAD")
			writeError(ctx, fasthttp.StatusMethodNotAllowed, "method_not_allowed", "use GET")
			return
		}
		writeJSON(ctx, fasthttp.StatusOK, map[string]string{"csrfToken": h.csrf.issue(time.Now())})
	case "/api/thread/history":
		h.post(c, ctx, h.history)
	case "/api/thread/summarize":
		h.post(c, ctx, h.summarize)
	default:
		writeError(ctx, fasthttp.StatusNotFound, "not_found", "no such route")
	}
}

// post runs the checks every POST route shares, in the protocol's order:
// method, API key (401), CSRF token (403), body size (413), body (400).
func (h *handler) post(c context.Context, ctx *fasthttp.RequestCtx, next func(context.Context, *fasthttp.RequestCtx, string)) {
	if !ctx.IsPost() {
		ctx.Response.Header.Set("Allow", "POST")
		writeError(ctx, fasthttp.StatusMethodNotAllowed, "method_not_allowed", "use POST")
		return
	}
	var claims *jointoken.Claims
	if auth := ctx.Request.Header.Peek(fasthttp.HeaderAuthorization); !apikey.Match(h.cfg.APIKey, auth, nil) {
		tok := jointoken.FromAuthorization(auth)
		if h.cfg.Tokens == nil || tok == "" {
			writeError(ctx, fasthttp.StatusUnauthorized, "unauthorized", "a valid Authorization header is required")
			return
		}
		var err error
		if claims, err = h.cfg.Tokens.Verify(tok); err != nil {
			var te *jointoken.Error
			reason := jointoken.ReasonMalformed
			if errors.As(err, &te) {
				reason = te.Reason
			}
			writeError(ctx, fasthttp.StatusUnauthorized, reason, "the Authorization header is neither the API key nor a valid join token")
			return
		}
	}
	if !h.csrf.valid(ctx.Request.Header.Peek("X-CSRFToken"), time.Now()) {
		writeError(ctx, fasthttp.StatusForbidden, "csrf_failed", "a valid X-CSRFToken header is required (GET /api/csrf-token/)")
		return
	}
	body := ctx.PostBody()
	if len(body) > h.cfg.MaxBody || ctx.Request.Header.ContentLength() > h.cfg.MaxBody {
		writeError(ctx, fasthttp.StatusRequestEntityTooLarge, "too_large", "the request body is too large")
		return
	}
	if !json.Valid(body) {
		writeError(ctx, fasthttp.StatusBadRequest, "invalid_json", "the body is not valid JSON")
		return
	}
	var in struct {
		ThreadID *string `json:"thread_id"`
	}
	if err := json.Unmarshal(body, &in); err != nil || in.ThreadID == nil || !ids.Valid(*in.ThreadID) {
		writeError(ctx, fasthttp.StatusBadRequest, "invalid_request",
			`the body must be {"thread_id":"…"} with 1-128 characters of A-Z a-z 0-9 _ . : -`)
		return
	}
	if claims != nil && !claims.Covers(*in.ThreadID) {
		writeError(ctx, fasthttp.StatusForbidden, "thread_forbidden", "the join token's sid does not cover this thread_id")
		return
	}
	next(c, ctx, *in.ThreadID)
}

func (h *handler) backendError(ctx *fasthttp.RequestCtx, op, threadID string, err error) {
	if errors.Is(err, history.ErrNotFound) {
		writeError(ctx, fasthttp.StatusNotFound, "thread_not_found", "no thread with this thread_id")
		return
	}
	h.log.Warn("chat api failed", "op", op, "thread_id", threadID, "err", err)
	writeError(ctx, fasthttp.StatusServiceUnavailable, "unavailable", "the service is temporarily unavailable; try again")
}

type apiMessage struct {
	Role      string `json:"role"`
	Content   string `json:"content"`
	CreatedAt string `json:"created_at"`
	Escalated bool   `json:"escalated,omitempty"`
}

func (h *handler) history(c context.Context, ctx *fasthttp.RequestCtx, threadID string) {
	msgs, err := h.b.History(c, threadID)
	if err != nil {
		h.backendError(ctx, "history", threadID, err)
		return
	}
	out := make([]apiMessage, len(msgs))
	for i, m := range msgs {
		out[i] = apiMessage{Role: m.Role, Content: m.Content, CreatedAt: m.CreatedAt.UTC().Format(time.RFC3339Nano), Escalated: m.Escalated}
	}
	writeJSON(ctx, fasthttp.StatusOK, struct {
		ThreadID string       `json:"thread_id"`
		Messages []apiMessage `json:"messages"`
	}{threadID, out})
}

func (h *handler) summarize(c context.Context, ctx *fasthttp.RequestCtx, threadID string) {
	sum, err := h.b.Summarize(c, threadID)
	if err != nil {
		h.backendError(ctx, "summarize", threadID, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, struct {
		ThreadID string `json:"thread_id"`
		Summary  string `json:"summary"`
	}{threadID, sum})
}
