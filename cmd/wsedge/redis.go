package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"

	"github.com/wsedge/wsedge/edge/broker"
	"github.com/wsedge/wsedge/edge/presence"
	"github.com/wsedge/wsedge/internal/redisconn"
)

// redisConfig is the typed Redis configuration; zero URL means embedded memory mode.
type redisConfig struct {
	// URL is REDIS_URL as given (it may hold a password: log Redacted()).
	URL string
	// Client is the parsed connection options.
	Client rueidis.ClientOption
	// Cluster is redisconn.Auto (ask the server), Cluster or Standalone,
	// from ?cluster=.
	Cluster redisconn.Mode

	Timeout            time.Duration
	ConnectTimeout     time.Duration
	PingInterval       time.Duration
	PublishBacklog     int
	PublishBacklogSize int
	PubSubShards       int
	PresenceTTL        time.Duration
	PresenceMaxPending int
	CacheSize          int
	// History is copied from the main config (SESSION_HISTORY_*).
	History broker.HistoryOptions
}

// Redacted is URL without its password.
func (c redisConfig) Redacted() string {
	u, err := url.Parse(c.URL)
	if err != nil {
		return "<unparsable>"
	}
	return u.Redacted()
}

// loadRedisConfig reads REDIS_URL and the REDIS_* knobs. URL forms:
//
//	redis://[user:password@]host:port[/db]        standalone (db defaults to 0)
//	rediss://...                                   the same over TLS (?skip_verify=1 to skip verification)
//	redis://[user:password@]h1:p1,h2:p2,h3:p3      Redis Cluster seed nodes
//	redis://h1:p1?addr=h2:p2&addr=h3:p3            the same, in rueidis' own form
//
// A URL naming several nodes must be a cluster. ?cluster=1 forces sharded
// pub/sub (SPUBLISH/SSUBSCRIBE), ?cluster=0 classic pub/sub; by default the
// server is asked (INFO cluster). Other rueidis parameters (dial_timeout,
// client_name, protocol=2, …) pass through.
func loadRedisConfig(e env) (redisConfig, error) {
	var errs []error
	keep := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	c := redisConfig{URL: strings.TrimSpace(e.str("", "REDIS_URL"))}
	var err error
	c.Timeout, err = e.duration(time.Second, 10*time.Millisecond, time.Minute, "REDIS_TIMEOUT")
	keep(err)
	c.ConnectTimeout, err = e.duration(30*time.Second, 0, 10*time.Minute, "REDIS_CONNECT_TIMEOUT")
	keep(err)
	c.PingInterval, err = e.duration(30*time.Second, time.Second, 10*time.Minute, "REDIS_PING_INTERVAL")
	keep(err)
	c.PublishBacklog, err = e.integer(broker.DefaultRedisBacklog, 16, 10_000_000, "REDIS_PUBLISH_BACKLOG")
	keep(err)
	c.PublishBacklogSize, err = e.size(broker.DefaultRedisBacklogBytes, 64<<10, 16<<30, "REDIS_PUBLISH_BACKLOG_BYTES")
	keep(err)
	c.PubSubShards, err = e.integer(broker.DefaultRedisShards, 1, 1024, "REDIS_PUBSUB_SHARDS")
	keep(err)
	c.PresenceTTL, err = e.duration(presence.DefaultRedisTTL, 3*time.Second, time.Hour, "REDIS_PRESENCE_TTL")
	keep(err)
	c.PresenceMaxPending, err = e.integer(presence.DefaultRedisMaxPending, 100, 100_000_000, "REDIS_PRESENCE_MAX_PENDING")
	keep(err)
	c.CacheSize, err = e.size(64<<20, 1<<20, 1<<40, "REDIS_CACHE_SIZE")
	keep(err)
	if c.URL != "" {
		c.Client, c.Cluster, err = parseRedisURL(c.URL)
		keep(err)
	}
	if len(errs) > 0 {
		return redisConfig{}, errors.Join(errs...)
	}
	return c, nil
}

