// Command chat benchmarks the chat side of wsedge in process: many
// concurrent turns through chat.Service, the worker pool and the real
// Bedrock SDK client against the fake Bedrock runtime, which runs in a child
// process (this binary with -fake) so its memory and CPU are not counted.
//
// It reports the time to first token that wsedge adds on top of the fake's
// own first-token delay (from the chat frame handed to Conn.OnText to the
// first token frame handed to the Sink), whether every turn completed, the
// peak of concurrent turns, and heap and goroutines per active turn. The
// WebSocket edge is not in the path: its own costs are measured by the edge
// benchmarks.
//
//	go run ./bench/chat -turns 2000 -rate 5 -tokens 30
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsedge/wsedge/chat"
	"github.com/wsedge/wsedge/chat/history"
	"github.com/wsedge/wsedge/chat/model"
	"github.com/wsedge/wsedge/chat/model/fakebedrock"
)

func main() {
	var (
		fake    = flag.Bool("fake", false, "run only the fake Bedrock runtime and print its URL (used by the benchmark itself)")
		turns   = flag.Int("turns", 2000, "concurrent chat turns")
		rate    = flag.Float64("rate", 5, "tokens per second of each stream")
		tokens  = flag.Int("tokens", 30, "tokens per answer")
		first   = flag.Duration("first", 200*time.Millisecond, "the fake's own delay before the first token")
		ramp    = flag.Duration("ramp", 2*time.Second, "turns start spread evenly over this long")
		timeout = flag.Duration("timeout", 2*time.Minute, "per-turn deadline")
		cpuprof = flag.String("cpuprofile", "", "write a CPU profile of the benchmark process here")
		edgeM   = flag.Bool("edge", false, "serve the chat through the real edge (gnet, WebSocket) in this process; clients run in a child process")
		clients = flag.String("clients", "", "run only the WebSocket clients against this ws:// URL (used by -edge)")
		plotOut = flag.String("plot", "", "write an SVG CDF of the added time to first token here")
	)
	flag.Parse()
	if *cpuprof != "" {
		f, err := os.Create(*cpuprof)
		if err != nil {
			log.Fatal(err)
		}
		_ = pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if *fake {
		serveFake(*first, *rate, *tokens)
		return
	}
	log.SetFlags(0)
	if *clients != "" {
		runClients(*clients, *turns, *ramp, *first)
		return
	}
	url, stop := startFakeProcess(*first, *rate, *tokens)
	var res result
	if *edgeM {
		res = runEdge(url, *turns, *ramp, *timeout, *first)
	} else {
		res = run(url, *turns, *ramp, *timeout, *first)
	}
	res.FakeCPUSeconds = stop()
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		res.LoadAverage = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	out, _ := json.MarshalIndent(res, "", "  ")
	fmt.Println(string(out))
	if *plotOut != "" {
		if err := writeTTFTPlot(*plotOut, res); err != nil {
			log.Fatal(err)
		}
	}
}

// serveFake streams tokens at rate after first; the answer echoes nothing,
// so every turn costs the same.
func serveFake(first time.Duration, rate float64, tokens int) {
	every := time.Duration(float64(time.Second) / rate)
	srv, err := fakebedrock.Start(func(fakebedrock.Request) fakebedrock.Script {
		steps := make([]fakebedrock.Step, 0, tokens+1)
		for i := range tokens {
			d, text := every, "tok "
			if i == 0 {
				// The first token carries the request's arrival time, to
				// split the added latency into request and delivery.
				d, text = first, fmt.Sprintf("%d ", time.Now().UnixNano())
			}
			steps = append(steps, fakebedrock.Step{Delay: d, Text: text})
		}
		return fakebedrock.Script{Steps: append(steps, fakebedrock.Step{Stop: "end_turn"})}
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(srv.URL)
	// Serve until the parent closes our stdin.
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
}

// cpuOf is the CPU time (user+system) of an exited child, in seconds.
func cpuOf(cmd *exec.Cmd) float64 {
	if cmd.ProcessState == nil {
		return 0
	}
	return (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
}

// selfCPU is this process's CPU time so far, in seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func startFakeProcess(first time.Duration, rate float64, tokens int) (string, func() float64) {
	self, err := os.Executable()
	if err != nil {
		log.Fatal(err)
	}
	cmd := exec.Command(self, "-fake", "-first", first.String(), "-rate", fmt.Sprint(rate), "-tokens", fmt.Sprint(tokens))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	url, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		log.Fatalf("fake: %v", err)
	}
	return strings.TrimSpace(url), func() float64 {
		stdin.Close()
		_ = cmd.Wait()
		return cpuOf(cmd)
	}
}

type sink struct {
	start    time.Time
	firstTok atomic.Int64 // ns since start, 0 = none yet
	arrived  atomic.Int64 // ns from start to the request's arrival at the fake
	ended    chan struct{}
	failed   atomic.Bool
	tokens   atomic.Int64
}

func (s *sink) Send(p []byte) bool {
	switch {
	case strings.HasPrefix(string(p), `{"type":"token"`):
		if s.tokens.Add(1) == 1 {
			s.firstTok.Store(int64(time.Since(s.start)))
			var frame struct{ Content string }
			_ = json.Unmarshal(p, &frame)
			var at int64
			_, _ = fmt.Sscan(frame.Content, &at)
			s.arrived.Store(at - s.start.UnixNano())
		}
	case string(p) == `{"type":"end"}`:
		close(s.ended)
	case strings.HasPrefix(string(p), `{"type":"error"`):
		s.failed.Store(true)
	}
	return true
}
func (s *sink) Close(uint16, string) {}

type result struct {
	Turns             int      `json:"turns"`
	Completed         int      `json:"completed"`
	Failed            int      `json:"failed"`
	PeakConcurrent    int64    `json:"peak_concurrent_turns"`
	FakeFirstTokenMs  float64  `json:"fake_first_token_ms"`
	AddedTTFTp50Ms    float64  `json:"added_ttft_p50_ms"`
	AddedTTFTp90Ms    float64  `json:"added_ttft_p90_ms"`
	AddedTTFTp99Ms    float64  `json:"added_ttft_p99_ms"`
	AddedTTFTMaxMs    float64  `json:"added_ttft_max_ms"`
	RequestP50Ms      float64  `json:"request_to_fake_p50_ms,omitempty"`
	RequestP99Ms      float64  `json:"request_to_fake_p99_ms,omitempty"`
	HeapPerTurnKiB    float64  `json:"heap_per_active_turn_kib"`
	GoroutinesPerTurn float64  `json:"goroutines_per_active_turn"`
	WallSeconds       float64  `json:"wall_seconds"`
	Mode              string   `json:"mode"`
	ServerCPUSeconds  float64  `json:"server_cpu_seconds"`
	ClientsCPUSeconds float64  `json:"clients_cpu_seconds,omitempty"`
	FakeCPUSeconds    float64  `json:"fake_cpu_seconds"`
	LoadAverage       string   `json:"machine_load_average_after"`
	Errors            []string `json:"errors,omitempty"`
	CPUs              int      `json:"cpus"`

	addedMs []float64 // every completed turn's added TTFT, for -plot
}

func run(url string, turns int, ramp, timeout, first time.Duration) result {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = turns
	m, err := model.NewBedrock(model.BedrockConfig{
		AWS: aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("AKIDFAKE", "fake", ""),
			HTTPClient: &http.Client{Transport: transport}},
		ChatModelID: "bench-model",
		Clients:     turns,
		Options:     []func(*bedrockruntime.Options){func(o *bedrockruntime.Options) { o.BaseEndpoint = aws.String(url) }},
	})
	if err != nil {
		log.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	svc, err := chat.New(chat.Config{Workers: turns, Queue: turns, TurnTimeout: timeout}, m,
		history.NewMemory(turns*2, 100), nil, logger, prometheus.NewRegistry())
	if err != nil {
		log.Fatal(err)
	}
	defer svc.Shutdown(context.Background())

	sinks := make([]*sink, turns)
	var active, peak atomic.Int64
	mem := startSampler(func() bool { return active.Load() == int64(turns) })
	cpu0 := selfCPU()
	begin := time.Now()
	var wg sync.WaitGroup
	for i := range turns {
		if ramp > 0 {
			time.Sleep(time.Until(begin.Add(ramp * time.Duration(i) / time.Duration(turns))))
		}
		s := &sink{ended: make(chan struct{})}
		sinks[i] = s
		c := svc.Open(fmt.Sprintf("%032x", i), s)
		s.start = time.Now()
		c.OnText([]byte(fmt.Sprintf(`{"type":"chat","message":"hello %d","thread_id":"bench-%d"}`, i, i)))
		n := active.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-s.ended
			active.Add(-1)
		}()
	}
	wg.Wait()
	mem.stop()
	wall := time.Since(begin)

	res := result{Turns: turns, PeakConcurrent: peak.Load(), FakeFirstTokenMs: ms(first), WallSeconds: wall.Seconds(), CPUs: runtime.NumCPU(), Mode: "service",
		ServerCPUSeconds: selfCPU() - cpu0}
	var added, req []time.Duration
	for _, s := range sinks {
		if s.failed.Load() || s.firstTok.Load() == 0 {
			res.Failed++
			continue
		}
		res.Completed++
		added = append(added, time.Duration(s.firstTok.Load())-first)
		req = append(req, time.Duration(s.arrived.Load()))
	}
	if len(added) > 0 {
		slices.Sort(added)
		slices.Sort(req)
		q := func(d []time.Duration, p float64) float64 { return ms(d[min(len(d)-1, int(p*float64(len(d))))]) }
		res.AddedTTFTp50Ms, res.AddedTTFTp90Ms, res.AddedTTFTp99Ms, res.AddedTTFTMaxMs = q(added, .5), q(added, .9), q(added, .99), ms(added[len(added)-1])
		res.RequestP50Ms, res.RequestP99Ms = q(req, .5), q(req, .99)
		for _, d := range added {
			res.addedMs = append(res.addedMs, ms(d))
		}
	}
	res.HeapPerTurnKiB, res.GoroutinesPerTurn = mem.perTurn(turns)
	return res
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
