// Command redis-bench measures wsedge's Redis scale-out: several wsedge
// processes share one Redis (standalone or a 3-master cluster, both started
// here on free loopback ports), and real WebSocket clients measure
//
//   - fanout: listeners split over the instances, one sender; deliveries,
//     loss, order, latency, and Redis commands per broadcast;
//   - idle: N hello'd idle connections; Redis commands per second per
//     instance and per idle connection per minute (INFO commandstats);
//   - presence: round trip of {"type":"presence"} in sessions of K members
//     spread over the instances;
//   - history: broadcast cost with SESSION_HISTORY_SIZE off and on, side by
//     side in one run (history.go).
//
// Usage:
//
//	go build -o bin/wsedge ./cmd/wsedge
//	go run ./bench/cmd/redis-bench -wsedge bin/wsedge -mode standalone -md bench/results/redis/standalone.md
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsedge/wsedge/bench/internal/report"
	"github.com/wsedge/wsedge/bench/internal/wsclient"
	"github.com/wsedge/wsedge/bench/plot"
	"github.com/wsedge/wsedge/internal/testenv"
)

type options struct {
	wsedge        string
	mode          string
	instances     int
	listeners     int
	broadcasts    int
	rate          int
	idleConns     int
	idleWindow    time.Duration
	presenceSizes string
	presenceReqs  int
	scenarios     string
	md, jsonOut   string
	hist          historyOptions
}

func main() {
	var o options
	flag.StringVar(&o.wsedge, "wsedge", "bin/wsedge", "wsedge binary")
	flag.StringVar(&o.mode, "mode", "standalone", "standalone or cluster")
	flag.IntVar(&o.instances, "instances", 3, "wsedge instances")
	flag.IntVar(&o.listeners, "listeners", 300, "fanout: listeners (split over instances)")
	flag.IntVar(&o.broadcasts, "broadcasts", 1000, "fanout: broadcasts")
	flag.IntVar(&o.rate, "rate", 200, "fanout: broadcasts per second")
	flag.IntVar(&o.idleConns, "idle-conns", 3000, "idle: connections (split over instances)")
	flag.DurationVar(&o.idleWindow, "idle-window", time.Minute, "idle: measurement window")
	flag.StringVar(&o.presenceSizes, "presence-members", "1000,5000", "presence: session sizes")
	flag.IntVar(&o.presenceReqs, "presence-requests", 200, "presence: requests per size")
	flag.StringVar(&o.scenarios, "scenarios", "fanout,idle,presence", "scenarios to run")
	flag.IntVar(&o.hist.instances, "history-instances", 2, "history: wsedge instances per mode")
	flag.IntVar(&o.hist.sessions, "history-sessions", 50, "history: sessions")
	flag.IntVar(&o.hist.listeners, "history-listeners", 4, "history: listeners per session (plus its sender)")
	flag.IntVar(&o.hist.broadcasts, "history-broadcasts", 10000, "history: broadcasts per mode")
	flag.IntVar(&o.hist.rate, "history-rate", 1000, "history: broadcasts per second")
	flag.IntVar(&o.hist.size, "history-size", 100, "history: SESSION_HISTORY_SIZE when on")
	flag.IntVar(&o.hist.idle, "history-idle", 5000, "history: idle sockets for the memory per socket")
	flag.StringVar(&o.md, "md", "", "write a Markdown summary here")
	flag.StringVar(&o.jsonOut, "json", "", "write JSON results here")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "redis-bench:", err)
		os.Exit(1)
	}
}

type results struct {
	Mode      string           `json:"mode"`
	Instances int              `json:"instances"`
	Fanout    *fanoutResult    `json:"fanout"`
	Idle      *idleResult      `json:"idle"`
	Presence  []presenceResult `json:"presence"`
	History   *historyResult   `json:"history,omitempty"`
	At        string           `json:"at"`
}

