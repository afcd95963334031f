// Package redisconn is the one Redis connection of a wsedge process: it
// connects (retrying while Redis starts), finds out whether it talks to a
// Cluster, names the process, fans rueidis' "connection lost" signal out to
// whoever registered for it, and sends pipelines in bounded round trips. The
// Redis broker and the Redis presence store both run on it; whoever opened it
// closes it after both.
package redisconn

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/wsedge/wsedge/internal/backoff"
)

// Defaults of Options.
const (
	DefaultTimeout      = time.Second
	DefaultPingInterval = 30 * time.Second
	// MaxPipeline bounds the commands of one pipelined round trip; rueidis
	// moves pipelines above BlockingPipeline (2000) to a separate pool.
	MaxPipeline = 1500
	// maxConnectDelay caps the pause between connection attempts at start.
	maxConnectDelay = 2 * time.Second
)

// Mode says how pub/sub is routed.
type Mode int

const (
	// Auto asks the server (INFO cluster).
	Auto Mode = iota
	// Cluster selects sharded pub/sub (SPUBLISH/SSUBSCRIBE).
	Cluster
	// Standalone selects classic pub/sub (PUBLISH/SUBSCRIBE).
	Standalone
)

func (m Mode) String() string {
	switch m {
	case Cluster:
		return "cluster"
	case Standalone:
		return "standalone"
	}
	return "auto"
}

// Options configures Open.
type Options struct {
	// Client is the parsed connection options (addresses, credentials, TLS,
	// database); Open adds timeouts, the cache size, a client name and the
	// invalidation hook.
	Client rueidis.ClientOption
	// Mode is Auto, Cluster or Standalone.
	Mode Mode
	// Instance names this process; a random suffix makes ID unique per
	// process, so two processes never share (or clean up) each other's state.
	Instance string
	// Timeout bounds every Redis call of the users of the connection.
	// Default DefaultTimeout.
	Timeout time.Duration
	// ConnectTimeout is how long Open retries before it fails; 0: one try.
	ConnectTimeout time.Duration
	// PingInterval is the TCP keep-alive period. Default DefaultPingInterval.
	PingInterval time.Duration
	// CacheSize is the client-side cache per connection in bytes; 0 leaves
	// rueidis' default.
	CacheSize int
	// Logger receives connection attempts. Default slog.Default().
	Logger *slog.Logger
}

// Conn is an open Redis connection (a rueidis client and what its users need
// to know about it). It is safe for concurrent use.
type Conn struct {
	client  rueidis.Client
	id      string
	sharded bool
	timeout time.Duration
	log     *slog.Logger

	mu   sync.Mutex
	lost []func()
}

// Open connects, retrying with a jittered backoff for up to
// o.ConnectTimeout, so that a deployment starting wsedge and Redis together
// does not crash-loop, and resolves Auto with INFO cluster.
func Open(ctx context.Context, o Options) (*Conn, error) {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.PingInterval <= 0 {
		o.PingInterval = DefaultPingInterval
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	c := &Conn{id: instanceID(o.Instance), timeout: o.Timeout, log: o.Logger}
	opt := o.Client
	if opt.Dialer.Timeout == 0 {
		opt.Dialer.Timeout = min(max(2*o.Timeout, time.Second), 10*time.Second)
	}
	opt.Dialer.KeepAlive = o.PingInterval
	// A pipelined call that gets no answer for this long kills the
	// connection (and its pings time out after it).
	opt.ConnWriteTimeout = max(5*o.Timeout, 3*time.Second)
	if o.CacheSize > 0 {
		opt.CacheSizeEachConn = o.CacheSize
	}
	if opt.ClientName == "" {
		// Redis refuses names with spaces or control characters.
		opt.ClientName = "wsedge:" + strings.Map(func(r rune) rune {
			if r <= ' ' || r > '~' {
				return '_'
			}
			return r
		}, o.Instance)
	}
	// rueidis calls OnInvalidations(nil) when a connection is lost or the
	// server flushed its data.
	opt.OnInvalidations = func(m []rueidis.RedisMessage) {
		if m == nil {
			c.fireLost()
		}
	}
	client, err := connect(ctx, opt, o.ConnectTimeout, o.Logger)
	if err != nil {
		return nil, err
	}
	c.client = client
	switch o.Mode {
	case Cluster:
		c.sharded = true
	case Auto:
		if c.sharded, err = isCluster(ctx, client, o.Timeout); err != nil {
			client.Close()
			return nil, err
		}
	}
	return c, nil
}

// connect retries rueidis.NewClient until Redis answers or wait has passed.
func connect(ctx context.Context, opt rueidis.ClientOption, wait time.Duration, log *slog.Logger) (rueidis.Client, error) {
	deadline := time.Now().Add(wait)
	// The first retry comes after about 100 ms.
	delay := 50 * time.Millisecond
	for {
		client, err := rueidis.NewClient(opt)
		if err == nil {
			return client, nil
		}
		delay = backoff.Next(delay, maxConnectDelay)
		if time.Now().Add(delay).After(deadline) {
			return nil, fmt.Errorf("redis: connect to %v: %w", opt.InitAddress, err)
		}
		log.Warn("redis: not reachable yet; retrying", "addrs", opt.InitAddress, "err", err, "retry_in", delay)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("redis: connect: %w", ctx.Err())
		case <-time.After(delay):
		}
	}
}

