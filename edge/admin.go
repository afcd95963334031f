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

	"github.com/wsedge/wsedge/internal/version"
)

// Admin is the operator's listener: / (an index), /metrics and
// /debug/pprof/. It should listen on a private address (default
// 127.0.0.1:9090).
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
			case p == "/":
				ctx.SetContentType("text/plain; charset=utf-8")
				ctx.SetBodyString(adminIndex())
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

// adminEndpoints are what the admin listener serves, listed at its root.
var adminEndpoints = []struct{ path, what string }{
	{"/metrics", "Prometheus metrics (wsedge_*, Go runtime, process)"},
	{"/debug/pprof/", "pprof index: profile, heap, goroutine, allocs, block, mutex, trace, cmdline"},
}

func adminIndex() string {
	v := version.Get()
	var b strings.Builder
	fmt.Fprintf(&b, "wsedge %s (revision %s, %s) admin endpoints:\n\n", v.Version, v.Revision, v.GoVersion)
	for _, e := range adminEndpoints {
		fmt.Fprintf(&b, "  %-15s %s\n", e.path, e.what)
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