func run(o options) error {
	want := func(s string) bool { return slices.Contains(strings.Split(o.scenarios, ","), s) }
	dir, err := os.MkdirTemp("", "redis-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	rd, err := startRedis(dir, o.mode)
	if err != nil {
		return err
	}
	defer rd.stop()
	var ins []*instance
	defer func() {
		for _, in := range ins {
			in.stop()
		}
	}()
	for i := range o.instances {
		if !want("fanout") && !want("idle") && !want("presence") {
			break // the history scenario starts its own
		}
		in, err := startInstance(o.wsedge, dir, fmt.Sprintf("bench%d", i), rd.url)
		if err != nil {
			return err
		}
		ins = append(ins, in)
	}
	res := results{Mode: o.mode, Instances: o.instances, At: time.Now().UTC().Format(time.RFC3339)}
	if want("fanout") {
		fmt.Fprintf(os.Stderr, "fanout: %d listeners over %d instances, %d broadcasts at %d/s\n", o.listeners, len(ins), o.broadcasts, o.rate)
		if res.Fanout, err = fanout(o, rd, ins); err != nil {
			return fmt.Errorf("fanout: %w", err)
		}
	}
	if want("idle") {
		fmt.Fprintf(os.Stderr, "idle: %d connections, %s window\n", o.idleConns, o.idleWindow)
		if res.Idle, err = idle(o, rd, ins); err != nil {
			return fmt.Errorf("idle: %w", err)
		}
	}
	for _, f := range strings.Split(o.presenceSizes, ",") {
		if !want("presence") {
			break
		}
		k, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "presence: %d members\n", k)
		p, err := presenceBench(o, ins, k)
		if err != nil {
			return fmt.Errorf("presence %d: %w", k, err)
		}
		res.Presence = append(res.Presence, p)
	}
	if want("history") {
		fmt.Fprintf(os.Stderr, "history: %d sessions × %d listeners, %d broadcasts at %d/s, off vs size %d\n",
			o.hist.sessions, o.hist.listeners, o.hist.broadcasts, o.hist.rate, o.hist.size)
		if res.History, err = historyBench(o, dir, rd); err != nil {
			return fmt.Errorf("history: %w", err)
		}
	}
	b, _ := json.MarshalIndent(res, "", "  ")
	if o.jsonOut != "" {
		if err := os.WriteFile(o.jsonOut, b, 0o644); err != nil {
			return err
		}
	}
	md := markdown(res)
	if o.md != "" {
		links, err := writePlots(o.md, res)
		if err != nil {
			return err
		}
		md += links
	}
	fmt.Print(md)
	if o.md != "" {
		return os.WriteFile(o.md, []byte(md), 0o644)
	}
	return nil
}

// ---- Redis ----

type redisDeploy struct {
	url   string
	addrs []string
	nodes []*testenv.Redis
}

// startRedis starts one standalone Redis or a 3-master Cluster (the
// error-returning core of internal/testenv).
func startRedis(dir, mode string) (*redisDeploy, error) {
	d := &redisDeploy{}
	switch mode {
	case "standalone":
		r, err := testenv.LaunchRedis(dir)
		if err != nil {
			return nil, fmt.Errorf("redis: %w", err)
		}
		d.nodes, d.addrs, d.url = []*testenv.Redis{r}, []string{r.Addr}, r.URL()
	case "cluster":
		n := 0
		c, err := testenv.LaunchRedisCluster(3, func() string {
			n++
			nd := filepath.Join(dir, "redis"+strconv.Itoa(n))
			_ = os.MkdirAll(nd, 0o755)
			return nd
		})
		d.nodes, d.addrs = c.Nodes, c.Addrs
		if err != nil {
			d.stop()
			return nil, fmt.Errorf("redis cluster: %w", err)
		}
		d.url = c.URL()
	default:
		return nil, fmt.Errorf("-mode %q: want standalone or cluster", mode)
	}
	return d, nil
}

func (d *redisDeploy) stop() {
	for _, r := range d.nodes {
		r.Kill()
	}
}

// calls sums INFO commandstats over every node, per command.
func (d *redisDeploy) calls() (map[string]int, error) {
	out := map[string]int{}
	for _, a := range d.addrs {
		info, err := redisCmd(a, "INFO", "commandstats")
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(info, "\n") {
			name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
			if !ok {
				continue
			}
			v, _, _ := strings.Cut(rest, ",")
			n, _ := strconv.Atoi(v)
			out[strings.TrimPrefix(name, "cmdstat_")] += n
		}
	}
	delete(out, "info") // our own measuring
	return out, nil
}

