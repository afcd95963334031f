package broker

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsedge/wsedge/internal/redismetrics"
)

// redisMetrics are the broker's wsedge_redis_* metrics; the command, queue and
// drop families are shared with the presence store (internal/redismetrics).
type redisMetrics struct {
	redismetrics.Commands // errors, latency and drops by op, shared families
	published             prometheus.Counter
	received              *prometheus.CounterVec
	reconnects            prometheus.Counter
}

func newRedisMetrics(reg prometheus.Registerer, depth func() float64) (*redisMetrics, error) {
	m := &redisMetrics{
		Commands: redismetrics.NewCommands("broker"),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wsedge_redis_published_total",
			Help: "Messages published to Redis (one per broadcast, whatever the number of listeners).",
		}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsedge_redis_received_total",
			Help: "Messages received from Redis pub/sub, by result (delivered, own, unsubscribed, invalid).",
		}, []string{"result"}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wsedge_redis_pubsub_reconnects_total",
			Help: "Pub/sub connections lost and re-established (each resubscribes its channels).",
		}),
	}
	// Known label values start at zero, so that rate() and alerts see a
	// series before the first event.
	for _, op := range []string{"publish", "subscribe", "unsubscribe"} {
		m.Errors.WithLabelValues(op)
	}
	for _, r := range []string{"backlog_full", "redis_down"} {
		m.Dropped.WithLabelValues("publish", r)
	}
	for _, r := range []string{"delivered", "own", "unsubscribed", "invalid"} {
		m.received.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	if err := redismetrics.Register(reg, "broker", m.Commands, m.published, m.received, m.reconnects,
		redismetrics.QueueDepth("broker", "publish", depth)); err != nil {
		return nil, err
	}
	return m, nil
}
