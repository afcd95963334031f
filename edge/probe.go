package edge

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
)

// registerProbeMetrics exports what the readiness decision reads, so that
// alerts (the chart's PrometheusRule) can say "near MAX_CONNECTIONS" and
// "drain stuck" without knowing the configuration.
func registerProbeMetrics(reg prometheus.Registerer, s *Server) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "wsedge_draining", Help: "1 once a graceful shutdown has begun (/health/ and /ready/ answer 503).",
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
	open, ws := s.open.Load(), s.wsOpen.Load()
	if open >= int64(s.cfg.MaxConnections) || (s.cfg.ReadyMaxConnections > 0 && ws >= int64(s.cfg.ReadyMaxConnections)) {
		body := make([]byte, 0, 64)
		body = append(body, `{"status":"full","websockets":`...)
		body = strconv.AppendInt(body, ws, 10)
		body = append(body, '}')
		s.reply(c, route, fasthttp.StatusServiceUnavailable, body, false)
		return
	}
	s.reply(c, route, fasthttp.StatusOK, []byte(`{"status":"ok"}`), false)
}
