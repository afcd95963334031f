package testenv

import (
	"strings"
	"testing"
)

func TestRedisLifecycle(t *testing.T) {
	r := StartRedis(t)
	if _, err := r.Command("SET", "k", "v"); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if v, err := r.Command("GET", "k"); err != nil || v != "v" {
		t.Fatalf("GET = %q, %v; want v", v, err)
	}
	r.Stop()
	if r.Running() {
		t.Fatal("Running after Stop")
	}
	if err := redisPing(r.Addr); err == nil {
		t.Fatal("PING answered after Stop")
	}
	r.Start()
	// Persistence is off: a restarted server is empty.
	if v, err := r.Command("EXISTS", "k"); err != nil || v != "0" {
		t.Fatalf("EXISTS after restart = %q, %v; want 0", v, err)
	}
	r.Kill()
	if r.Running() {
		t.Fatal("Running after Kill")
	}
	r.Restart()
	if err := redisPing(r.Addr); err != nil {
		t.Fatalf("PING after Restart: %v", err)
	}
	if !strings.HasPrefix(r.URL(), "redis://127.0.0.1:") {
		t.Fatalf("URL = %q", r.URL())
	}
}

func TestRedisCluster(t *testing.T) {
	c := StartRedisCluster(t, 3)
	if len(c.Addrs) != 3 {
		t.Fatalf("Addrs = %v", c.Addrs)
	}
	for _, a := range c.Addrs {
		info, err := redisCommand(a, "CLUSTER", "INFO")
		if err != nil {
			t.Fatalf("CLUSTER INFO %s: %v", a, err)
		}
		if !strings.Contains(info, "cluster_known_nodes:3") {
			t.Fatalf("%s: %s", a, info)
		}
	}
	if got := strings.Count(c.URL(), "addr="); got != 2 {
		t.Fatalf("URL = %q, want two addr= parameters", c.URL())
	}
}
