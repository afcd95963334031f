package presence

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsedge/wsedge/internal/redismetrics"
)

// redisMetrics are the store's wsedge_redis_* metrics; the command, queue and
// drop families are shared with the broker (internal/redismetrics).
type redisMetrics struct {
	redismetrics.Commands // errors, latency and drops by op, shared families
	resyncs               prometheus.Counter
	janitored             prometheus.Counter
}

func newRedisMetrics(reg prometheus.Registerer, depth func() float64) (*redisMetrics, error) {
	m := &redisMetrics{
		Commands: redismetrics.NewCommands("presence"),
		resyncs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wsedge_redis_presence_resyncs_total",
			Help: "Full rewrites of this instance's presence entries (start, after Redis failed or lost data).",
		}),
		janitored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wsedge_redis_presence_janitored_total",
			Help: "Presence entries of dead instances removed by this instance's janitor.",
		}),
	}
	// Known label values start at zero, so that rate() and alerts see a
	// series before the first event.
	for _, op := range []string{"members", "heartbeat", "flush", "resync", "retire", "janitor"} {
		m.Errors.WithLabelValues(op)
	}
	m.Dropped.WithLabelValues("presence", "backlog_full")
	if reg == nil {
		return m, nil
	}
	if err := redismetrics.Register(reg, "presence", m.Commands, m.resyncs, m.janitored,
		redismetrics.QueueDepth("presence", "presence", depth)); err != nil {
		return nil, err
	}
	return m, nil
}
