package edge

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
)

// The admin control API (docs/ADMIN.md): GET /admin/status, POST
// /admin/shed, POST and DELETE /admin/drain. It runs on the admin
// listener's goroutines, never on an event loop; what it changes on the
// loops goes through their mailboxes (shed.go).

// endpointOf names an /admin/ path for wsedge_admin_requests_total; unknown
// paths share one label, so that the series stay bounded.
func endpointOf(path string) string {
	switch path {
	case "/admin/status":
		return "status"
	case "/admin/shed":
		return "shed"
	case "/admin/drain":
		return "drain"
	}
	return "other"
}

func errorBody(code, msg string) []byte {
	b, _ := json.Marshal(struct {
		Error   string `json:"error"`
		Message string `json:"message,omitempty"`
	}{code, msg})
	return b
}

func (a *Admin) reply(ctx *fasthttp.RequestCtx, endpoint string, status int, body []byte) {
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(body)
	a.requests.WithLabelValues(endpoint, strconv.Itoa(status)).Inc()
}

// authorized checks "Authorization: Bearer <token>" (header names and the
// scheme are case-insensitive) against the configured token. Both sides are
// hashed first, so that the comparison takes the same time whatever the
// length or content of the guess.
func (a *Admin) authorized(ctx *fasthttp.RequestCtx) bool {
	h := bytes.TrimSpace(ctx.Request.Header.Peek("Authorization"))
	const scheme = "bearer "
	if len(h) <= len(scheme) || !bytes.EqualFold(h[:len(scheme)], []byte(scheme)) {
		return false
	}
	got := sha256.Sum256(bytes.TrimSpace(h[len(scheme):]))
	return subtle.ConstantTimeCompare(got[:], a.token[:]) == 1
}

