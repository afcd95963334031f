package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/wsedge/wsedge/edge"
)

// config is everything main needs, parsed once from flags and environment.
type config struct {
	Edge      edge.Config
	AdminAddr string
	SecretKey string
	LogLevel  slog.Level
	LogJSON   bool
	Redis     redisConfig
	Chat      chatConfig
}

// placeholderSecrets are values shipped in examples; DEBUG=0 refuses them.
var placeholderSecrets = []string{
	"", "changeme", "change-me", "change_me", "secret", "dev", "development", "placeholder",
	"your-secret-key", "your_secret_key", "insecure", "test",
}

func isPlaceholderSecret(s string) bool {
	l := strings.ToLower(strings.TrimSpace(s))
	if strings.HasPrefix(l, "django-insecure") || strings.Contains(l, "change-me") || strings.Contains(l, "changeme") {
		return true
	}
	for _, p := range placeholderSecrets {
		if l == p {
			return true
		}
	}
	return len(l) < 16
}

// settings lists every environment variable main knows; each also has a flag
// (ADMIN_ADDR → -admin-addr) that takes precedence over the environment.
var settings = []struct{ key, help string }{
	{"ADDR", "HTTP/WebSocket listen address (default 0.0.0.0:8000)"},
	{"ADMIN_ADDR", "admin listener for /metrics and pprof (default 127.0.0.1:9090)"},
	{"INSTANCE_ID", "name of this instance (default: host name)"},
	{"DEBUG", "1 skips the Origin check and allows a placeholder SECRET_KEY (alias DJANGO_DEBUG; default 0)"},
	{"ALLOWED_HOSTS", "comma-separated Django-style host patterns for the Origin check (alias DJANGO_ALLOWED_HOSTS)"},
	{"SECRET_KEY", "secret for signed tokens; required when DEBUG=0 (alias DJANGO_SECRET_KEY)"},
	{"EVENT_LOOPS", "gnet event loops (default: number of CPUs)"},
	{"MAX_MESSAGE_SIZE", "largest incoming message, e.g. 1MiB (default 1MiB)"},
	{"OUTBOUND_QUEUE_CAP", "bytes queued per socket before it is closed 1013 (default 1MiB)"},
	{"MAX_CONNECTIONS", "open sockets cap (default 100000)"},
	{"HELLO_TIMEOUT", "time to send hello on a session socket (default 30s)"},
	{"PING_INTERVAL", "idle time before the server pings (default 20s)"},
	{"PONG_TIMEOUT", "time a pinged socket has to answer (default 30s)"},
	{"WRITE_TIMEOUT", "time a socket may accept no bytes (default 30s)"},
	{"HANDSHAKE_TIMEOUT", "time to receive a whole HTTP request (default 10s)"},
	{"HTTP_IDLE_TIMEOUT", "keep-alive idle timeout; keep above the ALB's 60s (default 75s)"},
	{"DRAIN_TIMEOUT", "graceful shutdown bound (default 30s)"},
	{"DRAIN_SPREAD", "closing of sockets is spread over this long on shutdown (default 5s)"},
	{"RECONNECT_JITTER", "upper bound of the reconnect hint sent on shutdown (default 5s)"},
	{"LOG_LEVEL", "debug, info, warn or error (default info)"},
	{"LOG_FORMAT", "text or json (default json)"},
	{"REDIS_URL", "Redis for cross-instance fan-out and presence; empty: in-memory (see docs/REDIS.md)"},
	{"AUTH_API_KEY", "API key for /ws/chat/ and /api/*; empty: no key required"},
	{"CSRF_SECRET_KEY", "CSRF token secret (default: SECRET_KEY)"},
	{"DATABASE_URL", "PostgreSQL for chat history; empty: in-memory (or the PSQL_* variables)"},
	{"BEDROCK_MODEL_ID_CHAT", "Bedrock model for chat; empty: the local demo model"},
	{"BEDROCK_MODEL_ID_SUMMARY", "Bedrock model for summaries (default: the chat model)"},
	{"AWS_BEDROCK_REGION", "Bedrock region (default: the AWS SDK's region)"},
}

func flagName(key string) string { return strings.ToLower(strings.ReplaceAll(key, "_", "-")) }

