package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsedge/wsedge/bench/internal/report"
	"github.com/wsedge/wsedge/chat"
	"github.com/wsedge/wsedge/chat/history"
	"github.com/wsedge/wsedge/chat/model"
	"github.com/wsedge/wsedge/edge"
	"github.com/wsedge/wsedge/edge/broker"
	"github.com/wsedge/wsedge/edge/presence"
)

// clientResult is what the clients child reports.
type clientResult struct {
	Completed int       `json:"completed"`
	Failed    int       `json:"failed"`
	Errors    []string  `json:"errors,omitempty"`
	AddedMs   []float64 `json:"added_ms"`
	// RequestMs is each completed turn's time from writing the chat frame
	// to its request reaching the fake (the fake's clock on the same
	// machine); the rest of the added time is the first token's way back.
	RequestMs []float64 `json:"request_ms"`
	// GapP99Ms and GapMaxMs are over the times between consecutive tokens
	// of a turn (the fake sends one every 1/-rate s): a stall anywhere on
	// the way shows as a longer gap.
	GapP99Ms float64 `json:"token_gap_p99_ms"`
	GapMaxMs float64 `json:"token_gap_max_ms"`
}

// runEdge serves chat through a real edge.Server in this process (the
// "wsedge" side: gnet loops, WebSocket codec, chat pool, Bedrock SDK) and
// drives it from a clients child process over loopback sockets.
func runEdge(m model.Model, h harness, turns, repeat int, ramp, timeout, first time.Duration) result {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	reg := prometheus.NewRegistry()
	brk := broker.NewMemory()
	svc, err := chat.New(chat.Config{Workers: turns, Queue: turns, TurnTimeout: timeout}, m,
		history.NewMemory(turns*2, 100), brokerMirror{brk}, logger, reg)
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := edge.Defaults()
	cfg.Addr = addr
	cfg.Debug = true
	srv, err := edge.New(cfg, edge.Deps{
		Broker: brk, Presence: presence.NewMemory(),
		OpenChat: func(id string, s edge.ChatSink) edge.ChatConn { return svc.Open(id, s) },
		Logger:   logger, Registry: reg,
	})
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		if err := srv.Serve(); err != nil {
			log.Fatal(err)
		}
	}()
	<-srv.Ready()

	self, _ := os.Executable()
	cmd := h.command(self, "clients", "-clients", "ws://"+addr+"/ws/chat/", "-turns", fmt.Sprint(turns), "-repeat", fmt.Sprint(repeat),
		"-ramp", ramp.String(), "-first", first.String())
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	out := bufio.NewReader(stdout)
	if line, err := out.ReadString('\n'); err != nil || strings.TrimSpace(line) != "connected" {
		log.Fatalf("clients: %q %v", line, err)
	}
	var peakRunning atomic.Int64
	mem := startSampler(func() bool {
		n := gauge(reg, "wsedge_chat_pool_running")
		if n > peakRunning.Load() {
			peakRunning.Store(n)
		}
		return n == int64(turns)
	})
	begin := time.Now()
	cpu0 := selfCPU()
	gc0 := gcCycles()
	fmt.Fprintln(stdin, "go")
	var cr clientResult
	if err := json.NewDecoder(out).Decode(&cr); err != nil {
		log.Fatalf("clients result: %v", err)
	}
	mem.stop()
	serverCPU := selfCPU() - cpu0
	serverGC := gcCycles() - gc0
	stdin.Close()
	_ = cmd.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	_ = svc.Shutdown(ctx)

	res := result{Turns: turns * repeat, Repeat: repeat, Completed: cr.Completed, Failed: cr.Failed, PeakConcurrent: peakRunning.Load(),
		FakeFirstTokenMs: ms(first), WallSeconds: time.Since(begin).Seconds(), CPUs: runtime.NumCPU(), Mode: "edge", Errors: cr.Errors,
		ServerCPUSeconds: serverCPU, ClientsCPUSeconds: cpuOf(cmd), ServerGCCycles: serverGC}
	res.setTTFT(cr.AddedMs, cr.RequestMs)
	res.HeapPerTurnKiB, res.GoroutinesPerTurn = mem.perTurn(turns)
	res.TokenGapP99Ms, res.TokenGapMaxMs = cr.GapP99Ms, cr.GapMaxMs
	return res
}

