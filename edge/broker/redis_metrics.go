package broker

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// redisMetrics are the broker's wsedge_redis_* metrics. The presence store
// registers the same command error/latency, queue and drop families with
// component="presence"; names and help texts must stay identical to its own.
type redisMetrics struct {
	errors     *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	dropped    *prometheus.CounterVec
	published  prometheus.Counter
	received   *prometheus.CounterVec
	reconnects prometheus.Counter
}

// redisLatencyBuckets span a loopback round trip (~50 µs) to a timeout.
var redisLatencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}

func newRedisMetrics(reg prometheus.Registerer, depth func() float64) (*redisMetrics, error) {
	cl := prometheus.Labels{"component": "broker"}
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
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{
		m.errors, m.latency, m.dropped, m.published, m.received, m.reconnects,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "wsedge_redis_queue_depth", ConstLabels: prometheus.Labels{"component": "broker", "queue": "publish"},
			Help: "Items waiting to be sent to Redis, by component and queue.",
		}, depth),
	} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("broker: redis metrics: %w (one broker per registry)", err)
			}
			return nil, fmt.Errorf("broker: redis metrics: %w", err)
		}
	}
	return m, nil
}