// parseRedisURL turns the comma form into rueidis' addr= form and parses it.
func parseRedisURL(raw string) (rueidis.ClientOption, redisconn.Mode, error) {
	fail := func(format string, a ...any) (rueidis.ClientOption, redisconn.Mode, error) {
		// Never echo the URL: it may carry a password.
		return rueidis.ClientOption{}, redisconn.Auto, fmt.Errorf("REDIS_URL: "+format, a...)
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return fail("want redis://host:port[/db] or rediss://… (see docs/REDIS.md)")
	}
	switch scheme {
	case "redis", "rediss":
	default:
		return fail("scheme %q: want redis or rediss", scheme)
	}
	// Split the authority by hand: url.Parse rejects "h1:p1,h2:p2".
	auth, tail := rest, ""
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		auth, tail = rest[:i], rest[i:]
	}
	userinfo, hosts := "", auth
	if i := strings.LastIndex(auth, "@"); i >= 0 {
		userinfo, hosts = auth[:i+1], auth[i+1:]
	}
	list := strings.Split(hosts, ",")
	for _, h := range list {
		if strings.TrimSpace(h) == "" {
			return fail("empty host in %q", hosts)
		}
	}
	u, err := url.Parse(scheme + "://" + userinfo + list[0] + tail)
	if err != nil {
		return fail("%v", redactErr(err))
	}
	q := u.Query()
	for _, h := range list[1:] {
		q.Add("addr", strings.TrimSpace(h))
	}
	cluster := redisconn.Auto
	switch v := q.Get("cluster"); v {
	case "":
	case "1", "true", "yes":
		cluster = redisconn.Cluster
	case "0", "false", "no":
		cluster = redisconn.Standalone
	default:
		return fail("cluster=%q: want 1 or 0", v)
	}
	q.Del("cluster")
	u.RawQuery = q.Encode()
	opt, err := rueidis.ParseURL(u.String())
	if err != nil {
		return fail("%v", redactErr(err))
	}
	if len(opt.InitAddress) > 1 && cluster == redisconn.Standalone {
		return fail("several nodes with cluster=0: name one node, or drop cluster=0")
	}
	if len(opt.InitAddress) > 1 {
		cluster = redisconn.Cluster
	}
	if cluster == redisconn.Cluster && opt.SelectDB != 0 {
		return fail("Redis Cluster has only database 0, got /%d", opt.SelectDB)
	}
	return opt, cluster, nil
}

// redactErr drops a url.Error's URL (it may carry a password).
func redactErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

// redisBackends are the Redis broker and presence store on their shared
// connection.
type redisBackends struct {
	conn     *redisconn.Conn
	broker   *broker.Redis
	presence *presence.Redis
}

// newRedisBackends opens the Redis connection and builds the broker and the
// presence store on it. Start-up waits up to
// cfg.ConnectTimeout for Redis; after that, an outage never stops the server
// (see docs/REDIS.md).
func newRedisBackends(ctx context.Context, cfg redisConfig, instanceID string,
	log *slog.Logger, reg prometheus.Registerer) (*redisBackends, error) {
	if cfg.URL == "" {
		return nil, errors.New("redis: no REDIS_URL")
	}
	conn, err := redisconn.Open(ctx, redisconn.Options{
		Client: cfg.Client, Mode: cfg.Cluster, Instance: instanceID, Timeout: cfg.Timeout,
		ConnectTimeout: cfg.ConnectTimeout, PingInterval: cfg.PingInterval, CacheSize: cfg.CacheSize, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	b, err := broker.NewRedis(conn, broker.RedisOptions{
		Shards: cfg.PubSubShards, Backlog: cfg.PublishBacklog, BacklogBytes: int64(cfg.PublishBacklogSize),
		Registerer: reg, History: cfg.History,
	})
	if err != nil {
		conn.Close()
		return nil, err
	}
	p, err := presence.NewRedis(conn, presence.RedisOptions{
		TTL: cfg.PresenceTTL, MaxPending: cfg.PresenceMaxPending, Registerer: reg,
	})
	if err != nil {
		_ = b.Close()
		conn.Close()
		return nil, err
	}
	mode := "standalone (PUBLISH/SUBSCRIBE)"
	if conn.Sharded() {
		mode = fmt.Sprintf("cluster (SPUBLISH/SSUBSCRIBE over %d channel groups)", cfg.PubSubShards)
	}
	log.Info("redis mode: cross-instance broker and presence", "url", cfg.Redacted(), "pubsub", mode,
		"presence_instance", conn.ID(), "presence_ttl", cfg.PresenceTTL, "history_size", cfg.History.Size)
	return &redisBackends{conn: conn, broker: b, presence: p}, nil
}

// Close closes the broker and the store, then their connection.
func (r *redisBackends) Close() error {
	err := errors.Join(r.broker.Close(), r.presence.Close())
	r.conn.Close()
	return err
}
