package controller

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the operator's own series (wsedge_operator_*), labelled by
// the scaler's namespace and name.
type Metrics struct {
	desired     *prometheus.GaugeVec
	current     *prometheus.GaugeVec
	connections *prometheus.GaugeVec
	imbalance   *prometheus.GaugeVec
	unreadable  *prometheus.GaugeVec
	readErrors  *prometheus.CounterVec
	scales      *prometheus.CounterVec
	shed        *prometheus.CounterVec
	readSeconds *prometheus.HistogramVec
	reconciles  *prometheus.CounterVec
}

// NewMetrics registers the series on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	l := []string{"namespace", "scaler"}
	m := &Metrics{
		desired: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "wsedge_operator_desired_replicas",
			Help: "Replica count the operator last decided."}, l),
		current: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "wsedge_operator_current_replicas",
			Help: "The target Deployment's spec.replicas when last read."}, l),
		connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "wsedge_operator_connections",
			Help: "Connections summed over the ready pods (unreadable pods counted full)."}, l),
		imbalance: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "wsedge_operator_imbalance_ratio",
			Help: "Busiest pod's connections over the mean (1 is even)."}, l),
		unreadable: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "wsedge_operator_unreadable_pods",
			Help: "Ready pods whose status endpoint did not answer in the last sync."}, l),
		readErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wsedge_operator_pod_read_errors_total",
			Help: "Failed reads of a pod's status endpoint."}, l),
		scales: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wsedge_operator_scale_events_total",
			Help: "Replica changes made, by direction (up, down)."}, append(l, "direction")),
		shed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wsedge_operator_sockets_shed_total",
			Help: "Sockets pods accepted to shed for rebalancing."}, l),
		readSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "wsedge_operator_pod_read_seconds",
			Help: "Time to read one pod's status.", Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 2, 5}}, l),
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wsedge_operator_reconciles_total",
			Help: "Reconciles by result (ok, error)."}, append(l, "result")),
	}
	reg.MustRegister(m.desired, m.current, m.connections, m.imbalance, m.unreadable, m.readErrors,
		m.scales, m.shed, m.readSeconds, m.reconciles)
	return m
}

// forget drops a deleted scaler's series.
func (m *Metrics) forget(ns, name string) {
	l := prometheus.Labels{"namespace": ns, "scaler": name}
	for _, g := range []*prometheus.GaugeVec{m.desired, m.current, m.connections, m.imbalance, m.unreadable} {
		g.Delete(l)
	}
	m.readErrors.Delete(l)
	m.shed.Delete(l)
	m.readSeconds.Delete(l)
	m.scales.DeletePartialMatch(l)
	m.reconciles.DeletePartialMatch(l)
}
