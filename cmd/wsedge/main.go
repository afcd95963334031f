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
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/wsedge/wsedge/edge"
	"github.com/wsedge/wsedge/edge/broker"
	"github.com/wsedge/wsedge/edge/presence"
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

func run(args []string, lookup env, stdout io.Writer) error {
	e, err := parseFlags(args, lookup)
	switch {
	case errors.Is(err, errVersion):
		v := version.Get()
		_, err := fmt.Fprintf(stdout, "wsedge %s\nrevision %s\n%s\n", v.Version, v.Revision, v.GoVersion)
		return err
	case errors.Is(err, flag.ErrHelp):
		return err
	case err != nil:
		return usageError{err}
	}
	// The runtime read GOMAXPROCS at start, before the .env file.
	_, gomaxprocsSet := lookup("GOMAXPROCS")
	envFile, err := loadEnvFile(e)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(e)
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
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

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		edge.NewBuildInfo(v))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	hub := edge.NewHub()
	var (
		b broker.Broker
		p presence.Store
	)
	if cfg.Redis.URL != "" {
		b, p, err = newRedisBackends(ctx, cfg.Redis, cfg.Edge.InstanceID, hub.Deliver, log, reg)
		if err != nil {
			return err
		}
	} else {
		b, p = broker.NewMemoryHistory(hub.Deliver, cfg.History), presence.NewMemory()
		log.Info("embedded mode: in-memory broker and presence (set REDIS_URL to scale out)")
	}
	defer func() {
		if err := b.Close(); err != nil {
			log.Warn("broker close", "err", err)
		}
		if err := p.Close(); err != nil {
			log.Warn("presence close", "err", err)
		}
	}()

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
			return fmt.Errorf("join tokens: %w", err)
		}
		log.Info("join tokens required on /ws/session/")
	}
	cfg.Chat.API.Tokens = tokens
	svc, api, closeChat, err := newChat(ctx, cfg.Chat, mirror, log, reg)
	if err != nil {
		return err
	}
	chatClosed := false
	defer func() {
		if chatClosed {
			return
		}
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := closeChat(cctx); err != nil {
			log.Warn("chat shutdown", "err", err)
		}
	}()

	// With SESSION_HISTORY_SIZE set, both brokers keep history.
	var hist broker.History
	if h, ok := b.(interface{ History() broker.History }); ok {
		hist = h.History()
	}
	if hist != nil {
		log.Info("session history on", "size", cfg.History.Size, "ttl", cfg.History.TTL)
	}
	srv, err := edge.New(cfg.Edge, edge.Deps{
		Hub: hub, Broker: b, Presence: p, Logger: log, Registry: reg, API: api, History: hist, Tokens: tokens,
		OpenChat: func(id string, sink edge.ChatSink) edge.ChatConn { return svc.Open(id, sink) },
	})
	if err != nil {
		return err
	}
	admin, err := edge.ListenAdmin(edge.AdminConfig{Addr: cfg.AdminAddr, Token: cfg.AdminToken}, reg, srv, log)
	if err != nil {
		return err
	}
	defer admin.Close()
	log.Info("admin listening", "addr", admin.Addr())

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve() }()
	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}
	stop()
	log.Info("shutdown requested")
	// Stop taking traffic first, let chat turns in flight finish within part
	// of the drain budget, then hand every socket a reconnect hint.
	srv.BeginDrain()
	turnCtx, cancelTurns := context.WithTimeout(context.Background(), cfg.Edge.DrainTimeout/2)
	if err := closeChat(turnCtx); err != nil {
		log.Warn("chat shutdown", "err", err)
	}
	chatClosed = true
	cancelTurns()
	drainCtx, cancel := context.WithTimeout(context.Background(), cfg.Edge.DrainTimeout/2+5*time.Second)
	defer cancel()
	if err := srv.Shutdown(drainCtx); err != nil {
		return err
	}
	if err := <-serveErr; err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	log.Info("stopped")
	return nil
}

// mirrorFunc adapts a function to chat.Mirror.
type mirrorFunc func(threadID string, payload []byte)

func (f mirrorFunc) Mirror(threadID string, payload []byte) { f(threadID, payload) }
