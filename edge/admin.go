package edge

import (
	"fmt"
	"log/slog"
	"net"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
	"github.com/valyala/fasthttp/pprofhandler"
)

// Admin is the operator's listener: /metrics and /debug/pprof/. It should
// listen on a private address (default 127.0.0.1:9090).
type Admin struct {
	srv *fasthttp.Server
	ln  net.Listener
}

// ListenAdmin binds addr and serves the admin routes in the background.
func ListenAdmin(addr string, g prometheus.Gatherer, log *slog.Logger) (*Admin, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin listen %s: %w", addr, err)
	}
	metrics := fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	a := &Admin{ln: ln, srv: &fasthttp.Server{
		Name: "wsedge-admin",
		Handler: func(ctx *fasthttp.RequestCtx) {
			p := string(ctx.Path())
			switch {
			case p == "/metrics":
				metrics(ctx)
			case strings.HasPrefix(p, "/debug/pprof"):
				pprofhandler.PprofHandler(ctx)
			default:
				ctx.Error("not found", fasthttp.StatusNotFound)
			}
		},
	}}
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
