package edge

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/wsedge/wsedge/internal/version"
)

// registerProbeMetrics exports what the readiness decision reads, so that
// alerts (the chart's PrometheusRule) can say "near MAX_CONNECTIONS" and
// "drain stuck" without knowing the configuration.
func registerProbeMetrics(reg prometheus.Registerer, s *Server) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "wsedge_draining", Help: "1 while draining, from SIGTERM or POST /admin/drain (/health/ and /ready/ answer 503, upgrades are refused).",
		}, func() float64 {
			if s.draining.Load() {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "wsedge_max_connections", Help: "MAX_CONNECTIONS: open sockets beyond it are refused.",
		}, func() float64 { return float64(s.cfg.MaxConnections) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "wsedge_ready_max_connections", Help: "READY_MAX_CONNECTIONS: /ready/ fails from this many WebSockets (0: off).",
		}, func() float64 { return float64(s.cfg.ReadyMaxConnections) }),
	)
}

// probe answers the Kubernetes probes on the loop (no allocation beyond the
// reply, nothing that can block):
//
//   - /live/ is 200 as long as the event loop answers, draining or not, so the
//     kubelet never restarts a pod that is busy closing its sockets.
//   - /ready/ is 503 while draining and while the pod is full: open sockets
//     reached MaxConnections (the next one would be refused), or WebSockets
//     reached ReadyMaxConnections. The pod keeps its sockets; the Service and
//     the ALB (pod readiness gate) only stop sending it new ones.
//
// /health/ stays as it was (503 only while draining): it is the ALB target
// health check, and a full pod must not look dead to the ALB.
func (s *Server) probe(c *conn, path string) {
	route := "ready"
	if path[1] == 'l' {
		route = "live"
	}
	ls := c.ls
	if !ls.hdr.IsGet() && !ls.hdr.IsHead() {
		s.replyError(c, route, fasthttp.StatusMethodNotAllowed, "method_not_allowed", "use GET", false)
		return
	}
	if route == "live" {
		s.reply(c, route, fasthttp.StatusOK, []byte(`{"status":"ok"}`), false)
		return
	}
	if s.draining.Load() {
		s.reply(c, route, fasthttp.StatusServiceUnavailable, []byte(`{"status":"draining"}`), false)
		return
	}
	// open includes this probe's own connection: open == MaxConnections
	// means the next socket is refused.
	if ws, full := s.full(0); full {
		body := make([]byte, 0, 64)
		body = append(body, `{"status":"full","websockets":`...)
		body = strconv.AppendInt(body, ws, 10)
		body = append(body, '}')
		s.reply(c, route, fasthttp.StatusServiceUnavailable, body, false)
		return
	}
	s.reply(c, route, fasthttp.StatusOK, []byte(`{"status":"ok"}`), false)
}

// full is /ready/'s capacity test: open sockets (plus extra not yet
// counted, such as the probe's own when asked from elsewhere) reached
// MaxConnections, or WebSockets ReadyMaxConnections. It returns the
// WebSockets open.
func (s *Server) full(extra int64) (int64, bool) {
	open, ws := s.open.Load()+extra, s.wsOpen.Load()
	return ws, open >= int64(s.cfg.MaxConnections) || (s.cfg.ReadyMaxConnections > 0 && ws >= int64(s.cfg.ReadyMaxConnections))
}

// Status is the admin API's view of the instance (GET /admin/status),
// read from atomics: asking never waits for an event loop.
type Status struct {
	Instance      string  `json:"instance"`
	Version       string  `json:"version"`
	Connections   int64   `json:"connections"`
	Sessions      int     `json:"sessions"`
	Capacity      int     `json:"capacity"`
	Ready         bool    `json:"ready"`
	Draining      bool    `json:"draining"`
	Shedding      int64   `json:"shedding"`
	UptimeSeconds float64 `json:"uptime_seconds"`
}

// Status reports the instance's load and state. Ready is what /ready/ would
// answer now (a probe's own connection counted, as /ready/ counts it).
func (s *Server) Status() Status {
	ws, full := s.full(1)
	draining := s.draining.Load()
	return Status{
		Instance:      s.cfg.InstanceID,
		Version:       version.Get().Version,
		Connections:   ws,
		Sessions:      s.hub.Len(),
		Capacity:      s.cfg.MaxConnections,
		Ready:         !draining && !full,
		Draining:      draining,
		Shedding:      s.shed.pending.Load(),
		UptimeSeconds: time.Since(s.started).Seconds(),
	}
}
