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

	"github.com/wsedge/wsedge/chat"
	"github.com/wsedge/wsedge/edge"
	"github.com/wsedge/wsedge/edge/broker"
	"github.com/wsedge/wsedge/internal/jointoken"
)

// config is everything main needs, parsed once from flags and environment.
type config struct {
	Edge      edge.Config
	AdminAddr string
	// AdminToken guards the admin control API (ADMIN_TOKEN, or the file
	// ADMIN_TOKEN_FILE names); empty: control endpoints answer 403.
	AdminToken string
	SecretKey  string
	LogLevel   slog.Level
	LogJSON    bool
	Redis      redisConfig
	Chat       chatConfig
	// History is session history and resume (SESSION_HISTORY_*); Size 0: off.
	History broker.HistoryOptions
	Tokens  jointoken.Config // join-token keys; no key: tokens off
	// GCHeapFloor is the heap below which the garbage collector does not
	// run (GC_HEAP_FLOOR, internal/gcfloor); 0: the runtime's default.
	GCHeapFloor int
}

// settings lists every environment variable main knows; each also has a flag
// (ADMIN_ADDR → -admin-addr) that takes precedence over the environment,
// except secrets, which would show in the process list: those are read from
// the environment (or the .env file) only. Boolean settings may be given as
// a bare flag (-debug). "(default X)" in a help text must be the real
// default: TestConfigHelpDefaults loads X and compares.
var settings = []struct {
	key, help string
	secret    bool
	boolean   bool
}{
	{key: "ENV_FILE", help: "file of KEY=value lines read at start-up; the real environment wins over it (default: .env in the working directory, if present)"},
	{key: "ADDR", help: "HTTP/WebSocket listen address (default 0.0.0.0:8000)"},
	{key: "ADMIN_ADDR", help: "admin listener for /metrics, pprof and the control API /admin/ (default 127.0.0.1:9090)"},
	{key: "ADMIN_TOKEN", help: "bearer token of the admin control API (docs/ADMIN.md); with DEBUG=0 32+ random characters (default: none, GET /admin/status open, control endpoints 403)", secret: true},
	{key: "ADMIN_TOKEN_FILE", help: "file holding ADMIN_TOKEN, e.g. a mounted Kubernetes Secret; wins over ADMIN_TOKEN; a trailing newline is ignored (default: none)"},
	{key: "INSTANCE_ID", help: "name of this instance (default: host name)"},
	{key: "DEBUG", boolean: true, help: "1 skips the Origin check and allows a placeholder SECRET_KEY (alias DJANGO_DEBUG) (default 0)"},
	{key: "ALLOWED_HOSTS", help: "comma-separated Django-style host patterns for the Origin check (alias DJANGO_ALLOWED_HOSTS); required when DEBUG=0"},
	{key: "ALLOW_MISSING_ORIGIN", boolean: true, help: "1 lets WebSocket clients that send no Origin header (native apps, wsedge-cli) through when DEBUG=0 (default 0)"},
	{key: "SECRET_KEY", help: "secret for signed tokens; required when DEBUG=0: 32+ random characters, no example value (alias DJANGO_SECRET_KEY)", secret: true},
	{key: "CONSOLE", boolean: true, help: "1 serves the built-in browser console at /console/ on ADDR; make run sets it (default 0)"},
	{key: "EVENT_LOOPS", help: "gnet event loops (default: number of CPUs)"},
	{key: "MAX_MESSAGE_SIZE", help: "largest incoming message, e.g. 1MiB (default 1MiB)"},
	{key: "OUTBOUND_QUEUE_CAP", help: "bytes queued per socket before it is closed 1013; raised to fit the largest frame the server sends for one request (default 2MiB)"},
	{key: "MAX_CONNECTIONS", help: "open sockets cap (default 100000)"},
	{key: "READY_MAX_CONNECTIONS", help: "/ready/ fails (503) from this many WebSockets, so new ones go to other pods; 0: only at MAX_CONNECTIONS (default 0)"},
	{key: "MESSAGE_RATE", help: "frames (data, continuation, ping, pong) one socket may send per second; over it: rate_limited, message dropped; 0: no cap (default 1000)"},
	{key: "MESSAGE_BURST", help: "burst allowed above MESSAGE_RATE (default 2000)"},
	{key: "BYTE_RATE", help: "payload bytes one socket may send per second; over it: rate_limited, message dropped; 0: no cap (default 1MiB)"},
	{key: "BYTE_BURST", help: "burst allowed above BYTE_RATE, at least MAX_MESSAGE_SIZE; unset: twice MAX_MESSAGE_SIZE (default 2MiB)"},
	{key: "PRESENCE_MAX_MEMBERS", help: "members listed in one presence answer; beyond: \"truncated\":true (default 1000)"},
	{key: "FRAME_TIMEOUT", help: "a frame, and a fragmented message, must arrive whole within it, else close 1008 (default 10s)"},
	{key: "HELLO_TIMEOUT", help: "time to send hello on a session socket (default 30s)"},
	{key: "PING_INTERVAL", help: "idle time before the server pings (default 20s)"},
	{key: "PONG_TIMEOUT", help: "time a pinged socket has to answer (default 30s)"},
	{key: "WRITE_TIMEOUT", help: "time a socket may accept no bytes (default 30s)"},
	{key: "HANDSHAKE_TIMEOUT", help: "time to receive a whole HTTP request (default 10s)"},
	{key: "HTTP_IDLE_TIMEOUT", help: "keep-alive idle timeout; keep above the ALB's 60s (default 75s)"},
	{key: "DRAIN_TIMEOUT", help: "graceful shutdown bound (default 30s)"},
	{key: "DRAIN_SPREAD", help: "closing of sockets is spread over this long on shutdown (default 5s)"},
	{key: "RECONNECT_JITTER", help: "upper bound of the reconnect hint sent on shutdown (default 5s)"},
	{key: "SESSION_HISTORY_SIZE", help: "messages kept per session for lossless resume; 0 turns history off and frames stay as without it, docs/PROTOCOL.md §1.7 (default 0)"},
	{key: "SESSION_HISTORY_TTL", help: "a session's history outlives its last message (in memory: and its last member) by this (default 10m)"},
	{key: "SESSION_HISTORY_MAX_BYTES", help: "in-memory broker only: payload bytes kept per session, oldest dropped first (default 4MiB)"},
	{key: "LOG_LEVEL", help: "debug, info, warn or error (default info)"},
	{key: "LOG_FORMAT", help: "text or json (default json)"},
	{key: "REDIS_URL", help: "Redis for cross-instance fan-out and presence; empty: in-memory (docs/REDIS.md)", secret: true},
	{key: "REDIS_TIMEOUT", help: "bound of every Redis call; Members answers presence_unavailable after it (default 1s)"},
	{key: "REDIS_CONNECT_TIMEOUT", help: "how long start-up waits for Redis before failing (default 30s)"},
	{key: "REDIS_PING_INTERVAL", help: "idle Redis connections are pinged (and TCP keep-alive probes sent) this often (default 30s)"},
	{key: "REDIS_PUBLISH_BACKLOG", help: "broadcasts queued for Redis before Publish refuses them (default 10000)"},
	{key: "REDIS_PUBLISH_BACKLOG_BYTES", help: "bytes of broadcasts queued or being sent to Redis before Publish refuses them (default 64MiB)"},
	{key: "REDIS_PUBSUB_SHARDS", help: "Redis Cluster only: channel groups, one SSUBSCRIBE connection each (default 8)"},
	{key: "REDIS_PRESENCE_TTL", help: "an instance's presence outlives its last heartbeat by this; heartbeat every TTL/3 (default 15s)"},
	{key: "REDIS_PRESENCE_MAX_PENDING", help: "presence changes waiting for Redis before falling back to a full re-sync (default 100000)"},
	{key: "REDIS_CACHE_SIZE", help: "client-side cache per Redis connection, e.g. 64MiB (default 64MiB)"},
	{key: "AUTH_API_KEY", help: "API key for /ws/chat/ and /api/*; empty: no key required", secret: true},
	{key: "CSRF_SECRET_KEY", help: "CSRF token secret (default: SECRET_KEY)", secret: true},
	{key: "SESSION_TOKEN_SECRET", help: "HS256 key of join tokens (32+ bytes); set (or SESSION_TOKEN_PUBLIC_KEY) to require a token on /ws/session/ (docs/SECURITY.md) (default: none, tokens off)", secret: true},
	{key: "SESSION_TOKEN_PUBLIC_KEY", help: "path of a PEM RSA (RS256) or P-256 (ES256) public key for join tokens (default: none)"},
	{key: "SESSION_TOKEN_AUDIENCE", help: "when set, a join token's aud must include it (default: not checked)"},
	{key: "TOKEN_EXPIRY_GRACE", help: "time between token_expired and close 4003 for a client to refresh (default 30s)"},
	{key: "TRUSTED_PROXIES", help: "comma-separated CIDRs whose X-Forwarded-For is believed, e.g. the ALB's subnets (default: none, the peer address is the client)"},
	{key: "MAX_CONNECTIONS_PER_IP", help: "WebSockets open per client IP (IPv6: per /64); over it 429; 0: no cap (default 0)"},
	{key: "CONNECT_RATE_PER_IP", help: "WebSocket upgrades a second per client IP, decimals allowed; over it 429 with Retry-After; 0: no cap (default 0)"},
	{key: "CONNECT_BURST_PER_IP", help: "burst allowed above CONNECT_RATE_PER_IP (default: the rate rounded up, at least 1)"},
	{key: "LOOP_MAILBOX_CAP", help: "items queued to one event loop (broadcasts, chat tokens, answers) before broadcasts and chat tokens are refused and their sockets closed 1013 with a reconnect hint (default 65536)"},
	{key: "LOOP_MAILBOX_MAX_BYTES", help: "bytes of frames queued to one event loop before broadcasts and chat tokens are refused, as for LOOP_MAILBOX_CAP; at least MAX_MESSAGE_SIZE (default 64MiB)"},
	{key: "GC_HEAP_FLOOR", help: "heap the garbage collector lets grow before it runs, e.g. 256MiB; above it GOGC applies as usual; at most half of GOMEMLIMIT when that is set; 0: off (default: 256MiB with a Bedrock chat model, 0 otherwise; docs/CHAT.md)"},
	{key: "MAX_TRACKED_IPS", help: "size cap of the per-IP table; idle entries are evicted, then new addresses get 429 (default 100000)"},
	{key: "MAX_SESSION_MEMBERS", help: "session sockets per session id on this instance; over it 403 session_full; 0: no cap (default 0)"},
	{key: "SESSION_BROADCAST_RATE", help: "broadcasts a second per session on this instance, all senders together; over it rate_limited; 0: no cap (default 0)"},
	{key: "SESSION_BROADCAST_BURST", help: "burst allowed above SESSION_BROADCAST_RATE (default: the rate rounded up, at least 1)"},
	{key: "DATABASE_URL", help: "PostgreSQL for chat history; empty: in-memory, or the PSQL_* variables (docs/CHAT.md)", secret: true},
	{key: "DATABASE_MAX_CONNS", help: "PostgreSQL pool size (default 10)"},
	{key: "BEDROCK_MODEL_ID_CHAT", help: "Bedrock model for chat; empty: the local demo model (default empty)"},
	{key: "BEDROCK_MODEL_ID_SUMMARY", help: "Bedrock model for summaries (default: the chat model)"},
	{key: "AWS_BEDROCK_REGION", help: "Bedrock region (default: the AWS SDK's region, from AWS_REGION or the instance)"},
	{key: "BEDROCK_GUARDRAIL_ID", help: "Bedrock guardrail, set together with BEDROCK_GUARDRAIL_VERSION (default: none)"},
	{key: "BEDROCK_GUARDRAIL_VERSION", help: "version of the guardrail (default: none)"},
	{key: "MAXIMUM_GUARDRAIL_REWRITES", help: "regenerations of an answer a guardrail blocked, 0-10" + valueDefault(chat.Defaults().Rewrites)},
	{key: "BEDROCK_RETRIES", help: "SDK retries before a stream starts; 0: fail fast (default 0)"},
	{key: "BEDROCK_IDLE_TIMEOUT", help: "a stream with no event this long fails (default 30s)"},
	{key: "BEDROCK_MAX_TOKENS", help: "answer length cap in tokens (default 1024)"},
	{key: "CHAT_WORKERS", help: "chat turns streaming at once" + valueDefault(chat.Defaults().Workers)},
	{key: "CHAT_QUEUE", help: "accepted chat turns waiting for a worker; beyond: busy" + valueDefault(chat.Defaults().Queue)},
	{key: "CHAT_TURN_TIMEOUT", help: "per-turn deadline" + valueDefault(chat.Defaults().TurnTimeout)},
	{key: "CHAT_HISTORY_MESSAGES", help: "history messages sent to the model" + valueDefault(chat.Defaults().HistoryMessages)},
	{key: "CHAT_HISTORY_CHARS", help: "history characters sent to the model" + valueDefault(chat.Defaults().HistoryChars)},
	{key: "CHAT_MAX_MESSAGE_CHARS", help: "longest chat message; longer: invalid_message" + valueDefault(chat.Defaults().MaxMessageChars)},
	{key: "CHAT_MAX_ANSWER_CHARS", help: "longest answer stored in history" + valueDefault(chat.Defaults().MaxAnswerChars)},
	{key: "CHAT_MAX_DATA_BYTES", help: "largest \"data\" of a chat message; larger: invalid_message" + sizeDefault(chat.Defaults().MaxDataBytes)},
	{key: "CHAT_TURN_RATE", help: "chat turns one socket may start per minute; over it: rate_limited" + valueDefault(chat.Defaults().TurnRate)},
	{key: "CHAT_TURN_BURST", help: "chat turns one socket may start at once above CHAT_TURN_RATE" + valueDefault(chat.Defaults().TurnBurst)},
	{key: "CHAT_THREAD_TURN_RATE", help: "chat turns one thread may start per minute, all sockets of this instance together; over it: rate_limited" + valueDefault(chat.Defaults().ThreadTurnRate)},
	{key: "CHAT_THREAD_TURN_BURST", help: "chat turns one thread may start at once above CHAT_THREAD_TURN_RATE" + valueDefault(chat.Defaults().ThreadTurnBurst)},
	{key: "CHAT_HISTORY_TTL", help: "chat history retention, memory and PostgreSQL; 0: keep (default 720h)"},
	{key: "CHAT_HISTORY_API_BYTES", help: "content bytes returned by /api/thread/history" + sizeDefault(chat.Defaults().HistoryBytes)},
	{key: "CHAT_SUMMARY_CHARS", help: "history characters sent to the summary model" + valueDefault(chat.Defaults().SummaryChars)},
	{key: "CHAT_MEMORY_HISTORY_BYTES", help: "content bytes of the in-memory history store (default 256MiB)"},
	{key: "CHAT_SYSTEM_PROMPT", help: "system prompt for chat turns (default: a short customer-support prompt, docs/CHAT.md)"},
	{key: "CHAT_API_MAX_BODY", help: "HTTP request body cap, e.g. 256KiB; larger: 413 (default 64KiB)"},
	{key: "CHAT_API_TIMEOUT", help: "HTTP API request bound: 503 and the handler's work is cancelled (default 2m)"},
	{key: "LOCAL_MODEL_DELAY", help: "pause between the local demo model's words (default 30ms)"},
}

