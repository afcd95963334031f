package main

import (
	"context"
	"fmt"
	"time"
)

// runPresence measures the round trip of {"type":"presence"} in sessions of
// several sizes; requests are sequential, from one member.
func runPresence(ctx context.Context, c *config, t *target) []result {
	var out []result
	for i, k := range c.presenceMembers {
		time.Sleep(c.gap)
		r := result{Target: t.name, Scenario: "presence", Case: fmt.Sprintf("%d members", k),
			Params: map[string]any{"members": k, "requests": c.presenceRequests}}
		g, err := joinGroup(ctx, t.url(fmt.Sprintf("/ws/session/presence-%d/", i)), k, 0, c.dialTimeout)
		if err != nil {
			r.Error = err.Error()
			out = append(out, r)
			continue
		}
		// joinGroup started readers on every member; the querier needs its
		// socket back, so it uses a fresh member of its own.
		q, err := connectHello(ctx, t.url(fmt.Sprintf("/ws/session/presence-%d/", i)), nil, c.dialTimeout)
		if err != nil {
			g.close()
			r.Error = err.Error()
			out = append(out, r)
			continue
		}
		before, _ := t.sample()
		lat := make(latencies, 0, c.presenceRequests)
		wrong := 0
		for n := 0; n < c.presenceRequests; n++ {
			t0 := time.Now()
			got, err := askPresence(q, c.dialTimeout)
			if err != nil {
				r.Error = err.Error()
				break
			}
			lat = append(lat, int64(time.Since(t0)))
			if got != k+1 {
				wrong++
			}
		}
		after, _ := t.sample()
		q.close()
		g.close()
		r.add("requests", "", float64(len(lat)))
		r.add("wrong_count", "", float64(wrong))
		lat.addTo(&r, "")
		if len(lat) > 0 {
			r.add("server_cpu_per_request", "µs", (after.cpu-before.cpu)/float64(len(lat))*1e6)
		}
		out = append(out, r)
	}
	return out
}
