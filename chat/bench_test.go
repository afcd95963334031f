package chat

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsedge/wsedge/chat/history"
	"github.com/wsedge/wsedge/chat/model"
)

type countSink struct {
	tokens atomic.Int64
	ended  chan struct{}
}

func (s *countSink) Send(p []byte) bool {
	if string(p) == `{"type":"end"}` {
		s.ended <- struct{}{}
	} else {
		s.tokens.Add(1)
	}
	return true
}
func (s *countSink) Close(uint16, string) {}

// BenchmarkTurn measures the chat layer alone (Conn, pool, history, token
// frames) with the local model streaming as fast as it can; ns/op is per turn,
// and the tokens/s metric is what one turn's frames cost.
func BenchmarkTurn(b *testing.B) {
	// No per-socket turn limit: every iteration is one more turn on one socket.
	svc, err := New(Config{TurnRate: 1e9, TurnBurst: 1 << 30}, model.Local{}, history.NewMemory(0, 0), nil, nil, prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = svc.Shutdown(context.Background()) }()
	sink := &countSink{ended: make(chan struct{}, 1)}
	c := svc.Open(connID, sink)
	msg := []byte(`{"type":"chat","message":"Hello, how can you help?","thread_id":"bench"}`)
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		c.OnText(msg)
		<-sink.ended
	}
	b.ReportMetric(float64(sink.tokens.Load())/time.Since(start).Seconds(), "tokens/s")
}
