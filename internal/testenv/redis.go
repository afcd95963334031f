// Every server listens on loopback on a port chosen for the test, keeps its
// files in t.TempDir(), and is stopped by t.Cleanup. A missing binary fails
// the test with the command that installs it: tests never skip.
package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// redisInstall is the exact command printed when a Redis binary is missing.
const redisInstall = "apt-get install -y redis-server"

// Redis is one redis-server process owned by a test.
type Redis struct {
	// Addr is host:port, e.g. 127.0.0.1:23456.
	Addr string
	// Port is the TCP port (stable across Restart).
	Port int

	t       testing.TB
	dir     string
	cluster bool

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// StartRedis starts a standalone redis-server on a free loopback port with
// persistence off, and stops it when the test ends.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	redisBinary(t, "redis-server")
	r, err := LaunchRedis(t.TempDir())
	if err != nil {
		t.Fatalf("redis: %v", err)
	}
	r.t = t
	t.Cleanup(r.Kill)
	return r
}

// LaunchRedis is StartRedis for programs (benchmarks): it keeps its files in
// dir, returns errors, and the caller stops the server (Kill).
func LaunchRedis(dir string) (*Redis, error) {
	return launchRedis(dir, false)
}

func launchRedis(dir string, cluster bool) (*Redis, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, fmt.Errorf("redis-server not found: run %s", redisInstall)
	}
	var lastErr error
	// A free port can be taken between the probe and redis' bind; retry a few.
	for range 5 {
		port, err := redisFreePort(cluster)
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		r := &Redis{dir: dir, cluster: cluster, Port: port, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
		if lastErr = r.start(); lastErr == nil {
			return r, nil
		}
	}
	return nil, fmt.Errorf("could not start: %w", lastErr)
}

// URL is the redis:// URL of the server (database 0).
func (r *Redis) URL() string { return "redis://" + r.Addr + "/0" }

// Start starts a stopped server again on the same port (data is gone).
func (r *Redis) Start() {
	if r.t != nil {
		r.t.Helper()
	}
	var err error
	// The port was ours a moment ago; rebinding can fail briefly while the
	// old socket closes, so retry for up to a few seconds.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if err = r.start(); err == nil {
			return
		}
	}
	if r.t == nil {
		panic(fmt.Sprintf("redis %s: restart: %v", r.Addr, err))
	}
	r.t.Fatalf("redis %s: restart: %v", r.Addr, err)
}

// Stop shuts the server down with SIGTERM and waits for it to exit.
func (r *Redis) Stop() { r.signal(syscall.SIGTERM) }

// Kill stops the server with SIGKILL (a crash) and waits for it to exit.
// It is safe to call on a stopped server.
func (r *Redis) Kill() { r.signal(syscall.SIGKILL) }

// Restart stops the server and starts it again on the same port. With
// persistence off, the new server is empty, like a failed-over cache node.
func (r *Redis) Restart() {
	if r.t != nil {
		r.t.Helper()
	}
	r.Stop()
	r.Start()
}

// PID is the server's process id (0 before it started).
func (r *Redis) PID() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil || r.cmd.Process == nil {
		return 0
	}
	return r.cmd.Process.Pid
}

// Running reports whether the process is alive.
func (r *Redis) Running() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done == nil {
		return false
	}
	select {
	case <-r.done:
		return false
	default:
		return true
	}
}

