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
	"context"
	"flag"
	"fmt"
	"github.com/wsedge/wsedge/bench/internal/proc"
	"github.com/wsedge/wsedge/bench/internal/report"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/wsedge/wsedge/bench/baseline"
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
	scen := fs.String("scenarios", "idle,fanout,presence,churn", "comma-separated scenarios: idle, fanout, presence, churn")
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
	c.scenarios = splitList(*scen)
	for _, s := range c.scenarios {
		if !slices.Contains([]string{"idle", "fanout", "presence", "churn"}, s) {
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
		case t != "wsedge" && t != "baseline":
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

func (c *config) spec(name string) (proc.Spec, error) {
	self, err := os.Executable()
	if err != nil {
		return proc.Spec{}, fmt.Errorf("find own binary: %w", err)
	}
	switch name {
	case "wsedge":
		return proc.Spec{Name: name, Argv: strings.Fields(c.serverCmd), Env: c.serverEnv}, nil
	default:
		if c.baselineCmd != "" {
			return proc.Spec{Name: name, Argv: strings.Fields(c.baselineCmd)}, nil
		}
		return proc.Spec{Name: name, Argv: []string{self}, Env: []string{roleEnv + "=baseline"}}, nil
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
	}
	// Each scenario runs against every target before the next scenario, on a
	// fresh server process, so one scenario's leftovers cannot skew another.
	for _, sc := range c.scenarios {
		for _, tn := range c.targets {
			spec, err := c.spec(tn)
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "== %s on %s\n", sc, tn)
			rs, err := runScenario(ctx, c, spec, sc)
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

func runScenario(ctx context.Context, c *config, spec proc.Spec, sc string) ([]report.Result, error) {
	t, err := proc.Start(ctx, spec, c.logDir)
	if err != nil {
		return nil, err
	}
	defer t.Stop()
	switch sc {
	case "idle":
		return []report.Result{runIdle(ctx, c, t)}, nil
	case "fanout":
		return runFanout(ctx, c, t), nil
	case "presence":
		return runPresence(ctx, c, t), nil
	default:
		return []report.Result{runChurn(ctx, c, t)}, nil
	}
}
