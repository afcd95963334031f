// Command wsedge-bench measures a wsedge server against the goroutine-per-
// connection baseline (bench/baseline) with the same session protocol.
//
// The driver starts each server itself (so it knows the pid for RSS and CPU),
// runs the scenarios idle, fanout, presence and churn, and writes JSON and a
// Markdown table with wsedge/baseline ratios. For idle it re-executes itself
// as client processes (role chosen by the WSEDGE_BENCH_ROLE variable) because
// one process can hold only ~20,000 sockets on this machine.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"github.com/wsedge/wsedge/bench/internal/proc"
	"github.com/wsedge/wsedge/bench/internal/report"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/wsedge/wsedge/bench/baseline"
	"github.com/wsedge/wsedge/bench/internal/centrifugo"
	"github.com/wsedge/wsedge/internal/testenv"
)

// roleEnv selects what a re-executed copy of this binary does.
const roleEnv = "WSEDGE_BENCH_ROLE"

func main() {
	os.Exit(dispatch())
}

// dispatch runs the role named in the environment, or the driver. It is
// shared with TestMain so that tests can re-execute the test binary.
func dispatch() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var err error
	switch role := os.Getenv(roleEnv); role {
	case "":
		err = runDriver(ctx, os.Args[1:], os.Stdout)
	case "baseline":
		err = runBaseline(ctx, os.Args[1:])
	case "version":
		fmt.Println("wsedge-bench (its baseline role)")
	case "idle-client":
		err = runIdleClient(ctx, os.Args[1:], os.Stdin, os.Stdout)
	default:
		err = fmt.Errorf("%s=%q: unknown role", roleEnv, role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "wsedge-bench:", err)
		return 1
	}
	return 0
}

// runBaseline serves the baseline on $ADDR/$ADMIN_ADDR, as wsedge does.
func runBaseline(ctx context.Context, _ []string) error {
	addr, admin := os.Getenv("ADDR"), os.Getenv("ADMIN_ADDR")
	if addr == "" || admin == "" {
		return fmt.Errorf("baseline role needs ADDR and ADMIN_ADDR")
	}
	return baseline.ListenAndServe(ctx, addr, admin, baseline.Options{}, slog.New(slog.NewTextHandler(os.Stderr, nil)))
}

type config struct {
	scenarios   []string
	serverCmd   string
	serverEnv   []string
	baselineCmd string
	targets     []string
	jsonPath    string
	mdPath      string
	logDir      string
	dialTimeout time.Duration
	gap         time.Duration

	idleConns       int
	idlePerProc     int
	idleSessionSize int
	idleSettle      time.Duration
	idleConcurrency int

	fanListeners  int
	fanBroadcasts int
	fanRate       float64
	fullBroadcast int
	fullWindow    int
	stormConns    int
	stormEach     int
	drainTimeout  time.Duration

	presenceMembers  []int
	presenceRequests int

	churnDuration time.Duration
	churnWorkers  int
	churnSources  int

	centrifugoCmd   string
	crossInstances  int
	crossListeners  int
	crossBroadcasts int
	crossRate       float64
	crossIdle       int
	title           string

	// runs counts scenario runs so that each uses its own range of source
	// addresses: the previous run's client ports may still be in TIME_WAIT.
	runs int
}

func (c *config) runSeq() int {
	c.runs++
	return c.runs % 80
}

