// Command wsedge is the WebSocket edge server. Configuration comes from flags
// and environment variables (wsedge -h lists them); it is parsed here, once,
// and handed to the packages as typed structs.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/wsedge/wsedge/edge"
	"github.com/wsedge/wsedge/edge/broker"
	"github.com/wsedge/wsedge/edge/presence"
	"github.com/wsedge/wsedge/internal/gcfloor"
	"github.com/wsedge/wsedge/internal/jointoken"
	"github.com/wsedge/wsedge/internal/version"
)

func main() {
	err := run(os.Args[1:], os.LookupEnv, os.Stdout)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		// -h printed the usage: asking for help is not a failure.
	case errors.As(err, new(usageError)):
		fmt.Fprintln(os.Stderr, "wsedge:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "wsedge:", err)
		os.Exit(1)
	}
}

// usageError is a command line that does not parse (exit status 2).
type usageError struct{ error }

// run is the composition root: settings, then the pieces, then serve until
// a signal.
func run(args []string, lookup env, stdout io.Writer) error {
	cfg, log, err := configure(args, lookup, stdout)
	if err != nil || log == nil {
		return err // log == nil: -version printed, nothing to run
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	a, err := assemble(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer a.close()
	return a.serve(ctx, stop)
}

// configure parses the command line, the .env file and the environment once
// into typed configuration, and sets up logging and the scheduler. A nil
// logger with a nil error means the command was answered (-version).
func configure(args []string, lookup env, stdout io.Writer) (config, *slog.Logger, error) {
	e, err := parseFlags(args, lookup)
	switch {
	case errors.Is(err, errVersion):
		v := version.Get()
		_, err := fmt.Fprintf(stdout, "wsedge %s\nrevision %s\n%s\n", v.Version, v.Revision, v.GoVersion)
		return config{}, nil, err
	case errors.Is(err, flag.ErrHelp):
		return config{}, nil, err
	case err != nil:
		return config{}, nil, usageError{err}
	}
	// The runtime read GOMAXPROCS at start, before the .env file.
	_, gomaxprocsSet := lookup("GOMAXPROCS")
	envFile, err := loadEnvFile(e)
	if err != nil {
		return config{}, nil, err
	}
	cfg, err := loadConfig(e)
	if err != nil {
		return config{}, nil, fmt.Errorf("configuration:\n%w", err)
	}
	var handler slog.Handler = slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel})
	if cfg.LogJSON {
		handler = slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel})
	}
	log := slog.New(handler).With("instance_id", cfg.Edge.InstanceID)
	v := version.Get()
	log.Info("wsedge starting", "version", v.Version, "revision", v.Revision, "go", v.GoVersion, "env_file", envFile)
	cfg.warnings(log)

	// gnet loops block in epoll_wait as ordinary syscalls and keep their P
	// until sysmon retakes it, which can take up to 10 ms when the process is
	// quiet: with GOMAXPROCS equal to the loops, goroutines woken meanwhile
	// (Redis I/O, chat workers, presence queries) wait that long. One P per
	// loop on top of one per CPU keeps the CPUs available to them.
	if !gomaxprocsSet {
		runtime.GOMAXPROCS(runtime.NumCPU() + cfg.Edge.EventLoops)
	}
	log.Info("scheduler", "gomaxprocs", runtime.GOMAXPROCS(0), "event_loops", cfg.Edge.EventLoops)
	if floor := heapFloor(cfg.GCHeapFloor, debug.SetMemoryLimit(-1)); floor > 0 {
		gcfloor.Set(uint64(floor))
		if floor < int64(cfg.GCHeapFloor) {
			log.Warn("GC_HEAP_FLOOR lowered to half of GOMEMLIMIT", "configured", cfg.GCHeapFloor, "floor", floor)
		}
		log.Info("garbage collector", "heap_floor_bytes", floor)
	}
	return cfg, log, nil
}

// heapFloor is the GC heap floor to apply: floor bytes, at most half of the
// runtime's memory limit (GOMEMLIMIT; math.MaxInt64 when unset) so that the
// garbage the floor lets pile up never pushes the process to the limit.
func heapFloor(floor int, memLimit int64) int64 {
	return min(int64(floor), memLimit/2)
}

// app is the assembled server: the edge, its admin listener, and what must
// be closed when it stops, in reverse order of opening.
type app struct {
	cfg       config
	log       *slog.Logger
	srv       *edge.Server
	admin     *edge.Admin
	closeChat func(context.Context) error // nil once the chat has been closed
	closers   []func()
}

