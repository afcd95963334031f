// Command tokens measures what join tokens cost, in one run and side by
// side: connect+hello rate over real loopback sockets and heap bytes per idle
// hello'd socket, for an edge server without tokens and one with HS256
// tokens (and the per-IP limits on, as a production setup would have them).
// Rounds alternate off/on so that machine load affects both alike; compare
// the ratios, not the absolute numbers (clients share the process and CPUs).
//
//	go run ./bench/cmd/tokens-bench -rounds 3 -duration 3s -workers 16 -idle 2000
//
// Clients cycle through -tokens distinct tokens (512: a reconnecting
// population, which the verified-token cache answers after the first
// round of connects); set it above the connects of a round (e.g. 100000)
// for every connect to present a token never seen, which is verified in
// full.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsedge/wsedge/bench/internal/report"
	"github.com/wsedge/wsedge/edge"
	"github.com/wsedge/wsedge/edge/broker"
	"github.com/wsedge/wsedge/edge/presence"
	"github.com/wsedge/wsedge/internal/jointoken"
	"github.com/wsedge/wsedge/internal/testenv"
)

var secret = []byte("bench-secret-bench-secret-bench-secret")

type variant struct {
	name   string
	tokens bool
}

func main() {
	rounds := flag.Int("rounds", 3, "alternating off/on rounds")
	dur := flag.Duration("duration", 3*time.Second, "connect phase per round")
	workers := flag.Int("workers", 16, "concurrent connecting clients")
	idle := flag.Int("idle", 2000, "idle hello'd sockets per round")
	out := flag.String("json", "", "write results here as JSON")
	distinct := flag.Int("tokens", 512, "distinct tokens the clients cycle through, minted before the clock starts")
	flag.Parse()
	if err := run(*rounds, *dur, *workers, *idle, *distinct, *out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

type result struct {
	Variant      string    `json:"variant"`
	ConnectRates []float64 `json:"connects_per_s"`
	HeapPerConn  []float64 `json:"heap_bytes_per_idle_conn"`
	// CPUPerConn is the process's CPU time (user+system, clients and
	// server together) per connect+hello: unlike the rate, it does not move
	// when other processes take the CPUs.
	CPUPerConn []float64 `json:"cpu_us_per_connect"`
}

func run(rounds int, dur time.Duration, workers, idle, distinct int, out string) error {
	vs := []variant{{"tokens_off", false}, {"tokens_on", true}}
	res := map[string]*result{}
	for _, v := range vs {
		res[v.name] = &result{Variant: v.name}
	}
	for r := 0; r < rounds; r++ {
		for _, v := range vs {
			rate, heap, cpu, err := measure(v, dur, workers, idle, distinct)
			if err != nil {
				return fmt.Errorf("%s round %d: %w", v.name, r, err)
			}
			res[v.name].ConnectRates = append(res[v.name].ConnectRates, rate)
			res[v.name].HeapPerConn = append(res[v.name].HeapPerConn, heap)
			res[v.name].CPUPerConn = append(res[v.name].CPUPerConn, cpu)
			fmt.Printf("round %d %-10s connect+hello %8.0f/s  %6.1f µs CPU each  heap/idle conn %7.0f B\n", r, v.name, rate, cpu, heap)
		}
	}
	off, on := res["tokens_off"], res["tokens_on"]
	ratios := make([]float64, rounds)
	for r := range ratios {
		ratios[r] = on.ConnectRates[r] / off.ConnectRates[r]
	}
	fmt.Printf("per-round connect on/off: %.3f (median %.3f)\n", ratios, report.Median(ratios))
	fmt.Printf("median connect+hello: off %.0f/s, on %.0f/s, on/off %.3f\n",
		report.Median(off.ConnectRates), report.Median(on.ConnectRates), report.Median(on.ConnectRates)/report.Median(off.ConnectRates))
	cpuRatios := make([]float64, rounds)
	for r := range cpuRatios {
		cpuRatios[r] = on.CPUPerConn[r] / off.CPUPerConn[r]
	}
	fmt.Printf("per-round CPU per connect on/off: %.3f (median %.3f)\n", cpuRatios, report.Median(cpuRatios))
	fmt.Printf("median heap per idle conn: off %.0f B, on %.0f B, on-off %+.0f B\n",
		report.Median(off.HeapPerConn), report.Median(on.HeapPerConn), report.Median(on.HeapPerConn)-report.Median(off.HeapPerConn))
	if out != "" {
		b, _ := json.MarshalIndent([]*result{off, on}, "", "  ")
		return os.WriteFile(out, append(b, '\n'), 0o644)
	}
	return nil
}

func measure(v variant, dur time.Duration, workers, idle, distinct int) (rate, heapPer, cpuPer float64, err error) {
	addr, err := testenv.FreeLoopbackAddr()
	if err != nil {
		return 0, 0, 0, err
	}
	cfg := edge.Defaults()
	cfg.Addr, cfg.Debug, cfg.EventLoops = addr, true, 2
	cfg.MessageRate = 0
	deps := edge.Deps{Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry()}
	if v.tokens {
		if deps.Tokens, err = jointoken.New(jointoken.Config{Secret: secret}); err != nil {
			return 0, 0, 0, err
		}
		cfg.MaxConnectionsPerIP = 1_000_000
		cfg.ConnectRatePerIP, cfg.ConnectBurstPerIP = 1e7, 1e7
	}
	deps.Broker, deps.Presence = broker.NewMemory(), presence.NewMemory()
	srv, err := edge.New(cfg, deps)
	if err != nil {
		return 0, 0, 0, err
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve() }()
	select {
	case <-srv.Ready():
	case err := <-errc:
		return 0, 0, 0, err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-errc
	}()
	path := func(i int) string {
		id := fmt.Sprintf("s%d", i%100)
		if !v.tokens {
			return "/ws/session/" + id + "/"
		}
		tok, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"sid": id, "user_type": "agent", "sub": "bench-user", "exp": time.Now().Add(time.Hour).Unix(),
		}).SignedString(secret)
		return "/ws/session/" + id + "/?token=" + tok
	}
	// Tokens are minted before the clock starts: the backend mints them,
	// not the edge.
	paths := make([]string, distinct)
	for i := range paths {
		paths[i] = path(i)
	}

	var n atomic.Int64
	var firstErr atomic.Value
	stop := time.Now().Add(dur)
	var wg sync.WaitGroup
	cpu0 := cpuTime()
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; time.Now().Before(stop); i += workers {
				c, err := connect(addr, paths[i%len(paths)])
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				_ = c.Close()
				n.Add(1)
			}
		}(w)
	}
	wg.Wait()
	rate = float64(n.Load()) / time.Since(start).Seconds()
	cpuPer = float64(cpuTime()-cpu0) / float64(time.Microsecond) / float64(n.Load())
	if e, _ := firstErr.Load().(error); e != nil {
		return 0, 0, 0, e
	}
	time.Sleep(500 * time.Millisecond) // let the server see the closes

	before := heap()
	conns := make([]net.Conn, 0, idle)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for i := 0; i < idle; i++ {
		c, err := connect(addr, paths[i%len(paths)])
		if err != nil {
			return 0, 0, 0, err
		}
		conns = append(conns, c)
	}
	time.Sleep(time.Second)
	after := heap()
	// The tokens are garbage from here on; with -tokens large they would
	// otherwise be freed between the two readings.
	runtime.KeepAlive(paths)
	return rate, float64(int64(after)-int64(before)) / float64(idle), cpuPer, nil
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// connect upgrades, reads the connected frame and says hello; the socket is
// a session member when the presence answer arrives.
func connect(addr, path string) (net.Conn, error) {
	d := ws.Dialer{Timeout: 5 * time.Second}
	conn, br, _, err := d.Dial(context.Background(), "ws://"+addr+path)
	if err != nil {
		return nil, err
	}
	var r io.Reader = conn
	if br != nil {
		r = io.MultiReader(br, conn)
	}
	rd := struct {
		io.Reader
		io.Writer
	}{bufio.NewReader(r), conn}
	if _, err := wsutil.ReadServerText(rd); err != nil {
		conn.Close()
		return nil, fmt.Errorf("connected frame: %w", err)
	}
	if err := wsutil.WriteClientText(conn, []byte(`{"type":"hello","user_type":"agent","client_type":"web"}`)); err != nil {
		conn.Close()
		return nil, err
	}
	if err := wsutil.WriteClientText(conn, []byte(`{"type":"presence"}`)); err != nil {
		conn.Close()
		return nil, err
	}
	if _, err := wsutil.ReadServerText(rd); err != nil {
		conn.Close()
		return nil, fmt.Errorf("presence: %w", err)
	}
	return conn, nil
}
