// Package testenv starts throw-away servers for tests (redis-server, a Redis
// Cluster, PostgreSQL) on free loopback ports, and holds the small helpers
// those tests share. Its core returns errors (LaunchRedis,
// LaunchRedisCluster, FreeLoopbackAddr) so benchmarks use it too; the
// testing.TB helpers sit on top and fail the test instead.
package testenv

import (
	"fmt"
	"net"
	"testing"
	"time"
)

// FreePort returns a loopback TCP port that is free now.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// FreeAddr returns a free loopback "host:port" for a server under test.
func FreeAddr(t testing.TB) string {
	t.Helper()
	a, err := FreeLoopbackAddr()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// FreeLoopbackAddr is FreeAddr for programs (benchmarks).
func FreeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// WaitFor polls cond every 10 ms and fails the test after d.
func WaitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
