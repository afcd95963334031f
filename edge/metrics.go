package edge

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the edge's Prometheus series. Hot-path counts (frames, bytes,
// deliveries) are kept per event loop without atomics and added here once per
// sweep, so a fan-out costs no shared cache line per socket.
type metrics struct {
	connections    *prometheus.GaugeVec
	conns          [3]prometheus.Gauge // connections by route constant, resolved once
	connects       *prometheus.CounterVec
	closes         *prometheus.CounterVec
	framesIn       prometheus.Counter
	framesOut      prometheus.Counter
	bytesIn        prometheus.Counter
	bytesOut       prometheus.Counter
	broadcasts     prometheus.Counter
	broadcastFails prometheus.Counter
	deliveries     prometheus.Counter
	fanoutLatency  prometheus.Histogram
	slowConsumers  *prometheus.CounterVec
	httpRequests   *prometheus.CounterVec
	rejected       *prometheus.CounterVec
	presenceQuery  prometheus.Histogram
	// mailboxOverflow counts frames an event loop's mailbox refused at its
	// cap, by kind (broadcast, chat).
	mailboxOverflow *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "wsedge_connections", Help: "Open connections by route (http, session, chat).",
		}, []string{"route"}),
		connects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsedge_websocket_connects_total", Help: "WebSocket upgrades accepted, by route.",
		}, []string{"route"}),
		closes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsedge_websocket_closes_total", Help: "WebSocket connections closed, by route and close code (1006: no close frame).",
		}, []string{"route", "code"}),
		framesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wsedge_frames_received_total", Help: "WebSocket frames received.",
		}),
		framesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wsedge_frames_sent_total", Help: "WebSocket frames queued to sockets.",
		}),
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wsedge_received_bytes_total", Help: "Bytes of WebSocket frames received.",
		}),
		bytesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wsedge_sent_bytes_total", Help: "Bytes of WebSocket frames queued to sockets.",
		}),
		broadcasts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wsedge_broadcasts_total", Help: "Broadcasts accepted from clients of this instance.",
		}),
		broadcastFails: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wsedge_broadcast_failures_total", Help: "Broadcasts the broker refused (backlog full or closed).",
		}),
		deliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wsedge_broadcast_deliveries_total", Help: "session_message frames queued to local sockets.",
		}),
		fanoutLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "wsedge_fanout_latency_seconds",
			Help:    "Time from a broadcast reaching this instance's hub to its frames being written to the sockets of one event loop.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}),
		slowConsumers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsedge_slow_consumer_closes_total", Help: "Sockets closed because they could not keep up (outbound cap or write timeout).",
		}, []string{"reason"}),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsedge_http_requests_total", Help: "HTTP requests answered, by route and status code.",
		}, []string{"route", "code"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsedge_rejected_total", Help: "Work refused to protect the process, by reason.",
		}, []string{"reason"}),
		presenceQuery: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "wsedge_presence_query_seconds",
			Help:    "Duration of presence queries answered to clients.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 12),
		}),
		mailboxOverflow: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsedge_loop_mailbox_overflow_total",
			Help: "Frames an event loop's mailbox refused at its cap (LOOP_MAILBOX_CAP, LOOP_MAILBOX_MAX_BYTES), by kind; the sockets concerned get a reconnect hint and close 1013.",
		}, []string{"kind"}),
	}
	reg.MustRegister(m.connections, m.connects, m.closes, m.framesIn, m.framesOut, m.bytesIn, m.bytesOut,
		m.broadcasts, m.broadcastFails, m.deliveries, m.fanoutLatency, m.slowConsumers, m.httpRequests,
		m.rejected, m.presenceQuery, m.mailboxOverflow)
	for r := range m.conns {
		m.conns[r] = m.connections.WithLabelValues(routeName(uint8(r)))
	}
	// Known label values start at zero so that rate() and alerts see them
	// before the first event.
	for _, r := range []string{"outbound_cap", "write_timeout"} {
		m.slowConsumers.WithLabelValues(r)
	}
	for _, k := range []string{"broadcast", "chat"} {
		m.mailboxOverflow.WithLabelValues(k)
	}
	for _, r := range []string{"max_connections", "handshake_timeout", "presence_concurrency", "api_concurrency", "rate_limited",
		reasonOriginMissing, reasonOriginNotAllowed, reasonUnauthorized} {
		m.rejected.WithLabelValues(r)
	}
	return m
}

func (m *metrics) closed(route uint8, code int) {
	m.closes.WithLabelValues(routeName(route), strconv.Itoa(code)).Inc()
}

// loopStats are a loop's hot-path counts since the last sweep.
type loopStats struct {
	framesIn, framesOut, bytesIn, bytesOut, deliveries uint64
}

func (m *metrics) flush(s *loopStats) {
	if s.framesIn > 0 {
		m.framesIn.Add(float64(s.framesIn))
	}
	if s.framesOut > 0 {
		m.framesOut.Add(float64(s.framesOut))
	}
	if s.bytesIn > 0 {
		m.bytesIn.Add(float64(s.bytesIn))
	}
	if s.bytesOut > 0 {
		m.bytesOut.Add(float64(s.bytesOut))
	}
	if s.deliveries > 0 {
		m.deliveries.Add(float64(s.deliveries))
	}
	*s = loopStats{}
}