func (a *Admin) serveAPI(ctx *fasthttp.RequestCtx, path string) {
	ep := endpointOf(path)
	if ep == "other" {
		a.reply(ctx, ep, fasthttp.StatusNotFound, errorBody("not_found", "no such admin endpoint"))
		return
	}
	switch {
	case a.hasToken && !a.authorized(ctx):
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="wsedge-admin"`)
		a.reply(ctx, ep, fasthttp.StatusUnauthorized, []byte(`{"error":"unauthorized"}`))
		return
	case !a.hasToken && ep != "status":
		a.reply(ctx, ep, fasthttp.StatusForbidden, []byte(`{"error":"admin_token_not_configured"}`))
		return
	}
	m := string(ctx.Method())
	switch {
	case ep == "status" && (m == "GET" || m == "HEAD"):
		a.status(ctx)
	case ep == "shed" && m == "POST":
		a.shed(ctx)
	case ep == "drain" && m == "POST":
		a.drain(ctx)
	case ep == "drain" && m == "DELETE":
		a.undrain(ctx)
	default:
		allow := map[string]string{"status": "GET, HEAD", "shed": "POST", "drain": "POST, DELETE"}[ep]
		ctx.Response.Header.Set("Allow", allow)
		a.reply(ctx, ep, fasthttp.StatusMethodNotAllowed, errorBody("method_not_allowed", "use "+allow))
	}
}

func (a *Admin) status(ctx *fasthttp.RequestCtx) {
	b, err := json.Marshal(a.edge.Status())
	if err != nil {
		a.reply(ctx, "status", fasthttp.StatusInternalServerError, errorBody("internal", err.Error()))
		return
	}
	a.reply(ctx, "status", fasthttp.StatusOK, b)
}

// shedBody is POST /admin/shed's body (and POST /admin/drain's, which takes
// over_ms and jitter_ms only). Pointers tell a missing field from a zero.
type shedBody struct {
	Count    *int64   `json:"count"`
	Fraction *float64 `json:"fraction"`
	OverMS   *int64   `json:"over_ms"`
	JitterMS *int64   `json:"jitter_ms"`
}

// maxJitter bounds jitter_ms like RECONNECT_JITTER.
const maxJitter = time.Hour

// parseShedBody decodes one JSON object with known fields only; empty is
// allowed when emptyOK (drain).
func parseShedBody(body []byte, emptyOK bool) (shedBody, error) {
	var b shedBody
	if len(bytes.TrimSpace(body)) == 0 {
		if emptyOK {
			return b, nil
		}
		return b, errors.New(`a JSON body is required, e.g. {"count":10} or {"fraction":0.25}`)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return b, fmt.Errorf("invalid JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return b, errors.New("invalid JSON: one object expected, found more")
	}
	if b.OverMS != nil && (*b.OverMS < 0 || *b.OverMS > MaxShedSpread.Milliseconds()) {
		return b, fmt.Errorf("over_ms must be 0 to %d", MaxShedSpread.Milliseconds())
	}
	if b.JitterMS != nil && (*b.JitterMS < 0 || *b.JitterMS > maxJitter.Milliseconds()) {
		return b, fmt.Errorf("jitter_ms must be 0 to %d", maxJitter.Milliseconds())
	}
	return b, nil
}

// spread and hint are the request's over_ms and jitter_ms, or the
// configured DRAIN_SPREAD and RECONNECT_JITTER.
func (a *Admin) spread(b shedBody) (time.Duration, time.Duration) {
	over, jit := min(a.edge.cfg.DrainSpread, MaxShedSpread), a.edge.cfg.ReconnectJitter
	if b.OverMS != nil {
		over = time.Duration(*b.OverMS) * time.Millisecond
	}
	if b.JitterMS != nil {
		jit = time.Duration(*b.JitterMS) * time.Millisecond
	}
	return over, jit
}

func (a *Admin) shed(ctx *fasthttp.RequestCtx) {
	b, err := parseShedBody(ctx.PostBody(), false)
	switch {
	case err != nil:
	case (b.Count == nil) == (b.Fraction == nil):
		err = errors.New(`exactly one of "count" and "fraction" is required`)
	case b.Count != nil && *b.Count < 1:
		err = errors.New("count must be at least 1")
	case b.Fraction != nil && !(*b.Fraction > 0 && *b.Fraction <= 1):
		err = errors.New("fraction must be above 0 and at most 1")
	}
	if err != nil {
		a.reply(ctx, "shed", fasthttp.StatusBadRequest, errorBody("invalid_request", err.Error()))
		return
	}
	over, jit := a.spread(b)
	req := ShedRequest{Over: over, Jitter: jit}
	if b.Count != nil {
		req.Count = int(min(*b.Count, math.MaxInt32))
	} else {
		req.Fraction = *b.Fraction
	}
	n, err := a.edge.Shed(context.Background(), req)
	if a.failed(ctx, "shed", err) {
		return
	}
	a.log.Info("admin shed", "accepted", n, "over", over, "jitter", jit, "remote", ctx.RemoteIP().String())
	a.reply(ctx, "shed", fasthttp.StatusAccepted, fmt.Appendf(nil, `{"accepted":%d,"over_ms":%d}`, n, over.Milliseconds()))
}

func (a *Admin) drain(ctx *fasthttp.RequestCtx) {
	b, err := parseShedBody(ctx.PostBody(), true)
	if err == nil && (b.Count != nil || b.Fraction != nil) {
		err = errors.New(`a drain closes every WebSocket: "count" and "fraction" are for /admin/shed`)
	}
	if err != nil {
		a.reply(ctx, "drain", fasthttp.StatusBadRequest, errorBody("invalid_request", err.Error()))
		return
	}
	over, jit := a.spread(b)
	n, err := a.edge.Drain(context.Background(), over, jit)
	if a.failed(ctx, "drain", err) {
		return
	}
	a.log.Info("admin drain", "accepted", n, "over", over, "jitter", jit, "remote", ctx.RemoteIP().String())
	a.reply(ctx, "drain", fasthttp.StatusAccepted, fmt.Appendf(nil, `{"draining":true,"accepted":%d,"over_ms":%d}`, n, over.Milliseconds()))
}

func (a *Admin) undrain(ctx *fasthttp.RequestCtx) {
	if a.failed(ctx, "drain", a.edge.Undrain()) {
		return
	}
	a.log.Info("admin drain ended", "remote", ctx.RemoteIP().String())
	a.reply(ctx, "drain", fasthttp.StatusOK, []byte(`{"draining":false}`))
}

// failed answers err, if any: 409 for a shed already running or a shutdown,
// 503 when the event loops did not answer.
func (a *Admin) failed(ctx *fasthttp.RequestCtx, ep string, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, ErrShedInProgress):
		a.reply(ctx, ep, fasthttp.StatusConflict, []byte(`{"error":"shed_in_progress"}`))
	case errors.Is(err, ErrShuttingDown):
		a.reply(ctx, ep, fasthttp.StatusConflict, []byte(`{"error":"shutting_down"}`))
	default:
		a.log.Warn("admin "+ep, "err", err)
		a.reply(ctx, ep, fasthttp.StatusServiceUnavailable, errorBody("unavailable", err.Error()))
	}
	return true
}
