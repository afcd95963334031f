package main

import (
	"context"
	"fmt"
	"github.com/wsedge/wsedge/bench/internal/proc"
	"github.com/wsedge/wsedge/bench/internal/report"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// runChurn opens, hellos and closes connections from many loops for a fixed
// time. Source addresses rotate over 127.<run>.x.y because the client closes
// first and its ports sit in TIME_WAIT.
func runChurn(ctx context.Context, c *config, t *server) report.Result {
	r := report.Result{Target: t.Name, Scenario: "churn", Case: "connect+hello+close", Params: map[string]any{
		"duration": c.churnDuration.String(), "workers": c.churnWorkers, "source_addresses": c.churnSources,
	}}
	time.Sleep(c.gap)
	before, err := t.Sample()
	if err != nil {
		r.Error = err.Error()
		return r
	}
	clientBefore, _ := proc.CPUSeconds(os.Getpid())
	var ok, failed atomic.Int64
	var errOnce sync.Once
	run := byte(100 + c.runSeq())
	stop := time.Now().Add(c.churnDuration)
	start := time.Now()
	var wg sync.WaitGroup
	var lat []report.Latencies = make([]report.Latencies, c.churnWorkers)
	for w := 0; w < c.churnWorkers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; time.Now().Before(stop); i++ {
				src := (w + i*c.churnWorkers) % c.churnSources
				ip := net.IPv4(127, run, byte(src/250), 1+byte(src%250))
				t0 := time.Now()
				cl, err := t.proto.join(ctx, t.Addr, "churn", ip, c.dialTimeout)
				if err != nil {
					failed.Add(1)
					errOnce.Do(func() { r.Notes = append(r.Notes, "first error: "+err.Error()) })
					continue
				}
				lat[w] = append(lat[w], int64(time.Since(t0)))
				cl.Close()
				ok.Add(1)
			}
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	after, err := t.Sample()
	if err != nil {
		r.Error = err.Error()
		return r
	}
	clientAfter, _ := proc.CPUSeconds(os.Getpid())
	var all report.Latencies
	for _, l := range lat {
		all = append(all, l...)
	}
	n := ok.Load()
	r.Add("completed", "", float64(n))
	r.Add("failed", "", float64(failed.Load()))
	r.Add("connect_hello_per_s", "1/s", float64(n)/elapsed)
	all.AddTo(&r, "connect_hello_")
	if n > 0 {
		r.Add("server_cpu_per_conn", "µs", (after.CPU-before.CPU)/float64(n)*1e6)
		r.Add("client_cpu_per_conn", "µs", (clientAfter-clientBefore)/float64(n)*1e6)
	}
	r.Add("rss_after", "MiB", float64(after.RSS)/(1<<20))
	if failed.Load() > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d connects failed", failed.Load()))
	}
	return r
}