func diff(a, b map[string]int) (map[string]int, int) {
	out := map[string]int{}
	total := 0
	for k, v := range b {
		if d := v - a[k]; d != 0 {
			out[k] = d
			total += d
		}
	}
	return out, total
}

func redisCmd(addr string, args ...string) (string, error) {
	return testenv.RedisCommand(addr, args...)
}

// ---- wsedge ----

type instance struct {
	name, addr string
	admin      string // from the log's "admin listening" line
	cmd        *exec.Cmd
}

var adminRe = regexp.MustCompile(`admin listening.*?addr["=:]+"?([0-9.]+:[0-9]+)`)

// presenceServerTime sums wsedge_presence_query_seconds (sum, count) over
// the instances: the time the server spends in presence.Store.Members.
func presenceServerTime(ins []*instance) (sum float64, count int) {
	for _, in := range ins {
		if in.admin == "" {
			continue
		}
		resp, err := http.Get("http://" + in.admin + "/metrics")
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) != 2 {
				continue
			}
			v, _ := strconv.ParseFloat(f[1], 64)
			switch f[0] {
			case "wsedge_presence_query_seconds_sum":
				sum += v
			case "wsedge_presence_query_seconds_count":
				count += int(v)
			}
		}
	}
	return sum, count
}

func startInstance(bin, dir, name, url string, extraEnv ...string) (*instance, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "ADDR="+addr, "ADMIN_ADDR=127.0.0.1:0", "DEBUG=1", "INSTANCE_ID="+name,
		"REDIS_URL="+url, "LOG_LEVEL=info", "MAX_CONNECTIONS=100000", "PING_INTERVAL=10m", "PONG_TIMEOUT=10m")
	cmd.Env = append(cmd.Env, extraEnv...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	in := &instance{name: name, addr: addr, cmd: cmd}
	err = waitFor(15*time.Second, func() bool {
		resp, err := http.Get("http://" + addr + "/health/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	if err != nil {
		in.stop()
		return nil, fmt.Errorf("%s did not become healthy (log %s)", name, logf.Name())
	}
	if b, err := os.ReadFile(logf.Name()); err == nil {
		if m := adminRe.FindSubmatch(b); m != nil {
			in.admin = string(m[1])
		}
	}
	return in, nil
}

func (in *instance) stop() {
	_ = in.cmd.Process.Kill()
	_ = in.cmd.Wait()
}

// ---- clients ----

// client is one hello'd member (the benchmarks' shared WebSocket client).
type client struct{ *wsclient.Client }

func dial(in *instance, session string) (*client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	wc, err := wsclient.Dial(ctx, "ws://"+in.addr+"/ws/session/"+session+"/", nil, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c := &client{wc}
	if _, err := c.read(); err != nil { // connected
		c.Conn().Close()
		return nil, err
	}
	if err := c.send(`{"type":"hello","user_type":"bench","client_type":"web"}`); err != nil {
		c.Conn().Close()
		return nil, err
	}
	return c, nil
}

func (c *client) send(s string) error { return c.WriteText([]byte(s)) }

// read returns the next text message, valid until the next read. The
// client reads a frame's payload in one go into a buffer of the announced
// length (a growing buffer made a 600 KB presence answer cost the client
// dozens of small reads, which the latency would then include).
func (c *client) read() ([]byte, error) { return c.NextText(0) }

func dialMany(ins []*instance, session string, n int) ([]*client, error) {
	out := make([]*client, n)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	sem := make(chan struct{}, 64)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := dial(ins[i%len(ins)], session)
			if err != nil {
				firstErr.CompareAndSwap(nil, err)
				return
			}
			out[i] = c
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		closeAll(out)
		return nil, err
	}
	return out, nil
}

func closeAll(cs []*client) {
	for _, c := range cs {
		if c != nil {
			c.Conn().Close()
		}
	}
}

// presenceCount asks c for presence and returns the count.
func presenceCount(c *client) (int, error) {
	if err := c.send(`{"type":"presence"}`); err != nil {
		return 0, err
	}
	for {
		b, err := c.read()
		if err != nil {
			return 0, err
		}
		// Look only at the head of the frame: decoding a 5,000-member
		// answer in the client would dominate what is measured. The
		// server writes type, session_id and count first.
		head := string(b[:min(len(b), 300)])
		switch {
		case strings.HasPrefix(head, `{"type":"presence"`):
			_, rest, ok := strings.Cut(head, `"count":`)
			if !ok {
				return 0, fmt.Errorf("presence frame without count: %.100s", head)
			}
			end := strings.IndexAny(rest, ",}")
			if end < 0 {
				return 0, fmt.Errorf("presence frame: %.100s", head)
			}
			return strconv.Atoi(rest[:end])
		case strings.HasPrefix(head, `{"type":"error"`):
			return 0, errors.New(head)
		}
	}
}

func waitPresence(c *client, want int) error {
	return waitFor(60*time.Second, func() bool { n, err := presenceCount(c); return err == nil && n == want })
}

// ---- fanout ----

type fanoutResult struct {
	Listeners          int     `json:"listeners"`
	Broadcasts         int     `json:"broadcasts"`
	Rate               int     `json:"rate"`
	Deliveries         int     `json:"deliveries"`
	Lost               int     `json:"lost"`
	OutOfOrder         int     `json:"out_of_order"`
	LocalP50Ms         float64 `json:"local_p50_ms"`
	LocalP99Ms         float64 `json:"local_p99_ms"`
	RemoteP50Ms        float64 `json:"remote_p50_ms"`
	RemoteP99Ms        float64 `json:"remote_p99_ms"`
	RemoteMaxMs        float64 `json:"remote_max_ms"`
	PublishPerBcast    float64 `json:"redis_publish_per_broadcast"`
	CommandsPerBcast   float64 `json:"redis_commands_per_broadcast"`
	RedisCommandsPhase map[string]int
	// Raw curves for the plots: latency CDFs (local and remote listeners)
	// and deliveries per second while broadcasting.
	LatencyCDF         []plot.Series `json:"latency_cdf,omitempty"`
	DeliveriesOverTime plot.Series   `json:"deliveries_over_time"`
}

func fanout(o options, rd *redisDeploy, ins []*instance) (*fanoutResult, error) {
	session := "bench-fanout"
	cs, err := dialMany(ins, session, o.listeners)
	if err != nil {
		return nil, err
	}
	defer closeAll(cs)
	if err := waitPresence(cs[0], len(cs)); err != nil {
		return nil, fmt.Errorf("presence never reached %d: %w", len(cs), err)
	}
	// Warm-up until every listener hears the sender (subscriptions live).
	sender := cs[0]
	type rec struct {
		seq int
		lat time.Duration
	}
	got := make([][]rec, len(cs))
	var ready, delivered atomic.Int64
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			warm := false
			for {
				b, err := c.read()
				if err != nil {
					return
				}
				now := time.Now().UnixNano()
				var f struct {
					Type string `json:"type"`
					Msg  string `json:"msg"`
				}
				if json.Unmarshal(b, &f) != nil || f.Type != "session_message" {
					continue
				}
				parts := strings.Split(f.Msg, ":")
				if len(parts) != 3 {
					continue
				}
				if parts[0] == "warm" {
					if !warm {
						warm = true
						ready.Add(1)
					}
					continue
				}
				seq, _ := strconv.Atoi(parts[1])
				sent, _ := strconv.ParseInt(parts[2], 10, 64)
				got[i] = append(got[i], rec{seq: seq, lat: time.Duration(now - sent)})
				delivered.Add(1)
				if seq == o.broadcasts-1 {
					return
				}
			}
		}()
	}
	if err := waitFor(30*time.Second, func() bool {
		_ = sender.send(fmt.Sprintf(`{"type":"broadcast","msg":"warm:0:%d"}`, time.Now().UnixNano()))
		time.Sleep(50 * time.Millisecond)
		return ready.Load() == int64(len(cs))
	}); err != nil {
		return nil, fmt.Errorf("warm-up: %d of %d listeners ready", ready.Load(), len(cs))
	}
	time.Sleep(200 * time.Millisecond)
	before, err := rd.calls()
	if err != nil {
		return nil, err
	}
	recorder := plot.Record(&plot.Progress{W: os.Stderr, What: "fanout deliveries"}, delivered.Load, int64(len(cs)*o.broadcasts))
	tick := time.NewTicker(time.Second / time.Duration(o.rate))
	for seq := range o.broadcasts {
		<-tick.C
		if err := sender.send(fmt.Sprintf(`{"type":"broadcast","msg":"b:%d:%d"}`, seq, time.Now().UnixNano())); err != nil {
			return nil, err
		}
	}
	tick.Stop()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		closeAll(cs) // stragglers count as lost
		<-done
	}
	overTime := recorder.Stop()
	after, err := rd.calls()
	if err != nil {
		return nil, err
	}
	perCmd, total := diff(before, after)
	r := &fanoutResult{Listeners: len(cs), Broadcasts: o.broadcasts, Rate: o.rate, RedisCommandsPhase: perCmd, DeliveriesOverTime: overTime}
	r.DeliveriesOverTime.Name = "deliveries"
	r.PublishPerBcast = float64(perCmd["publish"]+perCmd["spublish"]) / float64(o.broadcasts)
	r.CommandsPerBcast = float64(total) / float64(o.broadcasts)
	var local, remote []time.Duration
	for i, rs := range got {
		r.Deliveries += len(rs)
		for j, x := range rs {
			if j > 0 && x.seq <= rs[j-1].seq {
				r.OutOfOrder++
			}
			if i%len(ins) == 0 {
				local = append(local, x.lat)
			} else {
				remote = append(remote, x.lat)
			}
		}
	}
	r.Lost = len(cs)*o.broadcasts - r.Deliveries
	r.LocalP50Ms, r.LocalP99Ms, _ = pct(local)
	r.RemoteP50Ms, r.RemoteP99Ms, r.RemoteMaxMs = pct(remote)
	r.LatencyCDF = []plot.Series{plot.CDF("same instance as sender", millis(local), 300), plot.CDF("other instances (via Redis)", millis(remote), 300)}
	return r, nil
}