func parseFlags(args []string) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("wsedge-bench", flag.ContinueOnError)
	scen := fs.String("scenarios", "idle,fanout,presence,churn", "comma-separated scenarios: idle, fanout, presence, churn, cross (instances sharing Redis; wsedge and centrifugo only)")
	peers := fs.Bool("peers", false, "the peer comparison: targets wsedge,centrifugo,baseline, scenarios idle,fanout,presence,churn,cross, presence at 1000,5000 members (explicit flags still win)")
	quick := fs.Bool("quick", false, "a smoke run at small sizes (under 2 minutes with -peers; explicit flags still win)")
	fs.StringVar(&c.centrifugoCmd, "centrifugo-cmd", "", "Centrifugo binary ("+centrifugo.Version+"); adds the target centrifugo")
	fs.IntVar(&c.crossInstances, "cross-instances", 3, "cross: instances sharing one Redis")
	fs.IntVar(&c.crossListeners, "cross-listeners", 300, "cross: members spread over the instances (the sender is on the first)")
	fs.IntVar(&c.crossBroadcasts, "cross-broadcasts", 1000, "cross: broadcasts sent")
	fs.Float64Var(&c.crossRate, "cross-rate", 200, "cross: broadcasts per second")
	fs.IntVar(&c.crossIdle, "cross-idle", 19000, "cross: idle hello'd sockets spread over the instances afterwards (0: none); RSS counts the instances and Redis")
	fs.StringVar(&c.serverCmd, "server-cmd", "", "wsedge command line (e.g. bin/wsedge); it gets ADDR, ADMIN_ADDR and -server-env; empty: baseline only")
	env := fs.String("server-env", "DEBUG=1", "comma-separated KEY=VALUE added to the wsedge environment")
	fs.StringVar(&c.baselineCmd, "baseline-cmd", "", "baseline command line taking ADDR/ADMIN_ADDR; empty: this binary in the baseline role")
	tg := fs.String("targets", "", "comma-separated targets to run: wsedge, baseline (default: wsedge,baseline, or baseline without -server-cmd)")
	fs.StringVar(&c.jsonPath, "json", "", "write results as JSON to this file")
	fs.StringVar(&c.mdPath, "md", "", "write a Markdown summary to this file (default: stdout)")
	fs.StringVar(&c.logDir, "log-dir", "", "directory for server logs (default: a temp dir)")
	fs.DurationVar(&c.dialTimeout, "dial-timeout", 10*time.Second, "connect+upgrade timeout per socket")
	fs.DurationVar(&c.gap, "gap", time.Second, "pause between phases so the previous one's closes are done")

	fs.IntVar(&c.idleConns, "idle-conns", 19000, "idle: hello'd sockets to hold open")
	fs.IntVar(&c.idlePerProc, "idle-per-proc", 9000, "idle: sockets per client process (fd limit is per process)")
	fs.IntVar(&c.idleSessionSize, "idle-session-size", 100, "idle: members per session")
	fs.DurationVar(&c.idleSettle, "idle-settle", 5*time.Second, "idle: wait after the last hello before reading RSS")
	fs.IntVar(&c.idleConcurrency, "idle-concurrency", 32, "idle: concurrent dials per client process")

	fs.IntVar(&c.fanListeners, "fanout-listeners", 1000, "fanout: hello'd members of the session (the sender is one of them)")
	fs.IntVar(&c.fanBroadcasts, "fanout-broadcasts", 100, "fanout (paced): broadcasts sent")
	fs.Float64Var(&c.fanRate, "fanout-rate", 100, "fanout (paced): broadcasts per second")
	fs.IntVar(&c.fullBroadcast, "fanout-full-broadcasts", 2000, "fanout (full speed): broadcasts sent")
	fs.IntVar(&c.fullWindow, "fanout-window", 16, "fanout (full speed): broadcasts in flight (not yet delivered to every member)")
	fs.IntVar(&c.stormConns, "storm-conns", 200, "fanout (storm): members, each one a sender")
	fs.IntVar(&c.stormEach, "storm-broadcasts", 10, "fanout (storm): broadcasts per member, all at once")
	fs.DurationVar(&c.drainTimeout, "drain-timeout", 5*time.Second, "fanout: give up waiting for deliveries after this long without progress")

	pm := fs.String("presence-members", "10,100,1000", "presence: session sizes to measure")
	fs.IntVar(&c.presenceRequests, "presence-requests", 200, "presence: sequential requests per size")

	fs.DurationVar(&c.churnDuration, "churn-duration", 5*time.Second, "churn: how long to connect+hello+close")
	fs.IntVar(&c.churnWorkers, "churn-workers", 64, "churn: concurrent connect loops")
	fs.IntVar(&c.churnSources, "churn-sources", 64, "churn: source addresses (127.<100+run>.x.y) to spread TIME_WAIT over")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	// preset overrides a default the command line did not set.
	preset := func(name, v string) {
		if !set[name] {
			_ = fs.Set(name, v)
		}
	}
	if *peers {
		preset("targets", "wsedge,centrifugo,baseline")
		preset("scenarios", "idle,fanout,presence,churn,cross")
		preset("presence-members", "1000,5000")
		// wsedge lists 1,000 members by default; Centrifugo lists all, so
		// both answer with every member.
		preset("server-env", "DEBUG=1,PRESENCE_MAX_MEMBERS=10000")
		c.title = "wsedge vs Centrifugo " + centrifugo.Version + " vs baseline"
	}
	if *quick {
		for k, v := range map[string]string{
			"idle-conns": "3000", "idle-per-proc": "1500", "idle-settle": "2s",
			"fanout-listeners": "200", "fanout-broadcasts": "50", "fanout-full-broadcasts": "300",
			"storm-conns": "50", "storm-broadcasts": "5", "presence-requests": "50",
			"churn-duration": "2s", "cross-listeners": "90", "cross-idle": "3000", "cross-broadcasts": "100", "cross-rate": "100", "gap": "300ms",
		} {
			preset(k, v)
		}
		if *peers {
			preset("presence-members", "100,500")
		}
	}
	c.scenarios = splitList(*scen)
	for _, s := range c.scenarios {
		if !slices.Contains([]string{"idle", "fanout", "presence", "churn", "cross"}, s) {
			return nil, fmt.Errorf("-scenarios: unknown scenario %q", s)
		}
	}
	c.serverEnv = splitList(*env)
	c.targets = splitList(*tg)
	if len(c.targets) == 0 {
		c.targets = []string{"baseline"}
		if c.serverCmd != "" {
			c.targets = []string{"wsedge", "baseline"}
		}
	}
	for _, t := range c.targets {
		switch {
		case t == "wsedge" && c.serverCmd == "":
			return nil, fmt.Errorf("-targets includes wsedge but -server-cmd is empty")
		case t == "centrifugo" && c.centrifugoCmd == "":
			return nil, fmt.Errorf("-targets includes centrifugo but -centrifugo-cmd is empty")
		case t != "wsedge" && t != "baseline" && t != "centrifugo":
			return nil, fmt.Errorf("-targets: unknown target %q", t)
		}
	}
	for _, s := range splitList(*pm) {
		var n int
		if _, err := fmt.Sscanf(s, "%d", &n); err != nil || n < 1 {
			return nil, fmt.Errorf("-presence-members: %q is not a positive number", s)
		}
		c.presenceMembers = append(c.presenceMembers, n)
	}
	if c.idlePerProc < 1 || c.idlePerProc > 19000 {
		return nil, fmt.Errorf("-idle-per-proc must be between 1 and 19000")
	}
	if c.crossInstances < 1 || c.crossListeners < c.crossInstances || c.crossRate <= 0 {
		return nil, fmt.Errorf("cross: instances ≥ 1, listeners ≥ instances and rate > 0 needed")
	}
	if c.fanListeners < 1 || c.stormConns < 1 || c.fullWindow < 1 || c.fanRate <= 0 {
		return nil, fmt.Errorf("fanout listeners, storm conns, window and rate must be positive")
	}
	return c, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// spec says how to start target name; redisURL (cross) joins the instance
