package main

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsedge/wsedge/edge/broker"
	"github.com/wsedge/wsedge/edge/presence"
	"github.com/wsedge/wsedge/internal/redisconn"
	"github.com/wsedge/wsedge/internal/testenv"
)

func redisEnv(m map[string]string) env {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

func TestLoadRedisConfig(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		check   func(t *testing.T, c redisConfig)
		wantErr string
	}{
		{name: "empty is memory mode", env: nil, check: func(t *testing.T, c redisConfig) {
			if c.URL != "" || len(c.Client.InitAddress) != 0 {
				t.Fatalf("%+v", c)
			}
			if c.Timeout != time.Second || c.PublishBacklog != broker.DefaultRedisBacklog || c.PresenceTTL != presence.DefaultRedisTTL {
				t.Fatalf("defaults: %+v", c)
			}
		}},
		{name: "standalone with credentials and db", env: map[string]string{"REDIS_URL": "redis://user:s3cret@cache.internal:6380/2"},
			check: func(t *testing.T, c redisConfig) {
				o := c.Client
				if len(o.InitAddress) != 1 || o.InitAddress[0] != "cache.internal:6380" || o.Username != "user" || o.Password != "s3cret" || o.SelectDB != 2 {
					t.Fatalf("%+v", o)
				}
				if c.Cluster != redisconn.Auto || o.TLSConfig != nil {
					t.Fatalf("cluster %q tls %v", c.Cluster, o.TLSConfig)
				}
				if strings.Contains(c.Redacted(), "s3cret") {
					t.Fatalf("Redacted leaks the password: %s", c.Redacted())
				}
			}},
		{name: "seed form", env: map[string]string{"REDIS_URL": "redis://redis:6379/0"}, check: func(t *testing.T, c redisConfig) {
			if c.Client.InitAddress[0] != "redis:6379" {
				t.Fatalf("%+v", c.Client)
			}
		}},
		{name: "default port", env: map[string]string{"REDIS_URL": "redis://redis"}, check: func(t *testing.T, c redisConfig) {
			if c.Client.InitAddress[0] != "redis:6379" {
				t.Fatalf("%+v", c.Client.InitAddress)
			}
		}},
		{name: "tls", env: map[string]string{"REDIS_URL": "rediss://:pw@master.abc.cache.amazonaws.com:6379"}, check: func(t *testing.T, c redisConfig) {
			o := c.Client
			if o.TLSConfig == nil || o.TLSConfig.ServerName != "master.abc.cache.amazonaws.com" || o.TLSConfig.InsecureSkipVerify || o.Password != "pw" {
				t.Fatalf("%+v", o)
			}
		}},
		{name: "tls skip verify", env: map[string]string{"REDIS_URL": "rediss://h:1?skip_verify=1"}, check: func(t *testing.T, c redisConfig) {
			if !c.Client.TLSConfig.InsecureSkipVerify {
				t.Fatal("skip_verify ignored")
			}
		}},
		{name: "cluster comma form", env: map[string]string{"REDIS_URL": "redis://u:p@h1:7000,h2:7001,h3:7002"}, check: func(t *testing.T, c redisConfig) {
			if strings.Join(c.Client.InitAddress, " ") != "h1:7000 h2:7001 h3:7002" || c.Cluster != redisconn.Cluster || c.Client.Password != "p" {
				t.Fatalf("%+v %q", c.Client.InitAddress, c.Cluster)
			}
		}},
		{name: "cluster addr form", env: map[string]string{"REDIS_URL": "redis://h1:7000?addr=h2:7001&addr=h3:7002"}, check: func(t *testing.T, c redisConfig) {
			if len(c.Client.InitAddress) != 3 || c.Cluster != redisconn.Cluster {
				t.Fatalf("%+v %q", c.Client.InitAddress, c.Cluster)
			}
		}},
		{name: "cluster forced on one seed", env: map[string]string{"REDIS_URL": "redis://cfg.cache:6379?cluster=1"}, check: func(t *testing.T, c redisConfig) {
			if c.Cluster != redisconn.Cluster || len(c.Client.InitAddress) != 1 {
				t.Fatalf("%+v %q", c.Client.InitAddress, c.Cluster)
			}
		}},
		{name: "cluster off", env: map[string]string{"REDIS_URL": "redis://h:1?cluster=0"}, check: func(t *testing.T, c redisConfig) {
			if c.Cluster != redisconn.Standalone {
				t.Fatalf("%q", c.Cluster)
			}
		}},
		{name: "knobs", env: map[string]string{"REDIS_URL": "redis://h:1", "REDIS_TIMEOUT": "250ms", "REDIS_PUBLISH_BACKLOG": "500",
			"REDIS_PUBSUB_SHARDS": "4", "REDIS_PRESENCE_TTL": "30s", "REDIS_PRESENCE_MAX_PENDING": "1000", "REDIS_CACHE_SIZE": "8MiB",
			"REDIS_PING_INTERVAL": "5s", "REDIS_CONNECT_TIMEOUT": "0s"},
			check: func(t *testing.T, c redisConfig) {
				if c.Timeout != 250*time.Millisecond || c.PublishBacklog != 500 || c.PubSubShards != 4 || c.PresenceTTL != 30*time.Second ||
					c.PresenceMaxPending != 1000 || c.CacheSize != 8<<20 || c.PingInterval != 5*time.Second || c.ConnectTimeout != 0 {
					t.Fatalf("%+v", c)
				}
			}},
		{name: "bad scheme", env: map[string]string{"REDIS_URL": "http://h:1"}, wantErr: "scheme"},
		{name: "no scheme", env: map[string]string{"REDIS_URL": "h:6379"}, wantErr: "want redis://"},
		{name: "empty host in list", env: map[string]string{"REDIS_URL": "redis://h1:1,,h3:3"}, wantErr: "empty host"},
		{name: "cluster with db", env: map[string]string{"REDIS_URL": "redis://h1:1,h2:2/3"}, wantErr: "database 0"},
		{name: "several nodes but cluster=0", env: map[string]string{"REDIS_URL": "redis://h1:1,h2:2?cluster=0"}, wantErr: "cluster=0"},
		{name: "bad cluster flag", env: map[string]string{"REDIS_URL": "redis://h:1?cluster=maybe"}, wantErr: "cluster="},
		{name: "bad db", env: map[string]string{"REDIS_URL": "redis://h:1/x"}, wantErr: "database"},
		{name: "password not echoed", env: map[string]string{"REDIS_URL": "redis://u:hunter2@h:1/x"}, wantErr: "database"},
		{name: "ttl too short", env: map[string]string{"REDIS_PRESENCE_TTL": "1s"}, wantErr: "REDIS_PRESENCE_TTL"},
		{name: "backlog not a number", env: map[string]string{"REDIS_PUBLISH_BACKLOG": "lots"}, wantErr: "REDIS_PUBLISH_BACKLOG"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadRedisConfig(redisEnv(tt.env))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Fatalf("error leaks the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

// Every documented knob is read: setting it to garbage is an error.
func TestRedisSettingsAreRead(t *testing.T) {
	for _, s := range settings {
		if !strings.HasPrefix(s.key, "REDIS_") || s.key == "REDIS_URL" {
			continue
		}
		if _, err := loadRedisConfig(redisEnv(map[string]string{s.key: "garbage"})); err == nil || !strings.Contains(err.Error(), s.key) {
			t.Errorf("%s=garbage: err = %v", s.key, err)
		}
	}
}

type collected struct {
	mu  sync.Mutex
	got map[string][]string
}

func (c *collected) handle(s string, _ uint64, p []byte) bool {
	c.mu.Lock()
	if c.got == nil {
		c.got = map[string][]string{}
	}
	c.got[s] = append(c.got[s], string(p))
	c.mu.Unlock()
	return true
}

func (c *collected) count(s string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.got[s])
}

func TestNewRedisBackends(t *testing.T) {
	r := testenv.StartRedis(t)
	c := testenv.StartRedisCluster(t, 3)
	tests := []struct {
		name    string
		url     string
		sharded bool
	}{
		{"standalone", r.URL(), false},
		{"cluster", c.URL(), true},
		{"cluster comma form", "redis://" + strings.Join(c.Addrs, ","), true},
		{"standalone detected", "redis://" + r.Addr, false},
	}
	log := slog.New(slog.DiscardHandler)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := loadRedisConfig(redisEnv(map[string]string{"REDIS_URL": tt.url}))
			if err != nil {
				t.Fatal(err)
			}
			reg := prometheus.NewRegistry()
			var ra, rb collected
			ia, err := newRedisBackends(context.Background(), cfg, "a", log, reg)
			if err != nil {
				t.Fatal(err)
			}
			ib, err := newRedisBackends(context.Background(), cfg, "b", log, prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			ba, pa, bb, pb := ia.broker, ia.presence, ib.broker, ib.presence
			if ba == nil || pa == nil {
				t.Fatal("no broker or presence store")
			}
			if err := errors.Join(ba.Start(ra.handle), bb.Start(rb.handle)); err != nil {
				t.Fatal(err)
			}
			_ = ba.Subscribe("s")
			_ = bb.Subscribe("s")
			deadline := time.Now().Add(5 * time.Second)
			for rb.count("s") == 0 {
				if time.Now().After(deadline) {
					t.Fatal("no cross-instance delivery")
				}
				_ = ba.Publish("s", []byte("x"))
				time.Sleep(20 * time.Millisecond)
			}
			_ = pa.Join(presence.Member{SessionID: "s", ConnectionID: "c1", UserType: "u", ClientType: "web", ConnectedAt: 1})
			for {
				ms, err := pb.Members(context.Background(), "s")
				if err == nil && len(ms) == 1 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("presence across instances: %v %v", ms, err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			// Both components' metrics live in one registry.
			mfs, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			components := map[string]bool{}
			for _, mf := range mfs {
				if mf.GetName() != "wsedge_redis_queue_depth" {
					continue
				}
				for _, m := range mf.GetMetric() {
					for _, l := range m.GetLabel() {
						if l.GetName() == "component" {
							components[l.GetValue()] = true
						}
					}
				}
			}
			if !components["broker"] || !components["presence"] {
				t.Fatalf("queue depth components = %v", components)
			}
			for _, c := range []interface{ Close() error }{ia, ib} {
				if err := c.Close(); err != nil {
					t.Fatal(err)
				}
			}
			// The shared client is closed with both users.
			cl := ia.conn.Client()
			err = cl.Do(context.Background(), cl.B().Ping().Build()).Error()
			if err == nil {
				t.Fatal("client still open after Close")
			}
			if tt.sharded != ia.conn.Sharded() {
				t.Fatalf("sharded = %v, want %v", !tt.sharded, tt.sharded)
			}
		})
	}
}

func TestNewRedisBackendsUnreachable(t *testing.T) {
	r := testenv.StartRedis(t)
	r.Stop()
	cfg, err := loadRedisConfig(redisEnv(map[string]string{"REDIS_URL": r.URL(), "REDIS_CONNECT_TIMEOUT": "300ms"}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = newRedisBackends(context.Background(), cfg, "a", slog.New(slog.DiscardHandler), nil)
	if err == nil {
		t.Fatal("want an error when Redis never answers")
	}
	if errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}