func isCluster(ctx context.Context, c rueidis.Client, timeout time.Duration) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, max(timeout, time.Second))
	defer cancel()
	info, err := c.Do(ctx, c.B().Info().Section("cluster").Build()).ToString()
	if err != nil {
		return false, fmt.Errorf("redis: INFO cluster (set ?cluster=0 or 1 in REDIS_URL to skip): %w", err)
	}
	return strings.Contains(info, "cluster_enabled:1"), nil
}

// instanceID is name (spaces and NULs replaced: the id is a field of encoded
// presence records and of index entries, both space- or NUL-separated; at
// most 100 bytes: the broker's envelope gives it one length byte), a slash
// and a random suffix.
func instanceID(name string) string {
	inst := strings.Map(func(r rune) rune {
		if r == ' ' || r == 0 {
			return '_'
		}
		return r
	}, name)
	if len(inst) > 100 {
		inst = inst[:100]
	}
	var nonce [4]byte
	_, _ = crand.Read(nonce[:])
	return inst + "/" + hex.EncodeToString(nonce[:])
}

// Client is the rueidis client.
func (c *Conn) Client() rueidis.Client { return c.client }

// ID names this process in Redis: the instance name and a random suffix.
func (c *Conn) ID() string { return c.id }

// Sharded reports whether pub/sub is sharded (Redis Cluster).
func (c *Conn) Sharded() bool { return c.sharded }

// Timeout bounds one Redis call.
func (c *Conn) Timeout() time.Duration { return c.timeout }

// Logger is the logger given to Open.
func (c *Conn) Logger() *slog.Logger { return c.log }

// OnLost registers f to run when a connection is lost or the server flushed
// its data (rueidis' OnInvalidations(nil)). f runs on a rueidis goroutine
// and must not block.
func (c *Conn) OnLost(f func()) {
	c.mu.Lock()
	c.lost = append(c.lost, f)
	c.mu.Unlock()
}

func (c *Conn) fireLost() {
	c.mu.Lock()
	fs := c.lost
	c.mu.Unlock()
	for _, f := range fs {
		f()
	}
}

// Pipeline sends cmds in round trips of at most MaxPipeline commands. Each
// round trip is bounded by per (when > 0, so that a long pipeline is not cut
// off by a timeout meant for one round trip) and by ctx. each sees every
// round trip's results and duration; Pipeline stops at the first error it
// returns.
func (c *Conn) Pipeline(ctx context.Context, per time.Duration, cmds rueidis.Commands,
	each func(res []rueidis.RedisResult, took time.Duration) error) error {
	for len(cmds) > 0 {
		n := min(len(cmds), MaxPipeline)
		err := func() error {
			cctx := ctx
			if per > 0 {
				var cancel context.CancelFunc
				cctx, cancel = context.WithTimeout(ctx, per)
				defer cancel()
			}
			start := time.Now()
			res := c.client.DoMulti(cctx, cmds[:n]...)
			return each(res, time.Since(start))
		}()
		if err != nil {
			return err
		}
		cmds = cmds[n:]
	}
	return nil
}

// Close closes the client. Close the connection's users first.
func (c *Conn) Close() {
	c.client.Close()
}