// to a Redis shared with its siblings, instance numbers them (0: the only).
func (c *config) spec(name, redisURL string, instance int) (proc.Spec, error) {
	self, err := os.Executable()
	if err != nil {
		return proc.Spec{}, fmt.Errorf("find own binary: %w", err)
	}
	logName := name
	if instance > 0 {
		logName = fmt.Sprintf("%s-%d", name, instance)
	}
	switch name {
	case "wsedge":
		env := slices.Clone(c.serverEnv)
		if redisURL != "" {
			env = append(env, "REDIS_URL="+redisURL, "INSTANCE_ID="+logName)
		}
		return proc.Spec{Name: logName, Argv: strings.Fields(c.serverCmd), Env: env}, nil
	case "centrifugo":
		cfg, err := centrifugo.Config(centrifugo.Settings{RedisAddress: redisURL, APIKey: "bench-api-key-unused"})
		if err != nil {
			return proc.Spec{}, err
		}
		path := filepath.Join(c.logDir, logName+".json")
		if err := os.WriteFile(path, cfg, 0o600); err != nil {
			return proc.Spec{}, fmt.Errorf("centrifugo config: %w", err)
		}
		// /health and /metrics are internal endpoints: they answer on
		// the internal port, which takes the driver's admin address.
		return proc.Spec{Name: logName, Argv: []string{c.centrifugoCmd, "--config", path,
			"--http_server.address", "{host}", "--http_server.port", "{port}",
			"--http_server.internal_address", "{host}", "--http_server.internal_port", "{adminport}"},
			HealthPath: centrifugo.HealthPath, HealthOnAdmin: true}, nil
	default:
		if c.baselineCmd != "" {
			return proc.Spec{Name: logName, Argv: strings.Fields(c.baselineCmd)}, nil
		}
		return proc.Spec{Name: logName, Argv: []string{self}, Env: []string{roleEnv + "=baseline"}}, nil
	}
}

