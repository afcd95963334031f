package chat

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsedge/wsedge/chat/history"
	"github.com/wsedge/wsedge/chat/model"
)

// Turn outcomes, the label of wsedge_chat_turns_total.
const (
	outcomeCompleted    = "completed"
	outcomeEscalated    = "escalated"
	outcomeCancelled    = "cancelled"
	outcomeDisconnected = "disconnected"
	outcomeBlocked      = "blocked"
	outcomeFailed       = "failed"
)

type metrics struct {
	turns      *prometheus.CounterVec
	ttft       prometheus.Histogram
	duration   prometheus.Histogram
	tokens     prometheus.Counter
	rejections *prometheus.CounterVec
	upstream   *prometheus.CounterVec
	db         *prometheus.HistogramVec
	rewrites   prometheus.Counter
	// modelTokens counts Bedrock's usage metadata (the local model counts
	// words), by direction (input, output) and model id.
	modelTokens *prometheus.CounterVec
}

// newMetrics registers the chat metrics on reg; gauges read the pool.
func newMetrics(reg prometheus.Registerer, p *pool, modelIDs []string) (*metrics, error) {
	latency := []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	m := &metrics{
		turns: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wsedge_chat_turns_total",
			Help: "Chat turns by outcome (completed, escalated, cancelled, disconnected, blocked, failed)."}, []string{"outcome"}),
		ttft: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "wsedge_chat_time_to_first_token_seconds",
			Help: "From the accepted chat frame to the first token frame queued for the client.", Buckets: latency}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "wsedge_chat_turn_duration_seconds",
			Help: "From the accepted chat frame to end.", Buckets: []float64{.1, .25, .5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300}}),
		tokens: prometheus.NewCounter(prometheus.CounterOpts{Name: "wsedge_chat_tokens_streamed_total",
			Help: "Token frames queued for chat clients."}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wsedge_chat_pool_rejections_total",
			Help: "Chat turns refused: busy (reason full, shutting_down) or rate_limited (reason rate_limited: the socket's rate; thread_rate_limited: the thread's; thread_table_full: too many threads tracked)."}, []string{"reason"}),
		upstream: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wsedge_chat_upstream_errors_total",
			Help: "Failed model or history calls by type."}, []string{"type"}),
		db: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "wsedge_chat_db_seconds",
			Help: "History store call latency by operation and result.", Buckets: latency}, []string{"op", "result"}),
		rewrites: prometheus.NewCounter(prometheus.CounterOpts{Name: "wsedge_chat_guardrail_rewrites_total",
			Help: "Answers regenerated after a guardrail intervention."}),
		modelTokens: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wsedge_chat_model_tokens_total",
			Help: "Model tokens reported by the model's usage metadata, by direction (input, output) and model id."},
			[]string{"direction", "model"}),
	}
	cs := []prometheus.Collector{m.turns, m.ttft, m.duration, m.tokens, m.rejections, m.upstream, m.db, m.rewrites, m.modelTokens,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "wsedge_chat_pool_queue_depth",
			Help: "Accepted chat turns waiting for a worker."}, func() float64 { return float64(len(p.jobs)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "wsedge_chat_pool_running",
			Help: "Chat turns running on a worker."}, func() float64 { return float64(p.running.Load()) }),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	// Known label values start at zero, so that rate() and alerts see a
	// series before the first event.
	for _, id := range modelIDs {
		m.modelTokens.WithLabelValues("input", id)
		m.modelTokens.WithLabelValues("output", id)
	}
	for _, o := range []string{outcomeCompleted, outcomeEscalated, outcomeCancelled, outcomeDisconnected, outcomeBlocked, outcomeFailed} {
		m.turns.WithLabelValues(o)
	}
	for _, r := range []string{"full", "shutting_down", "rate_limited", "thread_rate_limited", "thread_table_full"} {
		m.rejections.WithLabelValues(r)
	}
	for _, k := range []string{model.KindThrottled, model.KindModel, model.KindUnavailable, model.KindValidation,
		model.KindTruncated, model.KindTimeout, model.KindStalled, model.KindOther, "history"} {
		m.upstream.WithLabelValues(k)
	}
	return m, nil
}

// timedStore records the latency of every history call.
type timedStore struct {
	history.Store
	m *metrics
}

func (s timedStore) observe(op string, start time.Time, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	s.m.db.WithLabelValues(op, result).Observe(time.Since(start).Seconds())
}

func (s timedStore) Append(ctx context.Context, threadID string, msgs []history.Message) error {
	start := time.Now()
	err := s.Store.Append(ctx, threadID, msgs)
	s.observe("append", start, err)
	return err
}

func (s timedStore) Recent(ctx context.Context, threadID string, w history.Window) ([]history.Message, error) {
	start := time.Now()
	msgs, err := s.Store.Recent(ctx, threadID, w)
	s.observe("recent", start, err)
	return msgs, err
}
