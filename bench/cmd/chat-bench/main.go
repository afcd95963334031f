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
// -upstream chooses how the server reaches the fake: h1 (plain HTTP/1.1),
// h1tls (HTTPS, HTTP/2 refused: one TCP+TLS connection per concurrent
// stream), h2std (HTTPS, net/http's own HTTP/2: what wsedge did before the
// shared upstream) or h2 (HTTPS, the shared upstream client: streams
// multiplexed on few connections, what Bedrock's endpoints offer). -compare runs several of
// them one after the other in one invocation, each with a fresh fake and
// server, and reports them side by side.
//
//	go run ./bench/cmd/chat-bench -edge -turns 2000 -rate 5 -tokens 30 -compare h1,h1tls,h2
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
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
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
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
		up      = flag.String("upstream", "h2", "how the server reaches the fake: h1, h1tls, h2std or h2")
		compare = flag.String("compare", "", "comma-separated upstream modes to run one after the other (overrides -upstream)")
		tlsFake = flag.Bool("tls", false, "with -fake: serve TLS with HTTP/2 offered")
		jsonOut = flag.String("json", "", "also write the results as JSON here")
		mdOut   = flag.String("md", "", "also write the results as a Markdown table here")
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
		serveFake(*first, *rate, *tokens, *tlsFake)
		return
	}
	log.SetFlags(0)
	if *clients != "" {
		runClients(*clients, *turns, *ramp, *first)
		return
	}
	modes := []string{*up}
	if *compare != "" {
		modes = strings.Split(*compare, ",")
	}
	var results []result
	for _, mode := range modes {
		if mode != "h1" && mode != "h1tls" && mode != "h2std" && mode != "h2" {
			log.Fatalf("-upstream %q: want h1, h1tls, h2std or h2", mode)
		}
		f := startFakeProcess(*first, *rate, *tokens, mode != "h1")
		m := newModel(f.url, f.ca, mode, *turns)
		var res result
		if *edgeM {
			res = runEdge(m, *turns, *ramp, *timeout, *first)
		} else {
			res = run(m, *turns, *ramp, *timeout, *first)
		}
		res.FakeCPUSeconds, res.UpstreamConnections = f.stop()
		res.Upstream, res.TokensPerTurn, res.RatePerSecond = mode, *tokens, *rate
		if res.Completed > 0 {
			res.ServerCPUPerTokenUs = res.ServerCPUSeconds * 1e6 / float64(res.Completed**tokens)
		}
		if b, err := os.ReadFile("/proc/loadavg"); err == nil {
			res.LoadAverage = strings.Join(strings.Fields(string(b))[:3], " ")
		}
		results = append(results, res)
		out, _ := json.MarshalIndent(res, "", "  ")
		fmt.Println(string(out))
	}
	if *plotOut != "" {
		if err := writeTTFTPlot(*plotOut, results); err != nil {
			log.Fatal(err)
		}
	}
	if *jsonOut != "" {
		out, _ := json.MarshalIndent(results, "", "  ")
		if err := os.WriteFile(*jsonOut, append(out, '\n'), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	if *mdOut != "" {
		if err := os.WriteFile(*mdOut, []byte(markdown(results, strings.Join(os.Args[1:], " "))), 0o644); err != nil {
			log.Fatal(err)
		}
	}
}

// markdown renders the runs side by side, each against the first.
func markdown(rs []result, args string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# bench/cmd/chat-bench %s\n\nMeasured %s UTC on %d CPUs (fake, clients and server share them).\n\n",
		args, time.Now().UTC().Format("2006-01-02 15:04"), runtime.NumCPU())
	b.WriteString("| upstream | completed | added TTFT p50 / p90 / p99 / max (ms) | p99 vs first | server CPU s | CPU per token | upstream TCP connections | heap / turn | goroutines / turn | load avg |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, r := range rs {
		ratio := "1.00×"
		if rs[0].AddedTTFTp99Ms > 0 {
			ratio = fmt.Sprintf("%.2f×", r.AddedTTFTp99Ms/rs[0].AddedTTFTp99Ms)
		}
		fmt.Fprintf(&b, "| %s | %d/%d | %.1f / %.1f / %.1f / %.1f | %s | %.2f | %.1f µs | %d | %.1f KiB | %.1f | %s |\n",
			r.Upstream, r.Completed, r.Turns, r.AddedTTFTp50Ms, r.AddedTTFTp90Ms, r.AddedTTFTp99Ms, r.AddedTTFTMaxMs, ratio,
			r.ServerCPUSeconds, r.ServerCPUPerTokenUs, r.UpstreamConnections, r.HeapPerTurnKiB, r.GoroutinesPerTurn, r.LoadAverage)
	}
	return b.String()
}