func flagName(key string) string { return strings.ToLower(strings.ReplaceAll(key, "_", "-")) }

// errVersion is returned by parseFlags for -version and `wsedge version`.
var errVersion = errors.New("version requested")

// settingFlag keeps a flag's text for env to parse like the variable it
// stands for; a boolean one may be given bare (-debug means -debug=1).
type settingFlag struct {
	value   string
	boolean bool
}

func (f *settingFlag) String() string {
	if f == nil {
		return ""
	}
	return f.value
}

func (f *settingFlag) Set(v string) error { f.value = v; return nil }

func (f *settingFlag) IsBoolFlag() bool { return f.boolean }

// joinBoolValues rewrites "-debug 0" as "-debug=0": the flag package reads a
// bare boolean flag as true and the 0 as an argument, yet "-debug 0" is how
// every other setting is written. Only values env.boolean understands are
// joined, so "-debug version" still means "-debug" then "version".
func joinBoolValues(args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		out = append(out, a)
		if a == "--" || !strings.HasPrefix(a, "-") || strings.Contains(a, "=") || i+1 == len(args) {
			continue
		}
		name := strings.TrimLeft(a, "-")
		for _, s := range settings {
			if s.boolean && flagName(s.key) == name {
				switch strings.ToLower(args[i+1]) {
				case "0", "1", "true", "false", "yes", "no", "on", "off":
					out[len(out)-1] = a + "=" + args[i+1]
					i++
				}
				break
			}
		}
	}
	return out
}