func (r *Redis) signal(sig syscall.Signal) {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

func (r *Redis) start() error {
	args := []string{
		"--port", strconv.Itoa(r.Port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", r.dir,
		"--logfile", filepath.Join(r.dir, "redis.log"),
		"--daemonize", "no",
		"--protected-mode", "no",
	}
	if r.cluster {
		args = append(args,
			"--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(r.dir, "nodes.conf"),
			"--cluster-node-timeout", "2000",
		)
	}
	cmd := exec.Command("redis-server", args...)
	cmd.Dir = r.dir
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	r.mu.Lock()
	r.cmd, r.done = cmd, done
	r.mu.Unlock()

	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-done:
			return fmt.Errorf("redis-server on %s exited at start: %s", r.Addr, redisLogTail(r.dir))
		default:
		}
		if err := redisPing(r.Addr); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("redis-server on %s not answering PING: %w", r.Addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// RedisCluster is a Redis Cluster of masters without replicas.
type RedisCluster struct {
	// Addrs are the masters' host:port.
	Addrs []string
	// Nodes are the servers, in the order of Addrs.
	Nodes []*Redis
}

// StartRedisCluster starts n cluster-enabled redis-servers, joins them with
// `redis-cli --cluster create`, and waits until every node reports
// cluster_state:ok.
func StartRedisCluster(t testing.TB, n int) *RedisCluster {
	t.Helper()
	redisBinary(t, "redis-server")
	redisBinary(t, "redis-cli")
	c, err := LaunchRedisCluster(n, t.TempDir)
	for _, r := range c.Nodes {
		r.t = t
		t.Cleanup(r.Kill)
	}
	if err != nil {
		t.Fatalf("redis cluster: %v", err)
	}
	return c
}

// LaunchRedisCluster is StartRedisCluster for programs: each node keeps its
// files in a directory from newDir, errors are returned, and the caller
// stops the nodes (Kill), also those in Nodes when it returns an error.
func LaunchRedisCluster(n int, newDir func() string) (*RedisCluster, error) {
	c := &RedisCluster{}
	if n < 3 {
		return c, fmt.Errorf("need at least 3 masters, got %d", n)
	}
	if _, err := exec.LookPath("redis-cli"); err != nil {
		return c, fmt.Errorf("redis-cli not found: run %s", redisInstall)
	}
	for range n {
		r, err := launchRedis(newDir(), true)
		if err != nil {
			return c, fmt.Errorf("node: %w", err)
		}
		c.Nodes = append(c.Nodes, r)
		c.Addrs = append(c.Addrs, r.Addr)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	out, err := exec.Command("redis-cli", args...).CombinedOutput()
	if err != nil {
		return c, fmt.Errorf("redis-cli --cluster create: %v\n%s", err, out)
	}
	return c, c.waitOK(30 * time.Second)
}

// URL is a redis:// URL naming every master: the first in the authority, the
// others as addr= parameters (the form rueidis.ParseURL reads).
func (c *RedisCluster) URL() string {
	var b strings.Builder
	b.WriteString("redis://")
	b.WriteString(c.Addrs[0])
	for i, a := range c.Addrs[1:] {
		if i == 0 {
			b.WriteString("?")
		} else {
			b.WriteString("&")
		}
		b.WriteString("addr=")
		b.WriteString(a)
	}
	return b.String()
}

// Stop stops every node with SIGTERM.
func (c *RedisCluster) Stop() {
	for _, r := range c.Nodes {
		r.Stop()
	}
}

// Start starts every stopped node again (they keep nodes.conf, so the
// cluster re-forms with the same slots, but the data is gone) and waits for
// cluster_state:ok.
func (c *RedisCluster) Start() {
	for _, r := range c.Nodes {
		if !r.Running() {
			r.Start()
		}
	}
	if err := c.waitOK(30 * time.Second); err != nil {
		if c.Nodes[0].t == nil {
			panic(fmt.Sprintf("redis cluster restart: %v", err))
		}
		c.Nodes[0].t.Fatalf("redis cluster restart: %v", err)
	}
}

func (c *RedisCluster) waitOK(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ok := true
		var last string
		for _, a := range c.Addrs {
			info, err := redisCommand(a, "CLUSTER", "INFO")
			if err != nil || !strings.Contains(info, "cluster_state:ok") {
				ok, last = false, fmt.Sprintf("%s: %v %q", a, err, info)
				break
			}
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster not ok after %s: %s", timeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func redisBinary(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s not found: run %s", name, redisInstall)
	}
}

// redisFreePort picks a loopback port that is free now. With bus set, port +
// 10000 (the cluster bus) must be free too, so ports come from a range where
// that sum stays valid.
func redisFreePort(bus bool) (int, error) {
	for range 200 {
		port := 20000 + rand.IntN(25000)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		if bus {
			l2, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+10000)))
			if err != nil {
				l.Close()
				continue
			}
			l2.Close()
		}
		l.Close()
		return port, nil
	}
	return 0, errors.New("no free port found in 200 tries")
}

func redisPing(addr string) error {
	v, err := redisCommand(addr, "PING")
	if err != nil {
		return err
	}
	if v != "PONG" {
		return fmt.Errorf("PING answered %q", v)
	}
	return nil
}

// redisCommand sends one command in RESP and returns a simple, error or bulk
// string reply. It exists so that this package needs no Redis client.
func redisCommand(addr string, args ...string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return "", err
	}
	rd := bufio.NewReader(conn)
	line, err := rd.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("empty reply")
	}
	switch line[0] {
	case '+':
		return line[1:], nil
	case '-':
		return "", errors.New(line[1:])
	case ':':
		return line[1:], nil
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(rd, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return "", fmt.Errorf("unexpected reply %q", line)
}

// RedisCommand sends one command to the server at addr and returns its
// simple, integer or bulk string reply (benchmarks read INFO with it).
func RedisCommand(addr string, args ...string) (string, error) { return redisCommand(addr, args...) }

// Command sends one command to the server and returns its simple, integer or
// bulk string reply. Tests use it to inspect keys without a client library.
func (r *Redis) Command(args ...string) (string, error) { return redisCommand(r.Addr, args...) }

func redisLogTail(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "redis.log"))
	if err != nil {
		return err.Error()
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}