func pct(ds []time.Duration) (p50, p99, maxv float64) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	slices.Sort(ds)
	ns := make([]int64, len(ds))
	for i, d := range ds {
		ns[i] = int64(d)
	}
	ms := func(v int64) float64 { return float64(v) / 1e6 }
	return ms(report.Percentile(ns, 0.50)), ms(report.Percentile(ns, 0.99)), ms(ns[len(ns)-1])
}

// ---- idle ----

type idleResult struct {
	Connections          int            `json:"connections"`
	WindowS              float64        `json:"window_s"`
	Commands             map[string]int `json:"commands"`
	PerSecond            float64        `json:"commands_per_s"`
	PerInstancePerSecond float64        `json:"commands_per_instance_per_s"`
	PerConnPerMinute     float64        `json:"commands_per_idle_conn_per_min"`
	RedisClients         int            `json:"redis_connected_clients"`
}

func idle(o options, rd *redisDeploy, ins []*instance) (*idleResult, error) {
	var all []*client
	defer func() { closeAll(all) }()
	const per = 100
	for s := 0; s*per < o.idleConns; s++ {
		n := min(per, o.idleConns-s*per)
		cs, err := dialMany(ins, "bench-idle-"+strconv.Itoa(s), n)
		if err != nil {
			return nil, err
		}
		all = append(all, cs...)
	}
	if err := waitPresence(all[0], min(per, o.idleConns)); err != nil {
		return nil, err
	}
	time.Sleep(5 * time.Second) // let joins settle
	before, err := rd.calls()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	time.Sleep(o.idleWindow)
	after, err := rd.calls()
	if err != nil {
		return nil, err
	}
	el := time.Since(start).Seconds()
	perCmd, total := diff(before, after)
	r := &idleResult{Connections: len(all), WindowS: el, Commands: perCmd}
	r.PerSecond = float64(total) / el
	r.PerInstancePerSecond = r.PerSecond / float64(len(ins))
	r.PerConnPerMinute = float64(total) / el * 60 / float64(len(all))
	for _, a := range rd.addrs {
		info, _ := redisCmd(a, "INFO", "clients")
		if _, rest, ok := strings.Cut(info, "connected_clients:"); ok {
			v, _, _ := strings.Cut(rest, "\r")
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			r.RedisClients += n
		}
	}
	return r, nil
}