// parseFlags returns an env that sees flags first, then lookup. It returns
// flag.ErrHelp for -h and errVersion for -version or `wsedge version`.
func parseFlags(args []string, lookup env) (env, error) {
	fs := flag.NewFlagSet("wsedge", flag.ContinueOnError)
	showVersion := fs.Bool("version", false, "print version, revision and Go version, and exit")
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: wsedge [flags]\n       wsedge version    (or -version)\n\n"+
			"Every setting is a flag and an environment variable; flags win over the environment,\n"+
			"which wins over the .env file (ENV_FILE). Boolean flags may be given alone (-debug means -debug=1).\n\n")
		for _, s := range settings {
			switch {
			case s.secret:
				fmt.Fprintf(w, "  %s  (environment only)\n\t%s\n", s.key, s.help)
			case s.boolean:
				fmt.Fprintf(w, "  -%s [0|1]  (%s)\n\t%s\n", flagName(s.key), s.key, s.help)
			default:
				fmt.Fprintf(w, "  -%s value  (%s)\n\t%s\n", flagName(s.key), s.key, s.help)
			}
		}
		fmt.Fprintf(w, "  -version\n\tprint version, revision and Go version, and exit\n")
	}
	vals := map[string]*settingFlag{}
	for _, s := range settings {
		if !s.secret {
			vals[s.key] = &settingFlag{boolean: s.boolean}
			fs.Var(vals[s.key], flagName(s.key), s.help)
		}
	}
	if err := fs.Parse(joinBoolValues(args)); err != nil {
		return nil, err
	}
	if *showVersion || (fs.NArg() == 1 && fs.Arg(0) == "version") {
		return nil, errVersion
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	set := map[string]string{}
	fs.Visit(func(f *flag.Flag) {
		for _, s := range settings {
			if !s.secret && flagName(s.key) == f.Name {
				set[s.key] = vals[s.key].value
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

// warnings logs what is allowed but probably a mistake in production.
func (c config) warnings(log *slog.Logger) {
	if !c.Edge.Debug && c.Edge.AuthAPIKey == "" {
		log.Warn("AUTH_API_KEY is not set: /api/* and /ws/chat/ accept requests without an API key (DEBUG=0)")
	}
	if !c.Edge.Debug && c.Edge.AllowMissingOrigin {
		log.Warn("ALLOW_MISSING_ORIGIN=1: WebSocket clients without an Origin header are let through; browsers always send one")
	}
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
	var err error
	ec.Addr = e.str(ec.Addr, "ADDR")
	c.AdminAddr = e.str("127.0.0.1:9090", "ADMIN_ADDR")
	c.AdminToken, err = loadAdminToken(e)
	keep(err)
	host, _ := os.Hostname()
	ec.InstanceID = e.str(host, "INSTANCE_ID")
	ec.Debug, err = e.boolean(false, "DEBUG", "DJANGO_DEBUG")
	keep(err)
	for _, h := range strings.Split(e.str("", "ALLOWED_HOSTS", "DJANGO_ALLOWED_HOSTS"), ",") {
		if h = strings.TrimSpace(h); h != "" {
			ec.AllowedHosts = append(ec.AllowedHosts, h)
		}
	}
	ec.AllowMissingOrigin, err = e.boolean(false, "ALLOW_MISSING_ORIGIN")
	keep(err)
	c.SecretKey = e.str("", "SECRET_KEY", "DJANGO_SECRET_KEY")
	if !ec.Debug {
		if strings.TrimSpace(c.SecretKey) == "" {
			errs = append(errs, fmt.Errorf("SECRET_KEY (or DJANGO_SECRET_KEY) must be set when DEBUG=0 (a random value of at least %d characters, e.g. from `openssl rand -base64 48`); for local runs set DEBUG=1", minSecretLen))
		} else if why := weakSecret(c.SecretKey); why != "" {
			errs = append(errs, fmt.Errorf("SECRET_KEY (or DJANGO_SECRET_KEY) %s; with DEBUG=0 it must be a random value of at least %d characters (e.g. from `openssl rand -base64 48`); for local runs set DEBUG=1", why, minSecretLen))
		}
		if v := e.str("", "CSRF_SECRET_KEY"); v != "" {
			if why := weakSecret(v); why != "" {
				errs = append(errs, fmt.Errorf("CSRF_SECRET_KEY %s; with DEBUG=0 it must be a random value of at least %d characters, or unset to use SECRET_KEY", why, minSecretLen))
			}
		}
		if exampleAPIKey(e.str("", "AUTH_API_KEY")) {
			errs = append(errs, errors.New("AUTH_API_KEY is the example value shipped with wsedge; set a key of your own"))
		}
	}
	if !ec.Debug && c.AdminToken != "" {
		if why := weakSecret(c.AdminToken); why != "" {
			errs = append(errs, fmt.Errorf("ADMIN_TOKEN (or ADMIN_TOKEN_FILE) %s; with DEBUG=0 it must be a random value of at least %d characters (e.g. from `openssl rand -base64 48`)", why, minSecretLen))
		}
	}
	if !ec.Debug && len(ec.AllowedHosts) == 0 {
		errs = append(errs, errors.New("ALLOWED_HOSTS (or DJANGO_ALLOWED_HOSTS) must list the hosts allowed as WebSocket Origin when DEBUG=0 (\"*\" allows any)"))
	}
	ec.Console, err = e.boolean(false, "CONSOLE")
	keep(err)
	ec.AuthAPIKey = e.str("", "AUTH_API_KEY")
	ec.EventLoops, err = e.integer(runtime.NumCPU(), 1, 256, "EVENT_LOOPS")
	keep(err)
	ec.MaxMessageSize, err = e.size(ec.MaxMessageSize, 125, 64<<20, "MAX_MESSAGE_SIZE")
	keep(err)
	ec.PresenceMaxMembers, err = e.integer(ec.PresenceMaxMembers, 1, edge.MaxPresenceMembers, "PRESENCE_MAX_MEMBERS")
	keep(err)
	// Unset, the cap is raised to the floor; set below it, it is an error
	// (Validate): a client must be able to receive what it may ask for.
	ec.OutboundCap, err = e.size(max(ec.OutboundCap, ec.MinOutboundCap()), 4096, 256<<20, "OUTBOUND_QUEUE_CAP")
	keep(err)
	ec.MaxConnections, err = e.integer(ec.MaxConnections, 1, 10_000_000, "MAX_CONNECTIONS")
	keep(err)
	ec.MailboxCap, err = e.integer(ec.MailboxCap, 1, 1<<24, "LOOP_MAILBOX_CAP")
	keep(err)
	ec.MailboxMaxBytes, err = e.size(max(ec.MailboxMaxBytes, ec.MaxMessageSize+16), 4096, 4<<30, "LOOP_MAILBOX_MAX_BYTES")
	keep(err)
	ec.ReadyMaxConnections, err = e.integer(ec.ReadyMaxConnections, 0, ec.MaxConnections, "READY_MAX_CONNECTIONS")
	keep(err)
	ec.MessageRate, err = e.integer(ec.MessageRate, 0, 10_000_000, "MESSAGE_RATE")
	keep(err)
	ec.MessageBurst, err = e.integer(ec.MessageBurst, 1, 10_000_000, "MESSAGE_BURST")
	keep(err)
	ec.ByteRate, err = e.size(ec.ByteRate, 0, 1<<30, "BYTE_RATE")
	keep(err)
	ec.ByteBurst, err = e.size(max(ec.ByteBurst, 2*ec.MaxMessageSize), 125, 1<<30, "BYTE_BURST")
	keep(err)
	dur := func(dst *time.Duration, lo, hi time.Duration, key string) {
		v, err := e.duration(*dst, lo, hi, key)
		keep(err)
		*dst = v
	}
	dur(&ec.HelloTimeout, 100*time.Millisecond, time.Hour, "HELLO_TIMEOUT")
	dur(&ec.FrameTimeout, 100*time.Millisecond, time.Hour, "FRAME_TIMEOUT")
	dur(&ec.PingInterval, 100*time.Millisecond, time.Hour, "PING_INTERVAL")
	dur(&ec.PongTimeout, 100*time.Millisecond, time.Hour, "PONG_TIMEOUT")
	dur(&ec.WriteTimeout, 100*time.Millisecond, time.Hour, "WRITE_TIMEOUT")
	dur(&ec.HandshakeTimeout, 100*time.Millisecond, time.Hour, "HANDSHAKE_TIMEOUT")
	dur(&ec.HTTPIdleTimeout, 100*time.Millisecond, 24*time.Hour, "HTTP_IDLE_TIMEOUT")
	dur(&ec.DrainTimeout, 100*time.Millisecond, time.Hour, "DRAIN_TIMEOUT")
	dur(&ec.DrainSpread, 0, time.Hour, "DRAIN_SPREAD")
	dur(&ec.ReconnectJitter, 0, time.Hour, "RECONNECT_JITTER")
	// The edge answers /api/* and enforces its deadline and body cap: the
	// chat API's settings are the edge's.
	dur(&ec.APITimeout, time.Second, time.Hour, "CHAT_API_TIMEOUT")
	// Short timeouts need a finer sweep, or deadlines would be a second late.
	ec.SweepInterval = min(time.Second, ec.HelloTimeout/4, ec.PingInterval/4, ec.PongTimeout/4, ec.HandshakeTimeout/4, ec.FrameTimeout/4)
	ec.CloseTimeout = min(5*time.Second, ec.WriteTimeout)

	c.History.Size, err = e.integer(0, 0, 100_000, "SESSION_HISTORY_SIZE")
	keep(err)
	c.History.TTL, err = e.duration(10*time.Minute, time.Second, 7*24*time.Hour, "SESSION_HISTORY_TTL")
	keep(err)
	c.History.MaxBytes, err = e.size(4<<20, 1<<10, 1<<30, "SESSION_HISTORY_MAX_BYTES")
	keep(err)

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
	c.Tokens, err = loadAccessConfig(e, ec)
	keep(err)
	c.Redis, err = loadRedisConfig(e)
	keep(err)
	c.Redis.History = c.History
	if v, _, set := e.first("REDIS_PUBLISH_BACKLOG_BYTES"); !set || strings.TrimSpace(v) == "" {
		// Unset, it holds at least a few of the largest broadcasts.
		c.Redis.PublishBacklogSize = max(c.Redis.PublishBacklogSize, 4*(ec.MaxMessageSize+4096))
	}
	if err == nil && c.Redis.PublishBacklogSize < ec.MaxMessageSize+4096 {
		errs = append(errs, fmt.Errorf("REDIS_PUBLISH_BACKLOG_BYTES=%d cannot hold one broadcast of MAX_MESSAGE_SIZE (%d bytes)",
			c.Redis.PublishBacklogSize, ec.MaxMessageSize))
	}
	c.Chat, err = loadChatConfig(e, c.SecretKey)
	keep(err)
	// Streaming chat turns through the AWS SDK allocates ~3 KB per token:
	// without a floor a burst of turns collects every few hundred
	// milliseconds and each mark phase stalls the turns starting meanwhile
	// (internal/gcfloor).
	floor := 0
	if c.Chat.Bedrock.ChatModelID != "" {
		floor = 256 << 20
	}
	c.GCHeapFloor, err = e.size(floor, 0, 64<<30, "GC_HEAP_FLOOR")
	keep(err)
	ec.MaxBodyBytes = c.Chat.API.MaxBody
	if err := ec.Validate(); err != nil {
		errs = append(errs, err)
	}
	return c, errors.Join(errs...)
}

// loadAdminToken reads ADMIN_TOKEN_FILE (a Kubernetes Secret mount), which
// wins, or ADMIN_TOKEN. A file's trailing newline (echo, kubectl create
// secret --from-file) is not part of the token.
func loadAdminToken(e env) (string, error) {
	if p := strings.TrimSpace(e.str("", "ADMIN_TOKEN_FILE")); p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			return "", fmt.Errorf("ADMIN_TOKEN_FILE: %w", err)
		}
		tok := strings.TrimRight(string(b), "\r\n")
		if strings.TrimSpace(tok) == "" {
			return "", fmt.Errorf("ADMIN_TOKEN_FILE %s is empty", p)
		}
		return tok, nil
	}
	return e.str("", "ADMIN_TOKEN"), nil
}

// valueDefault is the "(default X)" of a help text, for a number or a
// duration given by the package that owns it.
func valueDefault(v any) string {
	if d, ok := v.(time.Duration); ok {
		s := d.String()
		s = strings.TrimSuffix(s, "0s")
		if strings.HasSuffix(s, "h0m") {
			s = strings.TrimSuffix(s, "0m")
		}
		return " (default " + s + ")"
	}
	return fmt.Sprintf(" (default %v)", v)
}

// sizeDefault is the "(default X)" of a byte count, in KiB or MiB when whole.
func sizeDefault(n int) string {
	switch {
	case n > 0 && n%(1<<20) == 0:
		return fmt.Sprintf(" (default %dMiB)", n>>20)
	case n > 0 && n%(1<<10) == 0:
		return fmt.Sprintf(" (default %dKiB)", n>>10)
	}
	return fmt.Sprintf(" (default %d)", n)
}