func runDriver(ctx context.Context, args []string, stdout *os.File) error {
	c, err := parseFlags(args)
	if err != nil {
		return err
	}
	if c.logDir == "" {
		if c.logDir, err = os.MkdirTemp("", "wsedge-bench-"); err != nil {
			return fmt.Errorf("log dir: %w", err)
		}
	}
	rep := &report.Report{
		GeneratedAt: time.Now(),
		Command:     "wsedge-bench " + strings.Join(args, " "),
		Machine:     report.DescribeMachine(),
		Targets:     c.targets,
		Title:       c.title,
		Versions:    map[string]string{},
		Settings:    map[string]string{},
	}
	for _, t := range c.targets {
		switch t {
		case "wsedge":
			rep.Versions[t] = versionOf(ctx, strings.Fields(c.serverCmd)[0])
			rep.Settings["wsedge environment"] = strings.Join(c.serverEnv, " ")
		case "centrifugo":
			rep.Versions[t] = versionOf(ctx, c.centrifugoCmd)
			cfg, err := centrifugo.Config(centrifugo.Settings{APIKey: "bench-api-key-unused"})
			if err != nil {
				return err
			}
			var compact bytes.Buffer
			if err := json.Compact(&compact, cfg); err != nil {
				return fmt.Errorf("centrifugo config: %w", err)
			}
			rep.Settings["centrifugo config (memory engine; cross: engine redis)"] = compact.String()
		}
	}
	// Each scenario runs against every target before the next scenario, on a
	// fresh server process, so one scenario's leftovers cannot skew another.
	for _, sc := range c.scenarios {
		for _, tn := range c.targets {
			if sc == "cross" && tn == "baseline" {
				continue // one process, no Redis
			}
			fmt.Fprintf(os.Stderr, "== %s on %s\n", sc, tn)
			rs, err := runScenario(ctx, c, tn, sc)
			if err != nil {
				return fmt.Errorf("%s on %s: %w", sc, tn, err)
			}
			rep.Results = append(rep.Results, rs...)
			for _, r := range rs {
				fmt.Fprintf(os.Stderr, "   %s/%s:", r.Scenario, r.Case)
				for _, m := range r.Metrics {
					fmt.Fprintf(os.Stderr, " %s=%s", m.Name, report.FmtNum(m.Value))
				}
				if r.Error != "" {
					fmt.Fprintf(os.Stderr, " ERROR=%s", r.Error)
				}
				fmt.Fprintln(os.Stderr)
			}
		}
	}
	rep.Machine.LoadEnd = report.LoadAvg()
	if c.jsonPath != "" {
		if err := rep.WriteJSON(c.jsonPath); err != nil {
			return err
		}
	}
	if c.mdPath != "" {
		if err := rep.WritePlots(c.mdPath); err != nil {
			return fmt.Errorf("plots: %w", err)
		}
		f, err := os.Create(c.mdPath)
		if err != nil {
			return fmt.Errorf("markdown: %w", err)
		}
		if err := rep.WriteMarkdown(f); err != nil {
			f.Close()
			return fmt.Errorf("markdown: %w", err)
		}
		return f.Close()
	}
	return rep.WriteMarkdown(stdout)
}