// ---- presence ----

type presenceResult struct {
	Members  int     `json:"members"`
	Requests int     `json:"requests"`
	P50Ms    float64 `json:"p50_ms"`
	P99Ms    float64 `json:"p99_ms"`
	MaxMs    float64 `json:"max_ms"`
	// StoreMeanMs is the server's mean time in presence.Store.Members
	// (wsedge_presence_query_seconds), without JSON encoding and I/O.
	StoreMeanMs float64 `json:"store_mean_ms"`
}

func presenceBench(o options, ins []*instance, k int) (presenceResult, error) {
	session := "bench-presence-" + strconv.Itoa(k)
	cs, err := dialMany(ins, session, k)
	if err != nil {
		return presenceResult{}, err
	}
	defer closeAll(cs)
	asker := cs[1%len(cs)]
	if err := waitPresence(asker, k); err != nil {
		return presenceResult{}, fmt.Errorf("presence never reached %d", k)
	}
	sum0, n0 := presenceServerTime(ins)
	var lat []time.Duration
	for range o.presenceReqs {
		start := time.Now()
		n, err := presenceCount(asker)
		if err != nil {
			return presenceResult{}, err
		}
		if n != k {
			return presenceResult{}, fmt.Errorf("presence count %d, want %d", n, k)
		}
		lat = append(lat, time.Since(start))
	}
	r := presenceResult{Members: k, Requests: o.presenceReqs}
	r.P50Ms, r.P99Ms, r.MaxMs = pct(lat)
	if sum1, n1 := presenceServerTime(ins); n1 > n0 {
		r.StoreMeanMs = (sum1 - sum0) / float64(n1-n0) * 1000
	}
	return r, nil
}

