package presence

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// redisMetrics are the store's wsedge_redis_* metrics. The broker registers
// the same command error/latency, queue and drop families with
// component="broker"; names and help texts must stay identical to its own.
type redisMetrics struct {
	errors    *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	dropped   *prometheus.CounterVec
	resyncs   prometheus.Counter
	janitored prometheus.Counter
}

var redisLatencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}

func newRedisMetrics(reg prometheus.Registerer, depth func() float64) (*redisMetrics, error) {
	cl := prometheus.Labels{"component": "presence"}
	m := &redisMetrics{
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsedge_redis_command_errors_total", ConstLabels: cl,
			Help: "Redis commands that failed (transport errors and error replies), by component and operation.",
		}, []string{"op"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "wsedge_redis_command_duration_seconds", ConstLabels: cl, Buckets: redisLatencyBuckets,
			Help: "Time of one Redis round trip (a pipelined batch counts once), by component and operation.",
		}, []string{"op"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsedge_redis_dropped_total", ConstLabels: cl,
			Help: "Items dropped instead of sent to Redis, by component, queue and reason.",
		}, []string{"queue", "reason"}),
		resyncs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wsedge_redis_presence_resyncs_total",
			Help: "Full rewrites of this instance's presence entries (start, after Redis failed or lost data).",
		}),
		janitored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wsedge_redis_presence_janitored_total",
			Help: "Presence entries of dead instances removed by this instance's janitor.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{
		m.errors, m.latency, m.dropped, m.resyncs, m.janitored,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "wsedge_redis_queue_depth", ConstLabels: prometheus.Labels{"component": "presence", "queue": "presence"},
			Help: "Items waiting to be sent to Redis, by component and queue.",
		}, depth),
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("presence: redis metrics: %w", err)
		}
	}
	return m, nil
}
