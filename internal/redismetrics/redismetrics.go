// Package redismetrics defines the wsedge_redis_* families that the Redis
// broker and the Redis presence store both register, told apart by a
// component label; one definition keeps their names, help and buckets equal,
// as Prometheus requires of one family.
package redismetrics

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// latencyBuckets span a loopback round trip (~50 µs) to a timeout.
func latencyBuckets() []float64 {
	return []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}
}

// Commands are one component's command error, latency and drop counters.
type Commands struct {
	Errors  *prometheus.CounterVec   // by op
	Latency *prometheus.HistogramVec // by op
	Dropped *prometheus.CounterVec   // by queue, reason
}

// NewCommands builds the families for component ("broker", "presence").
func NewCommands(component string) Commands {
	cl := prometheus.Labels{"component": component}
	return Commands{
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsedge_redis_command_errors_total", ConstLabels: cl,
			Help: "Redis commands that failed (transport errors and error replies), by component and operation.",
		}, []string{"op"}),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "wsedge_redis_command_duration_seconds", ConstLabels: cl, Buckets: latencyBuckets(),
			Help: "Time of one Redis round trip (a pipelined batch counts once), by component and operation.",
		}, []string{"op"}),
		Dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsedge_redis_dropped_total", ConstLabels: cl,
			Help: "Items dropped instead of sent to Redis, by component, queue and reason.",
		}, []string{"queue", "reason"}),
	}
}

// QueueDepth reports depth() as the component's queue length.
func QueueDepth(component, queue string, depth func() float64) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "wsedge_redis_queue_depth", ConstLabels: prometheus.Labels{"component": component, "queue": queue},
		Help: "Items waiting to be sent to Redis, by component and queue.",
	}, depth)
}

// Register registers a component's collectors: its Commands families, the
// queue depth gauge and its own; a component registered twice on one
// registry is refused.
func Register(reg prometheus.Registerer, component string, c Commands, cs ...prometheus.Collector) error {
	for _, col := range append([]prometheus.Collector{c.Errors, c.Latency, c.Dropped}, cs...) {
		if err := reg.Register(col); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return fmt.Errorf("%s: redis metrics: %w (one %s per registry)", component, err, component)
			}
			return fmt.Errorf("%s: redis metrics: %w", component, err)
		}
	}
	return nil
}
