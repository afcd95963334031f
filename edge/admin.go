package edge

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
	"github.com/valyala/fasthttp/pprofhandler"

	"github.com/wsedge/wsedge/internal/version"
)

// Admin is the operator's listener: / (an index), /metrics, /debug/pprof/
// and the control API under /admin/ (docs/ADMIN.md). It should listen on a
// private address (default 127.0.0.1:9090).
type Admin struct {
	srv      *fasthttp.Server
	ln       net.Listener
	edge     *Server
	token    [sha256.Size]byte // SHA-256 of the token; compared in constant time
	hasToken bool
	log      *slog.Logger
	requests *prometheus.CounterVec
}

// AdminConfig configures the admin listener.
type AdminConfig struct {
	Addr string
	// Token guards /admin/* (Authorization: Bearer <token>). Empty: GET
	// /admin/status is open, like /metrics, and the control endpoints
	// answer 403.
	Token string
}

// adminMaxBody caps a request body on the admin listener; over it: 413.
// The largest real body, a shed request, is under 100 bytes.
const adminMaxBody = 4096

// ListenAdmin binds cfg.Addr and serves the admin routes in the background.
// srv is the edge the control API acts on (nil: /admin/* answers 404).
func ListenAdmin(cfg AdminConfig, reg *prometheus.Registry, srv *Server, log *slog.Logger) (*Admin, error) {
	a := &Admin{edge: srv, log: log, hasToken: cfg.Token != ""}
	if a.hasToken {
		a.token = sha256.Sum256([]byte(cfg.Token))
	}
	a.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wsedge_admin_requests_total", Help: "Admin API requests (/admin/*) answered, by endpoint and status code.",
	}, []string{"endpoint", "code"})
	if err := reg.Register(a.requests); err != nil {
		// A second listener on the same registry (tests) shares the series.
		are, ok := err.(prometheus.AlreadyRegisteredError)
		if !ok {
			return nil, fmt.Errorf("admin metrics: %w", err)
		}
		a.requests = are.ExistingCollector.(*prometheus.CounterVec)
	}
	for _, e := range []string{"status", "shed", "drain"} {
		for _, code := range []string{"200", "202", "401"} {
			if (e == "status" && code == "202") || (e == "shed" && code == "200") {
				continue
			}
			a.requests.WithLabelValues(e, code)
		}
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("admin listen %s: %w", cfg.Addr, err)
	}
	a.ln = ln
	metrics := fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	a.srv = &fasthttp.Server{
		Name:               "wsedge-admin",
		Logger:             fasthttpLogger{log},
		MaxRequestBodySize: adminMaxBody,
		// A private port, but a stuck client must not pin a connection.
		ReadTimeout: 10 * time.Second,
		Handler: func(ctx *fasthttp.RequestCtx) {
			p := string(ctx.Path())
			switch {
			case p == "/":
				ctx.SetContentType("text/plain; charset=utf-8")
				ctx.SetBodyString(adminIndex())
			case p == "/metrics":
				metrics(ctx)
			case strings.HasPrefix(p, "/debug/pprof"):
				pprofhandler.PprofHandler(ctx)
			case strings.HasPrefix(p, "/admin/") && srv != nil:
				a.serveAPI(ctx, p)
			default:
				ctx.Error("not found", fasthttp.StatusNotFound)
			}
		},
		ErrorHandler: func(ctx *fasthttp.RequestCtx, err error) {
			if errors.Is(err, fasthttp.ErrBodyTooLarge) {
				a.reply(ctx, endpointOf(string(ctx.Path())), fasthttp.StatusRequestEntityTooLarge,
					errorBody("body_too_large", fmt.Sprintf("request bodies are limited to %d bytes", adminMaxBody)))
				ctx.SetConnectionClose()
				return
			}
			// Otherwise as fasthttp's own handler answers.
			var te interface{ Timeout() bool }
			if errors.As(err, &te) && te.Timeout() {
				ctx.Error("Request timeout", fasthttp.StatusRequestTimeout)
				return
			}
			ctx.Error("Error when parsing request", fasthttp.StatusBadRequest)
		},
	}
	go func() {
		if err := a.srv.Serve(ln); err != nil {
			log.Error("admin listener", "err", err)
		}
	}()
	return a, nil
}

// Addr is the bound address (useful with port 0).
func (a *Admin) Addr() string { return a.ln.Addr().String() }

// Close stops the listener.
func (a *Admin) Close() error { return a.srv.Shutdown() }

// adminEndpoints are what the admin listener serves, listed at its root.
var adminEndpoints = []struct{ method, path, what string }{
	{"GET", "/metrics", "Prometheus metrics (wsedge_*, Go runtime, process)"},
	{"GET", "/debug/pprof/", "pprof index: profile, heap, goroutine, allocs, block, mutex, trace, cmdline"},
	{"GET", "/admin/status", "JSON: connections, sessions, capacity, ready, draining, shedding (docs/ADMIN.md)"},
	{"POST", "/admin/shed", `close {"count":N} or {"fraction":F} WebSockets over "over_ms" with reconnect hints (token)`},
	{"POST", "/admin/drain", "mark draining (ready 503, upgrades refused) and close every WebSocket (token)"},
	{"DELETE", "/admin/drain", "end the draining mark: accept again (token)"},
}

func adminIndex() string {
	v := version.Get()
	var b strings.Builder
	fmt.Fprintf(&b, "wsedge %s (revision %s, %s) admin endpoints:\n\n", v.Version, v.Revision, v.GoVersion)
	for _, e := range adminEndpoints {
		fmt.Fprintf(&b, "  %-6s %-15s %s\n", e.method, e.path, e.what)
	}
	return b.String()
}

// NewBuildInfo is the wsedge_build_info gauge: always 1, labelled with the
// build's identity, so that dashboards can tell which build each instance
// runs (and join it onto other series).
func NewBuildInfo(v version.Info) prometheus.Collector {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "wsedge_build_info",
		Help: "Always 1; the labels say which build of wsedge is running.",
	}, []string{"version", "revision", "goversion"})
	g.WithLabelValues(v.Version, v.Revision, v.GoVersion).Set(1)
	return g
}

// fasthttpLogger sends fasthttp's own messages (a client's malformed or
// oversized request) to slog at debug level: they are the client's problem.
type fasthttpLogger struct{ l *slog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) {
	f.l.Debug(fmt.Sprintf(format, args...), "component", "admin")
}
