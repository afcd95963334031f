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
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
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

	"github.com/wsedge/wsedge/bench/internal/report"
	"github.com/wsedge/wsedge/chat"
	"github.com/wsedge/wsedge/chat/history"
	"github.com/wsedge/wsedge/chat/model"
	"github.com/wsedge/wsedge/chat/model/fakebedrock"
	"github.com/wsedge/wsedge/internal/gcfloor"
)

func main() {
	var (
		fake    = flag.Bool("fake", false, "run only the fake Bedrock runtime and print its URL (used by the benchmark itself)")
		turns   = flag.Int("turns", 2000, "concurrent chat turns")
		repeat  = flag.Int("repeat", 1, "with -edge: turns each socket runs one after the other (the first ones start over -ramp, each next one when the previous ends)")
		rate    = flag.Float64("rate", 5, "tokens per second of each stream")
		tokens  = flag.Int("tokens", 30, "tokens per answer")
		first   = flag.Duration("first", 200*time.Millisecond, "the fake's own delay before the first token")
		ramp    = flag.Duration("ramp", 2*time.Second, "turns start spread evenly over this long")
		timeout = flag.Duration("timeout", 2*time.Minute, "per-turn deadline")
		cpuprof = flag.String("cpuprofile", "", "write a CPU profile of the benchmark process here")
		memprof = flag.String("memprofile", "", "write an allocation profile of the benchmark process here at the end")
		profDir = flag.String("profile-dir", "", "write CPU profiles of the server, the fake and the clients into this directory (server.prof, fake.prof, clients.prof; the last run wins)")
		floors  = flag.String("gc-floors", "0", "comma-separated heap floors of the server in MiB (GC_HEAP_FLOOR), each run in turn with every upstream mode")
		rounds  = flag.Int("rounds", 1, "repeat every mode × floor combination this many times, alternating")
		hGOGC   = flag.String("harness-gogc", "off", "GOGC of the fake and the clients: they stand in for other machines, so by default their collections do not stall the shared cores")
		single  = flag.Bool("single", false, "run exactly one mode and floor in this process and print its result as one JSON line (used by the benchmark itself: with several runs each gets a fresh server process)")
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
	h := harness{gogc: *hGOGC}
	if *profDir != "" && !*fake && *clients == "" {
		*cpuprof = filepath.Join(*profDir, "server.prof")
		h.profiles = *profDir
	}
	if *cpuprof != "" {
		f, err := os.Create(*cpuprof)
		if err != nil {
			log.Fatal(err)
		}
		_ = pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if *memprof != "" {
		runtime.MemProfileRate = 4096
		defer func() {
			f, err := os.Create(*memprof)
			if err != nil {
				log.Fatal(err)
			}
			_ = pprof.Lookup("allocs").WriteTo(f, 0)
			_ = f.Close()
		}()
	}
	if *fake {
		serveFake(*first, *rate, *tokens, *tlsFake)
		return
	}
	log.SetFlags(0)
	if *clients != "" {
		runClients(*clients, *turns, max(*repeat, 1), *ramp, *first)
		return
	}
	modes := []string{*up}
	if *compare != "" {
		modes = strings.Split(*compare, ",")
	}
	if *edgeM {
		// As cmd/wsedge schedules the server: one P per event loop on top of
		// one per CPU (its configure explains why).
		runtime.GOMAXPROCS(2 * runtime.NumCPU())
	}
	var floorMiB []int
	for _, f := range strings.Split(*floors, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 {
			log.Fatalf("-gc-floors %q: want MiB as non-negative integers", *floors)
		}
		floorMiB = append(floorMiB, n)
	}
	for _, mode := range modes {
		if mode != "h1" && mode != "h1tls" && mode != "h2std" && mode != "h2" {
			log.Fatalf("-upstream %q: want h1, h1tls, h2std or h2", mode)
		}
	}
	type run struct {
		round int
		mode  string
		floor int
	}
	var runs []run
	for round := 1; round <= *rounds; round++ {
		for _, mode := range modes {
			for _, floor := range floorMiB {
				runs = append(runs, run{round, mode, floor})
			}
		}
	}
	var results []result
	for _, r := range runs {
		var res result
		if len(runs) == 1 || *single {
			res = runOne(h, r.mode, r.floor, *edgeM, *turns, max(*repeat, 1), *ramp, *timeout, *first, *rate, *tokens)
		} else {
			// A fresh server process per run: a run's garbage, goroutines
			// and pools must not slow down the next one's collections.
			res = runChild(r.mode, r.floor)
		}
		res.Round = r.round
		if *single {
			out, _ := json.Marshal(res)
			fmt.Println(string(out))
			return
		}
		summary := res
		summary.AddedMs = nil
		out, _ := json.MarshalIndent(summary, "", "  ")
		fmt.Println(string(out))
		results = append(results, res)
	}
	if *plotOut != "" {
		if err := writeTTFTPlot(*plotOut, results); err != nil {
			log.Fatal(err)
		}
	}
	if *jsonOut != "" {
		summaries := slices.Clone(results)
		for i := range summaries {
			summaries[i].AddedMs = nil
		}
		out, _ := json.MarshalIndent(summaries, "", "  ")
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

// markdown renders the runs side by side, each against the first, then,
// with several rounds, the median of each mode × floor.
func markdown(rs []result, args string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# bench/cmd/chat-bench %s\n\nMeasured %s UTC on %d CPUs (fake, clients and server share them; the fake's and the clients' GOGC: %s).\n\n",
		args, time.Now().UTC().Format("2006-01-02 15:04"), runtime.NumCPU(), rs[0].HarnessGOGC)
	b.WriteString("| round | upstream | server heap floor | completed | added TTFT p50 / p90 / p99 / max (ms) | request leg p99 (ms) | p99 vs first | token gap p99 / max (ms) | server GC cycles | server CPU s | CPU per token | upstream TCP connections | heap / turn | goroutines / turn | load avg |\n")
	b.WriteString("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, r := range rs {
		ratio := "1.00×"
		if rs[0].AddedTTFTp99Ms > 0 {
			ratio = fmt.Sprintf("%.2f×", r.AddedTTFTp99Ms/rs[0].AddedTTFTp99Ms)
		}
		fmt.Fprintf(&b, "| %d | %s | %s | %d/%d | %.1f / %.1f / %.1f / %.1f | %.1f | %s | %.0f / %.0f | %d | %.2f | %.1f µs | %d | %.1f KiB | %.1f | %s |\n",
			r.Round, r.Upstream, floorLabel(r.GCFloorMiB), r.Completed, r.Turns, r.AddedTTFTp50Ms, r.AddedTTFTp90Ms, r.AddedTTFTp99Ms, r.AddedTTFTMaxMs,
			r.RequestP99Ms, ratio, r.TokenGapP99Ms, r.TokenGapMaxMs, r.ServerGCCycles, r.ServerCPUSeconds, r.ServerCPUPerTokenUs, r.UpstreamConnections, r.HeapPerTurnKiB, r.GoroutinesPerTurn, r.LoadAverage)
	}
	if rs[len(rs)-1].Round < 2 {
		return b.String()
	}
	type key struct {
		up    string
		floor int
	}
	var order []key
	groups := map[key][]result{}
	for _, r := range rs {
		k := key{r.Upstream, r.GCFloorMiB}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	median := func(rs []result, f func(result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		return report.Median(v)
	}
	first := median(groups[order[0]], func(r result) float64 { return r.AddedTTFTp99Ms })
	b.WriteString("\nMedian over the rounds:\n\n| upstream | server heap floor | rounds | added TTFT p50 / p99 (ms) | p99 vs first | p99 of each round (ms) | server GC cycles | CPU per token |\n|---|---:|---:|---:|---:|---|---:|---:|\n")
	for _, k := range order {
		g := groups[k]
		p99 := median(g, func(r result) float64 { return r.AddedTTFTp99Ms })
		var each []string
		for _, r := range g {
			each = append(each, fmt.Sprintf("%.1f", r.AddedTTFTp99Ms))
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %.1f / %.1f | %.2f× | %s | %.0f | %.1f µs |\n", k.up, floorLabel(k.floor), len(g),
			median(g, func(r result) float64 { return r.AddedTTFTp50Ms }), p99, p99/first, strings.Join(each, ", "),
			median(g, func(r result) float64 { return float64(r.ServerGCCycles) }),
			median(g, func(r result) float64 { return r.ServerCPUPerTokenUs }))
	}
	return b.String()
}

func floorLabel(mib int) string {
	if mib == 0 {
		return "none"
	}
	return fmt.Sprintf("%d MiB", mib)
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

// runOne runs one mode with the server's heap floor in this process.
func runOne(h harness, mode string, floor int, edgeM bool, turns, repeat int, ramp, timeout, first time.Duration, rate float64, tokens int) result {
	// The floor is the server's (this process's), set as cmd/wsedge sets
	// GC_HEAP_FLOOR.
	restore := gcfloor.Set(uint64(floor) << 20)
	defer restore()
	f := startFakeProcess(h, first, rate, tokens, mode != "h1")
	m := newModel(f.url, f.ca, mode, turns)
	var res result
	if edgeM {
		res = runEdge(m, h, turns, repeat, ramp, timeout, first)
	} else {
		res = run(m, turns, ramp, timeout, first)
	}
	res.FakeCPUSeconds, res.UpstreamConnections = f.stop()
	res.Upstream, res.TokensPerTurn, res.RatePerSecond = mode, tokens, rate
	res.GCFloorMiB, res.HarnessGOGC = floor, h.gogc
	if res.Completed > 0 {
		res.ServerCPUPerTokenUs = res.ServerCPUSeconds * 1e6 / float64(res.Completed*tokens)
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		res.LoadAverage = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	return res
}

// runChild runs one mode and floor in a fresh process (this binary with
// -single and the same flags otherwise) and returns its result.
func runChild(mode string, floor int) result {
	self, err := os.Executable()
	if err != nil {
		log.Fatal(err)
	}
	args := []string{"-single", "-upstream", mode, "-compare", "", "-gc-floors", fmt.Sprint(floor), "-rounds", "1",
		"-json", "", "-md", "", "-plot", "", "-cpuprofile", "", "-memprofile", ""}
	flag.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "single", "upstream", "compare", "gc-floors", "rounds", "json", "md", "plot", "cpuprofile", "memprofile":
		default:
			args = append(args, "-"+f.Name+"="+f.Value.String())
		}
	})
	cmd := exec.Command(self, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		log.Fatalf("run %s, floor %d MiB: %v", mode, floor, err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var res result
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		log.Fatalf("run %s, floor %d MiB: result: %v", mode, floor, err)
	}
	return res
}

// harness is how the children (the fake and the clients) are started.
type harness struct {
	profiles string // directory for their CPU profiles; "" for none
	gogc     string // their GOGC; "" leaves the environment's
}

// command is this binary as the child name (fake, clients) with args; its
// stderr is ours.
func (h harness) command(self, name string, args ...string) *exec.Cmd {
	if h.profiles != "" {
		args = append([]string{"-cpuprofile", filepath.Join(h.profiles, name+".prof")}, args...)
	}
	cmd := exec.Command(self, args...)
	cmd.Stderr = os.Stderr
	if h.gogc != "" {
		cmd.Env = append(os.Environ(), "GOGC="+h.gogc)
	}
	return cmd
}

// gcCycles is the number of GC cycles this process has completed.
func gcCycles() uint32 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.NumGC
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

func startFakeProcess(h harness, first time.Duration, rate float64, tokens int, tls bool) fakeProc {
	self, err := os.Executable()
	if err != nil {
		log.Fatal(err)
	}
	cmd := h.command(self, "fake", "-fake", "-tls="+fmt.Sprint(tls), "-first", first.String(), "-rate", fmt.Sprint(rate), "-tokens", fmt.Sprint(tokens))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
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

	// AddedMs is every completed turn's added TTFT, for -plot; it travels
	// from a -single child and is left out of the files.
	AddedMs []float64 `json:"added_ms,omitempty"`
	// Upstream is the mode (h1, h1tls, h2); ServerCPUPerTokenUs is the
	// server's CPU over the run divided by the tokens delivered;
	// UpstreamConnections the TCP connections the fake accepted.
	Upstream            string  `json:"upstream"`
	TokensPerTurn       int     `json:"tokens_per_turn"`
	RatePerSecond       float64 `json:"tokens_per_second_per_turn"`
	ServerCPUPerTokenUs float64 `json:"server_cpu_us_per_token"`
	UpstreamConnections int64   `json:"upstream_tcp_connections"`
	// GCFloorMiB is the server's heap floor (GC_HEAP_FLOOR), ServerGCCycles
	// the collections the server ran while the turns did, HarnessGOGC the
	// fake's and the clients' GOGC, Round the pass of -rounds.
	GCFloorMiB int `json:"gc_floor_mib"`
	// Repeat is how many turns each socket ran one after the other.
	Repeat int `json:"turns_per_socket,omitempty"`
	// TokenGapP99Ms and TokenGapMaxMs are over the times between a turn's
	// consecutive tokens as the clients saw them (nominally 1/-rate s).
	TokenGapP99Ms  float64 `json:"token_gap_p99_ms,omitempty"`
	TokenGapMaxMs  float64 `json:"token_gap_max_ms,omitempty"`
	ServerGCCycles uint32  `json:"server_gc_cycles"`
	HarnessGOGC    string  `json:"harness_gogc"`
	Round          int     `json:"round"`
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
	gc0 := gcCycles()
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
		ServerCPUSeconds: selfCPU() - cpu0, ServerGCCycles: gcCycles() - gc0}
	var added, req []float64 // ms
	for _, s := range sinks {
		if s.failed.Load() || s.firstTok.Load() == 0 {
			res.Failed++
			continue
		}
		res.Completed++
		added = append(added, ms(time.Duration(s.firstTok.Load())-first))
		req = append(req, ms(time.Duration(s.arrived.Load())))
	}
	res.setTTFT(added, req)
	res.HeapPerTurnKiB, res.GoroutinesPerTurn = mem.perTurn(turns)
	return res
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// setTTFT sorts the completed turns' added times to first token and
// request legs (ms) and sets their percentiles; the added times are kept for
// -plot.
func (r *result) setTTFT(added, request []float64) {
	slices.Sort(added)
	slices.Sort(request)
	r.AddedMs = added
	if len(added) > 0 {
		r.AddedTTFTp50Ms, r.AddedTTFTp90Ms = report.Percentile(added, .5), report.Percentile(added, .9)
		r.AddedTTFTp99Ms, r.AddedTTFTMaxMs = report.Percentile(added, .99), added[len(added)-1]
	}
	if len(request) > 0 {
		r.RequestP50Ms, r.RequestP99Ms = report.Percentile(request, .5), report.Percentile(request, .99)
	}
}