// brokerMirror publishes mirrored chat frames to the session's listeners;
// a full broker backlog drops the frame (mirroring is best effort).
type brokerMirror struct{ b broker.Broker }

func (m brokerMirror) Mirror(thread string, payload []byte) { _ = m.b.Publish(thread, payload) }

func gauge(g prometheus.Gatherer, name string) int64 {
	mfs, err := g.Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			return int64(mf.GetMetric()[0].GetGauge().GetValue())
		}
	}
	return 0
}

// runClients connects every socket first, says "connected", waits for "go",
// then starts one turn per socket spread over ramp (each socket runs repeat
// turns one after the other), and prints a clientResult as JSON.
func runClients(url string, turns, repeat int, ramp, first time.Duration) {
	conns := make([]net.Conn, turns)
	for i := range conns {
		c, _, _, err := ws.Dialer{Timeout: 10 * time.Second}.Dial(context.Background(), url)
		if err != nil {
			log.Fatalf("dial %d: %v", i, err)
		}
		conns[i] = c
	}
	fmt.Println("connected")
	in := bufio.NewReader(os.Stdin)
	if _, err := in.ReadString('\n'); err != nil {
		log.Fatal(err)
	}
	var mu sync.Mutex
	var res clientResult
	var gaps []float64 // ms
	var wg sync.WaitGroup
	begin := time.Now()
	for i, c := range conns {
		time.Sleep(time.Until(begin.Add(ramp * time.Duration(i) / time.Duration(turns))))
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			for range repeat {
				added, request, turnGaps, err := oneTurn(c, i, first)
				mu.Lock()
				if err != nil {
					res.Failed++
					if len(res.Errors) < 10 {
						res.Errors = append(res.Errors, err.Error())
					}
					mu.Unlock()
					return
				}
				res.Completed++
				res.AddedMs = append(res.AddedMs, ms(added))
				res.RequestMs = append(res.RequestMs, ms(request))
				for _, g := range turnGaps {
					gaps = append(gaps, ms(g))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(gaps) > 0 {
		slices.Sort(gaps)
		res.GapP99Ms, res.GapMaxMs = report.Percentile(gaps, .99), gaps[len(gaps)-1]
	}
	_ = json.NewEncoder(os.Stdout).Encode(res)
	_, _ = io.Copy(io.Discard, in)
}

// oneTurn runs one turn and returns its added time to first token, the
// part of it before the request reached the fake, and the times between
// its consecutive tokens.
func oneTurn(c net.Conn, i int, first time.Duration) (added, request time.Duration, gaps []time.Duration, err error) {
	start := time.Now()
	msg := fmt.Sprintf(`{"type":"chat","message":"hello %d","thread_id":"bench-%d"}`, i, i)
	if err := wsutil.WriteClientText(c, []byte(msg)); err != nil {
		return 0, 0, nil, err
	}
	var firstTok time.Duration
	var last time.Time
	for {
		data, op, err := wsutil.ReadServerData(c)
		if err != nil {
			return 0, 0, nil, err
		}
		if op != ws.OpText {
			continue
		}
		var f struct{ Type, Error, Content string }
		_ = json.Unmarshal(data, &f)
		switch f.Type {
		case "token":
			now := time.Now()
			if !last.IsZero() {
				gaps = append(gaps, now.Sub(last))
			}
			last = now
			if firstTok == 0 {
				firstTok = time.Since(start)
				// The fake's first token carries its arrival time.
				var at int64
				_, _ = fmt.Sscan(f.Content, &at)
				request = time.Duration(at - start.UnixNano())
			}
		case "error":
			return 0, 0, nil, fmt.Errorf("error frame %s", data)
		case "end":
			if firstTok == 0 {
				return 0, 0, nil, fmt.Errorf("end without tokens")
			}
			return firstTok - first, request, gaps, nil
		}
	}
}