func runScenario(ctx context.Context, c *config, name, sc string) ([]report.Result, error) {
	if sc == "cross" {
		return runCross(ctx, c, name)
	}
	spec, err := c.spec(name, "", 0)
	if err != nil {
		return nil, err
	}
	pt, err := proc.Start(ctx, spec, c.logDir)
	if err != nil {
		return nil, err
	}
	defer pt.Stop()
	t := &server{Target: pt, proto: protocolFor(name)}
	switch sc {
	case "idle":
		return []report.Result{runIdle(ctx, c, name, fleet{servers: []*server{t}})}, nil
	case "fanout":
		return runFanout(ctx, c, t), nil
	case "presence":
		return runPresence(ctx, c, t), nil
	default:
		return []report.Result{runChurn(ctx, c, t)}, nil
	}
}

// runCross starts a Redis and c.crossInstances instances of target name on
// it, spreads c.crossListeners members over them and sends paced
// broadcasts from a member of the first: every delivery to a member of
// another instance went through Redis.
func runCross(ctx context.Context, c *config, name string) ([]report.Result, error) {
	dir, err := os.MkdirTemp(c.logDir, "redis-")
	if err != nil {
		return nil, fmt.Errorf("redis dir: %w", err)
	}
	rd, err := testenv.LaunchRedis(dir)
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	defer rd.Kill()
	var servers []*server
	defer func() {
		for _, s := range servers {
			s.Stop()
		}
	}()
	for i := 1; i <= c.crossInstances; i++ {
		spec, err := c.spec(name, rd.URL(), i)
		if err != nil {
			return nil, err
		}
		pt, err := proc.Start(ctx, spec, c.logDir)
		if err != nil {
			return nil, err
		}
		servers = append(servers, &server{Target: pt, proto: protocolFor(name)})
	}
	time.Sleep(c.gap)
	fc := fanCase{name: fmt.Sprintf("%d instances + Redis, %d listeners, %d broadcasts at %g/s", c.crossInstances, c.crossListeners, c.crossBroadcasts, c.crossRate),
		members: c.crossListeners, senders: 1, each: c.crossBroadcasts, rate: c.crossRate}
	r := runFanCase(ctx, c, name, servers, fc, "cross-0")
	r.Scenario = "cross"
	r.Params["instances"] = c.crossInstances
	r.Params["redis"] = "standalone"
	if cpu, err := redisCPU(rd); err == nil {
		r.Notes = append(r.Notes, fmt.Sprintf("Redis CPU over the whole run (start-up and joins included): %.2f s", cpu))
	}
	out := []report.Result{r}
	if c.crossIdle > 0 {
		// Idle sockets spread over the instances; memory and CPU are the
		// instances' and Redis's together.
		ic := *c
		ic.idleConns = c.crossIdle
		time.Sleep(c.gap)
		ir := runIdle(ctx, &ic, name, fleet{servers: servers, extra: []int{rd.PID()}})
		ir.Scenario = "cross"
		ir.Case = fmt.Sprintf("%d instances + Redis, %d idle conns (RSS of instances + Redis)", c.crossInstances, c.crossIdle)
		ir.Params["instances"] = c.crossInstances
		out = append(out, ir)
	}
	return out, nil
}

// redisCPU is used_cpu_sys+used_cpu_user from INFO cpu.
func redisCPU(r *testenv.Redis) (float64, error) {
	info, err := r.Command("INFO", "cpu")
	if err != nil {
		return 0, err
	}
	var sum float64
	for _, l := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(l), ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, fmt.Errorf("INFO cpu %s: %w", k, err)
			}
			sum += f
		}
	}
	return sum, nil
}

// versionOf runs "<bin> version" and returns its first line.
func versionOf(ctx context.Context, bin string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "version")
	// A server that is this binary (tests) answers in the version role
	// instead of running its driver or its tests again.
	cmd.Env = append(os.Environ(), roleEnv+"=version")
	out, err := cmd.Output()
	if err != nil {
		return fmt.Sprintf("unknown (%s version: %v)", bin, err)
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}
