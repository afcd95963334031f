package main

import (
	"context"
	"fmt"
	"github.com/wsedge/wsedge/bench/internal/report"
	"time"
)

// runPresence measures the round trip of {"type":"presence"} in sessions of
// several sizes; requests are sequential, from one member.
func runPresence(ctx context.Context, c *config, t *server) []report.Result {
	var out []report.Result
	for i, k := range c.presenceMembers {
		time.Sleep(c.gap)
		r := report.Result{Target: t.Name, Scenario: "presence", Case: fmt.Sprintf("%d members", k),
			Params: map[string]any{"members": k, "requests": c.presenceRequests}}
		session := fmt.Sprintf("presence-%d", i)
		g, err := joinGroup(ctx, []*server{t}, session, k, 0, c.dialTimeout)
		if err != nil {
			r.Error = err.Error()
			out = append(out, r)
			continue
		}
		// joinGroup started readers on every member; the querier needs its
		// socket back, so it uses a fresh member of its own.
		q, err := t.proto.join(ctx, t.Addr, session, nil, c.dialTimeout)
		if err != nil {
			g.close()
			r.Error = err.Error()
			out = append(out, r)
			continue
		}
		before, _ := t.Sample()
		lat := make(report.Latencies, 0, c.presenceRequests)
		wrong := 0
		for n := 0; n < c.presenceRequests; n++ {
			t0 := time.Now()
			got, err := t.proto.askPresence(q, session, c.dialTimeout)
			if err != nil {
				r.Error = err.Error()
				break
			}
			lat = append(lat, int64(time.Since(t0)))
			if got != k+1 {
				wrong++
			}
		}
		after, _ := t.Sample()
		q.Close()
		g.close()
		r.Add("requests", "", float64(len(lat)))
		r.Add("wrong_count", "", float64(wrong))
		lat.AddTo(&r, "")
		if len(lat) > 0 {
			r.Add("server_cpu_per_request", "µs", (after.CPU-before.CPU)/float64(len(lat))*1e6)
		}
		out = append(out, r)
	}
	return out
}