// parseFlags returns an env that sees flags first, then lookup.
func parseFlags(args []string, lookup env) (env, error) {
	fs := flag.NewFlagSet("wsedge", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: wsedge [flags]\n\nEvery flag can also be set by its environment variable.\n\n")
		for _, s := range settings {
			fmt.Fprintf(fs.Output(), "  -%s  (%s)\n\t%s\n", flagName(s.key), s.key, s.help)
		}
	}
	vals := map[string]*string{}
	for _, s := range settings {
		vals[s.key] = fs.String(flagName(s.key), "", s.help)
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	set := map[string]string{}
	fs.Visit(func(f *flag.Flag) {
		for _, s := range settings {
			if flagName(s.key) == f.Name {
				set[s.key] = *vals[s.key]
			}
		}
	})
	return func(k string) (string, bool) {
		if v, ok := set[k]; ok {
			return v, true
		}
		return lookup(k)
	}, nil
}

// loadConfig parses and validates everything, reporting all problems at once.
func loadConfig(e env) (config, error) {
	var errs []error
	keep := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	c := config{Edge: edge.Defaults()}
	ec := &c.Edge
	ec.Addr = e.str(ec.Addr, "ADDR")
	c.AdminAddr = e.str("127.0.0.1:9090", "ADMIN_ADDR")
	host, _ := os.Hostname()
	ec.InstanceID = e.str(host, "INSTANCE_ID")
	var err error
	ec.Debug, err = e.boolean(false, "DEBUG", "DJANGO_DEBUG")
	keep(err)
	for _, h := range strings.Split(e.str("", "ALLOWED_HOSTS", "DJANGO_ALLOWED_HOSTS"), ",") {
		if h = strings.TrimSpace(h); h != "" {
			ec.AllowedHosts = append(ec.AllowedHosts, h)
		}
	}
	c.SecretKey = e.str("", "SECRET_KEY", "DJANGO_SECRET_KEY")
	if !ec.Debug && isPlaceholderSecret(c.SecretKey) {
		errs = append(errs, errors.New("SECRET_KEY (or DJANGO_SECRET_KEY) must be set to a real secret of at least 16 characters when DEBUG=0; for local runs set DEBUG=1"))
	}
	if !ec.Debug && len(ec.AllowedHosts) == 0 {
		errs = append(errs, errors.New("ALLOWED_HOSTS (or DJANGO_ALLOWED_HOSTS) must list the hosts allowed as WebSocket Origin when DEBUG=0 (\"*\" allows any)"))
	}
	ec.AuthAPIKey = e.str("", "AUTH_API_KEY")
	ec.EventLoops, err = e.integer(runtime.NumCPU(), 1, 256, "EVENT_LOOPS")
	keep(err)
	ec.MaxMessageSize, err = e.size(ec.MaxMessageSize, 125, 64<<20, "MAX_MESSAGE_SIZE")
	keep(err)
	ec.OutboundCap, err = e.size(ec.OutboundCap, 4096, 256<<20, "OUTBOUND_QUEUE_CAP")
	keep(err)
	ec.MaxConnections, err = e.integer(ec.MaxConnections, 1, 10_000_000, "MAX_CONNECTIONS")
	keep(err)
	dur := func(dst *time.Duration, lo, hi time.Duration, key string) {
		v, err := e.duration(*dst, lo, hi, key)
		keep(err)
		*dst = v
	}
	dur(&ec.HelloTimeout, 100*time.Millisecond, time.Hour, "HELLO_TIMEOUT")
	dur(&ec.PingInterval, 100*time.Millisecond, time.Hour, "PING_INTERVAL")
	dur(&ec.PongTimeout, 100*time.Millisecond, time.Hour, "PONG_TIMEOUT")
	dur(&ec.WriteTimeout, 100*time.Millisecond, time.Hour, "WRITE_TIMEOUT")
	dur(&ec.HandshakeTimeout, 100*time.Millisecond, time.Hour, "HANDSHAKE_TIMEOUT")
	dur(&ec.HTTPIdleTimeout, 100*time.Millisecond, 24*time.Hour, "HTTP_IDLE_TIMEOUT")
	dur(&ec.DrainTimeout, 100*time.Millisecond, time.Hour, "DRAIN_TIMEOUT")
	dur(&ec.DrainSpread, 0, time.Hour, "DRAIN_SPREAD")
	dur(&ec.ReconnectJitter, 0, time.Hour, "RECONNECT_JITTER")
	// Short timeouts need a finer sweep, or deadlines would be a second late.
	ec.SweepInterval = min(time.Second, ec.HelloTimeout/4, ec.PingInterval/4, ec.PongTimeout/4, ec.HandshakeTimeout/4)
	ec.CloseTimeout = min(5*time.Second, ec.WriteTimeout)

	switch strings.ToLower(e.str("info", "LOG_LEVEL")) {
	case "debug":
		c.LogLevel = slog.LevelDebug
	case "info", "":
		c.LogLevel = slog.LevelInfo
	case "warn", "warning":
		c.LogLevel = slog.LevelWarn
	case "error":
		c.LogLevel = slog.LevelError
	default:
		errs = append(errs, fmt.Errorf("LOG_LEVEL=%q: want debug, info, warn or error", e.str("", "LOG_LEVEL")))
	}
	switch f := strings.ToLower(e.str("json", "LOG_FORMAT")); f {
	case "json":
		c.LogJSON = true
	case "text":
	default:
		errs = append(errs, fmt.Errorf("LOG_FORMAT=%q: want text or json", f))
	}
	if err := ec.Validate(); err != nil {
		errs = append(errs, err)
	}
	c.Redis, err = loadRedisConfig(e)
	keep(err)
	c.Chat, err = loadChatConfig(e, c.SecretKey)
	keep(err)
	return c, errors.Join(errs...)
}
