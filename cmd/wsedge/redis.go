package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"

	"github.com/wsedge/wsedge/edge/broker"
	"github.com/wsedge/wsedge/edge/presence"
)

// redisConfig is the typed Redis configuration; zero URL means embedded memory mode.
type redisConfig struct {
	// URL is REDIS_URL as given (it may hold a password: log Redacted()).
	URL string
	// Client is the parsed connection options.
	Client rueidis.ClientOption
	// Cluster is "auto" (ask the server), "yes" or "no", from ?cluster=.
	Cluster string

	Timeout            time.Duration
	ConnectTimeout     time.Duration
	PingInterval       time.Duration
	PublishBacklog     int
	PublishBacklogSize int
	PubSubShards       int
	PresenceTTL        time.Duration
	PresenceMaxPending int
	CacheSize          int
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
func parseRedisURL(raw string) (rueidis.ClientOption, string, error) {
	fail := func(format string, a ...any) (rueidis.ClientOption, string, error) {
		// Never echo the URL: it may carry a password.
		return rueidis.ClientOption{}, "", fmt.Errorf("REDIS_URL: "+format, a...)
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
	cluster := "auto"
	switch v := q.Get("cluster"); v {
	case "":
	case "1", "true", "yes":
		cluster = "yes"
	case "0", "false", "no":
		cluster = "no"
	default:
		return fail("cluster=%q: want 1 or 0", v)
	}
	q.Del("cluster")
	u.RawQuery = q.Encode()
	opt, err := rueidis.ParseURL(u.String())
	if err != nil {
		return fail("%v", redactErr(err))
	}
	if len(opt.InitAddress) > 1 && cluster == "no" {
		return fail("several nodes with cluster=0: name one node, or drop cluster=0")
	}
	if len(opt.InitAddress) > 1 {
		cluster = "yes"
	}
	if cluster == "yes" && opt.SelectDB != 0 {
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

// newRedisBackends builds the Redis broker and presence store. h receives broker messages.
//
// Both share one rueidis client, closed when both are closed. Start-up waits
// up to cfg.ConnectTimeout for Redis; after that, an outage never stops the
// server (see docs/REDIS.md).
func newRedisBackends(ctx context.Context, cfg redisConfig, instanceID string, h broker.Handler,
	log *slog.Logger, reg prometheus.Registerer) (broker.Broker, presence.Store, error) {
	if cfg.URL == "" {
		return nil, nil, errors.New("redis: no REDIS_URL")
	}
	opt := cfg.Client
	if opt.Dialer.Timeout == 0 {
		opt.Dialer.Timeout = min(max(2*cfg.Timeout, time.Second), 10*time.Second)
	}
	opt.Dialer.KeepAlive = cfg.PingInterval
	// A pipelined call that gets no answer for this long kills the
	// connection (and its pings time out after it).
	opt.ConnWriteTimeout = max(5*cfg.Timeout, 3*time.Second)
	opt.CacheSizeEachConn = cfg.CacheSize
	if opt.ClientName == "" {
		opt.ClientName = "wsedge:" + instanceID
	}
	// rueidis calls OnInvalidations(nil) when a connection is lost or the
	// server flushed: the presence store then checks at once whether Redis
	// lost its entries, instead of a heartbeat later.
	var store atomic.Pointer[presence.Redis]
	opt.OnInvalidations = func(m []rueidis.RedisMessage) {
		if m != nil {
			return
		}
		if s := store.Load(); s != nil {
			s.Recheck()
		}
	}
	client, err := redisConnect(ctx, opt, cfg.ConnectTimeout, log)
	if err != nil {
		return nil, nil, err
	}
	sharded := cfg.Cluster == "yes"
	if cfg.Cluster == "auto" {
		if sharded, err = redisIsCluster(ctx, client, cfg.Timeout); err != nil {
			client.Close()
			return nil, nil, err
		}
	}
	b, err := broker.NewRedis(h, broker.RedisOptions{
		Client: client, Instance: instanceID, Sharded: sharded, Shards: cfg.PubSubShards,
		Backlog: cfg.PublishBacklog, BacklogBytes: int64(cfg.PublishBacklogSize), Timeout: cfg.Timeout, Logger: log, Registerer: reg,
	})
	if err != nil {
		client.Close()
		return nil, nil, err
	}
	p, err := presence.NewRedis(presence.RedisOptions{
		Client: client, Instance: instanceID, TTL: cfg.PresenceTTL, Timeout: cfg.Timeout,
		MaxPending: cfg.PresenceMaxPending, Logger: log, Registerer: reg,
	})
	if err != nil {
		_ = b.Close()
		client.Close()
		return nil, nil, err
	}
	store.Store(p)
	shared := &redisShared{client: client}
	shared.refs.Store(2)
	mode := "standalone (PUBLISH/SUBSCRIBE)"
	if sharded {
		mode = fmt.Sprintf("cluster (SPUBLISH/SSUBSCRIBE over %d channel groups)", cfg.PubSubShards)
	}
	log.Info("redis mode: cross-instance broker and presence", "url", cfg.Redacted(), "pubsub", mode,
		"presence_instance", p.ID(), "presence_ttl", cfg.PresenceTTL)
	return &redisBroker{Redis: b, shared: shared}, &redisStore{Redis: p, shared: shared}, nil
}

// redisConnect retries until Redis answers, so that a deployment that starts
// wsedge and Redis together does not crash-loop.
func redisConnect(ctx context.Context, opt rueidis.ClientOption, wait time.Duration, log *slog.Logger) (rueidis.Client, error) {
	deadline := time.Now().Add(wait)
	delay := 100 * time.Millisecond
	for {
		client, err := rueidis.NewClient(opt)
		if err == nil {
			return client, nil
		}
		if time.Now().Add(delay).After(deadline) {
			return nil, fmt.Errorf("redis: connect to %v: %w", opt.InitAddress, err)
		}
		log.Warn("redis: not reachable yet; retrying", "addrs", opt.InitAddress, "err", err, "retry_in", delay)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("redis: connect: %w", ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
	}
}

func redisIsCluster(ctx context.Context, c rueidis.Client, timeout time.Duration) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, max(timeout, time.Second))
	defer cancel()
	info, err := c.Do(ctx, c.B().Info().Section("cluster").Build()).ToString()
	if err != nil {
		return false, fmt.Errorf("redis: INFO cluster (set ?cluster=0 or 1 in REDIS_URL to skip): %w", err)
	}
	return strings.Contains(info, "cluster_enabled:1"), nil
}

// redisShared closes the client when the broker and the store are closed.
type redisShared struct {
	client rueidis.Client
	refs   atomic.Int32
}

func (s *redisShared) release() {
	if s.refs.Add(-1) == 0 {
		s.client.Close()
	}
}

type redisBroker struct {
	*broker.Redis
	shared *redisShared
	once   sync.Once
}

func (b *redisBroker) Close() error {
	err := b.Redis.Close()
	b.once.Do(b.shared.release)
	return err
}

type redisStore struct {
	*presence.Redis
	shared *redisShared
	once   sync.Once
}

func (s *redisStore) Close() error {
	err := s.Redis.Close()
	s.once.Do(s.shared.release)
	return err
}