// assemble builds the pieces from cfg: metrics, broker and presence (memory
// or Redis), join tokens, chat, the edge server and the admin listener.
func assemble(ctx context.Context, cfg config, log *slog.Logger) (a *app, err error) {
	a = &app{cfg: cfg, log: log}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		edge.NewBuildInfo(version.Get()))

	var (
		b broker.Broker
		p presence.Store
	)
	if cfg.Redis.URL != "" {
		r, err := newRedisBackends(ctx, cfg.Redis, cfg.Edge.InstanceID, log, reg)
		if err != nil {
			return a, err
		}
		b, p = r.broker, r.presence
		a.closers = append(a.closers, func() {
			if err := r.Close(); err != nil {
				log.Warn("redis close", "err", err)
			}
		})
	} else {
		b, p = broker.NewMemoryHistory(cfg.History), presence.NewMemory()
		log.Info("embedded mode: in-memory broker and presence (set REDIS_URL to scale out)")
	}

	// Chat events reach /ws/session/<thread_id>/ listeners through the broker,
	// like any broadcast; mirroring is best effort.
	mirror := mirrorFunc(func(threadID string, payload []byte) {
		if err := b.Publish(threadID, payload); err != nil {
			log.Debug("chat mirror", "thread_id", threadID, "err", err)
		}
	})
	var tokens *jointoken.Verifier
	if len(cfg.Tokens.Secret) > 0 || len(cfg.Tokens.PublicKeyPEM) > 0 {
		if tokens, err = jointoken.New(cfg.Tokens); err != nil {
			return a, fmt.Errorf("join tokens: %w", err)
		}
		log.Info("join tokens required on /ws/session/")
	}
	cfg.Chat.API.Tokens = tokens
	svc, api, closeChat, err := newChat(ctx, cfg.Chat, mirror, log, reg)
	if err != nil {
		return a, err
	}
	a.closeChat = closeChat

	// With SESSION_HISTORY_SIZE set, both brokers keep history.
	var hist broker.History
	if h, ok := b.(interface{ History() broker.History }); ok {
		hist = h.History()
	}
	if hist != nil {
		log.Info("session history on", "size", cfg.History.Size, "ttl", cfg.History.TTL)
	}
	a.srv, err = edge.New(cfg.Edge, edge.Deps{
		Broker: b, Presence: p, Logger: log, Registry: reg, API: api, History: hist, Tokens: tokens,
		OpenChat: func(id string, sink edge.ChatSink) edge.ChatConn { return svc.Open(id, sink) },
	})
	if err != nil {
		return a, err
	}
	a.admin, err = edge.ListenAdmin(edge.AdminConfig{Addr: cfg.AdminAddr, Token: cfg.AdminToken}, reg, a.srv, log)
	if err != nil {
		return a, err
	}
	log.Info("admin listening", "addr", a.admin.Addr())
	return a, nil
}

// serve runs the edge until it fails or ctx ends, then drains: stop taking
// traffic first, let chat turns in flight finish within part of the drain
// budget, then hand every socket a reconnect hint.
func (a *app) serve(ctx context.Context, stop func()) error {
	serveErr := make(chan error, 1)
	go func() { serveErr <- a.srv.Serve() }()
	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}
	stop()
	a.log.Info("shutdown requested")
	a.srv.BeginDrain()
	turnCtx, cancelTurns := context.WithTimeout(context.Background(), a.cfg.Edge.DrainTimeout/2)
	a.stopChat(turnCtx)
	cancelTurns()
	drainCtx, cancel := context.WithTimeout(context.Background(), a.cfg.Edge.DrainTimeout/2+5*time.Second)
	defer cancel()
	if err := a.srv.Shutdown(drainCtx); err != nil {
		return err
	}
	if err := <-serveErr; err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	a.log.Info("stopped")
	return nil
}

// stopChat ends the chat service once (turns in flight get until ctx).
func (a *app) stopChat(ctx context.Context) {
	if a.closeChat == nil {
		return
	}
	if err := a.closeChat(ctx); err != nil {
		a.log.Warn("chat shutdown", "err", err)
	}
	a.closeChat = nil
}

// close releases what assemble opened, the last opened first.
func (a *app) close() {
	if a.admin != nil {
		_ = a.admin.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	a.stopChat(ctx)
	cancel()
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
}

// mirrorFunc adapts a function to chat.Mirror.
type mirrorFunc func(threadID string, payload []byte)

func (f mirrorFunc) Mirror(threadID string, payload []byte) { f(threadID, payload) }