// newModel is the Bedrock model as cmd/wsedge builds it (h1, h2: a
// BuildableClient with model.TransportOptions, which NewBedrock turns into
// the shared upstream client), trusting the fake's certificate. h1tls and
// h2std hand NewBedrock a plain net/http client instead, as the code before
// the shared upstream did: h1tls offers only HTTP/1.1 by ALPN (one TCP and
// TLS handshake per concurrent stream), h2std lets net/http negotiate
// HTTP/2 itself.
func newModel(url string, ca []byte, mode string, turns int) *model.Bedrock {
	var pool *x509.CertPool
	if len(ca) > 0 {
		pool = x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
	}
	buildable := awshttp.NewBuildableClient().WithTransportOptions(model.TransportOptions(turns), func(t *http.Transport) {
		t.TLSClientConfig.RootCAs = pool
	})
	var client aws.HTTPClient = buildable
	switch mode {
	case "h1tls":
		t := buildable.GetTransport()
		t.ForceAttemptHTTP2 = false
		t.TLSClientConfig.NextProtos = []string{"http/1.1"}
		t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		client = &http.Client{Transport: t}
	case "h2std":
		t := buildable.GetTransport()
		t.ForceAttemptHTTP2 = true
		client = &http.Client{Transport: t}
	}
	m, err := model.NewBedrock(model.BedrockConfig{
		AWS: aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("AKIDFAKE", "fake", ""),
			HTTPClient: client},
		ChatModelID: "bench-model",
		Clients:     turns,
		Options:     []func(*bedrockruntime.Options){func(o *bedrockruntime.Options) { o.BaseEndpoint = aws.String(url) }},
	})
	if err != nil {
		log.Fatal(err)
	}
	return m
}

// serveFake streams tokens at rate after first; the answer echoes nothing,
// so every turn costs the same. It prints its URL (and, with TLS, its
// certificate as one base64 line), serves until stdin closes, then prints
// how many TCP connections it accepted.
func serveFake(first time.Duration, rate float64, tokens int, tls bool) {
	every := time.Duration(float64(time.Second) / rate)
	start := fakebedrock.Start
	if tls {
		start = fakebedrock.StartTLS
	}
	srv, err := start(func(fakebedrock.Request) fakebedrock.Script {
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
	fmt.Println(base64.StdEncoding.EncodeToString(srv.CertPEM()))
	// Serve until the parent closes our stdin.
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	fmt.Println(srv.Connections())
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

// fakeProc is the fake Bedrock child process.
type fakeProc struct {
	url string
	ca  []byte
	// stop ends the child and returns its CPU seconds and the TCP
	// connections it accepted.
	stop func() (float64, int64)
}

func startFakeProcess(first time.Duration, rate float64, tokens int, tls bool) fakeProc {
	self, err := os.Executable()
	if err != nil {
		log.Fatal(err)
	}
	cmd := exec.Command(self, "-fake", "-tls="+fmt.Sprint(tls), "-first", first.String(), "-rate", fmt.Sprint(rate), "-tokens", fmt.Sprint(tokens))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	out := bufio.NewReader(stdout)
	url, err := out.ReadString('\n')
	if err != nil {
		log.Fatalf("fake: %v", err)
	}
	line, _ := out.ReadString('\n')
	ca, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(line))
	return fakeProc{url: strings.TrimSpace(url), ca: ca, stop: func() (float64, int64) {
		stdin.Close()
		var conns int64
		if line, err := out.ReadString('\n'); err == nil {
			_, _ = fmt.Sscan(line, &conns)
		}
		_ = cmd.Wait()
		return cpuOf(cmd), conns
	}}
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
	// Upstream is the mode (h1, h1tls, h2); ServerCPUPerTokenUs is the
	// server's CPU over the run divided by the tokens delivered;
	// UpstreamConnections the TCP connections the fake accepted.
	Upstream            string  `json:"upstream"`
	TokensPerTurn       int     `json:"tokens_per_turn"`
	RatePerSecond       float64 `json:"tokens_per_second_per_turn"`
	ServerCPUPerTokenUs float64 `json:"server_cpu_us_per_token"`
	UpstreamConnections int64   `json:"upstream_tcp_connections"`
}

func run(m model.Model, turns int, ramp, timeout, first time.Duration) result {
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