func waitFor(d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

func markdown(r results) string {
	var b strings.Builder
	fmt.Fprintf(&b, "### Redis scale-out, %s Redis, %d wsedge instances (%s)\n\n", r.Mode, r.Instances, r.At)
	if f := r.Fanout; f != nil {
		fmt.Fprintf(&b, "**Fan-out**: %d listeners split over the instances, one sender, %d broadcasts at %d/s.\n\n", f.Listeners, f.Broadcasts, f.Rate)
		b.WriteString("| deliveries | lost | out of order | local p50 / p99 ms | remote p50 / p99 / max ms | Redis PUBLISH per broadcast | Redis commands per broadcast |\n|---|---|---|---|---|---|---|\n")
		fmt.Fprintf(&b, "| %d | %d | %d | %.2f / %.2f | %.2f / %.2f / %.2f | %.3f | %.3f |\n\n", f.Deliveries, f.Lost, f.OutOfOrder,
			f.LocalP50Ms, f.LocalP99Ms, f.RemoteP50Ms, f.RemoteP99Ms, f.RemoteMaxMs, f.PublishPerBcast, f.CommandsPerBcast)
	}
	if i := r.Idle; i != nil {
		fmt.Fprintf(&b, "**Idle**: %d hello'd connections, %.0f s window (INFO commandstats, all nodes, includes client PINGs).\n\n", i.Connections, i.WindowS)
		b.WriteString("| commands/s total | commands/s per instance | commands per idle connection per minute | Redis connections | commands in window |\n|---|---|---|---|---|\n")
		keys := make([]string, 0, len(i.Commands))
		for k := range i.Commands {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s %d", k, i.Commands[k]))
		}
		fmt.Fprintf(&b, "| %.3f | %.3f | %.5f | %d | %s |\n\n", i.PerSecond, i.PerInstancePerSecond, i.PerConnPerMinute, i.RedisClients, strings.Join(parts, ", "))
	}
	if len(r.Presence) > 0 {
		b.WriteString("**Presence** round trip over WebSocket (members spread over the instances, sequential requests; the last column is the server's mean time in `Members`, from `wsedge_presence_query_seconds`):\n\n| members | requests | p50 ms | p99 ms | max ms | server Members mean ms |\n|---|---|---|---|---|---|\n")
		for _, p := range r.Presence {
			fmt.Fprintf(&b, "| %d | %d | %.2f | %.2f | %.2f | %.2f |\n", p.Members, p.Requests, p.P50Ms, p.P99Ms, p.MaxMs, p.StoreMeanMs)
		}
		b.WriteString("\n")
	}
	if r.History != nil {
		b.WriteString(historyMarkdown(r.History))
	}
	return b.String()
}
