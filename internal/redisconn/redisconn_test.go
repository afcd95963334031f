package redisconn

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/wsedge/wsedge/internal/testenv"
)

func TestOpen(t *testing.T) {
	r := testenv.StartRedis(t)
	c := testenv.StartRedisCluster(t, 3)
	tests := []struct {
		name    string
		addrs   []string
		mode    Mode
		sharded bool
	}{
		{"standalone detected", []string{r.Addr}, Auto, false},
		{"cluster detected", c.Addrs, Auto, true},
		{"standalone forced", []string{r.Addr}, Standalone, false},
		{"cluster forced", c.Addrs, Cluster, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := Open(context.Background(), Options{Client: rueidis.ClientOption{InitAddress: tt.addrs}, Mode: tt.mode, Instance: "a b\x00c"})
			if err != nil {
				t.Fatal(err)
			}
			if conn.Sharded() != tt.sharded {
				t.Fatalf("Sharded = %v, want %v", conn.Sharded(), tt.sharded)
			}
			if !strings.HasPrefix(conn.ID(), "a_b_c/") || len(conn.ID()) != len("a_b_c/")+8 {
				t.Fatalf("ID = %q, want a_b_c/ and 8 hex digits", conn.ID())
			}
			if conn.Timeout() != DefaultTimeout {
				t.Fatalf("Timeout = %v", conn.Timeout())
			}
			cl := conn.Client()
			if err := cl.Do(context.Background(), cl.B().Ping().Build()).Error(); err != nil {
				t.Fatal(err)
			}
			conn.Close()
			// (A closed cluster client may still answer a PING from a node
			// connection it has not torn down yet.)
			if err := cl.Do(context.Background(), cl.B().Ping().Build()).Error(); err == nil && !tt.sharded {
				t.Fatal("client still open after Close")
			}
		})
	}
}

// Two processes with one name get two ids.
func TestIDUnique(t *testing.T) {
	a, b := instanceID("x"), instanceID("x")
	if a == b {
		t.Fatalf("two ids %q", a)
	}
	if long := instanceID(strings.Repeat("n", 300)); len(long) != 100+1+8 {
		t.Fatalf("long name: %d bytes", len(long))
	}
}

func TestOpenUnreachable(t *testing.T) {
	r := testenv.StartRedis(t)
	r.Stop()
	_, err := Open(context.Background(), Options{Client: rueidis.ClientOption{InitAddress: []string{r.Addr}}, ConnectTimeout: 300 * time.Millisecond})
	if err == nil || errors.Is(err, context.Canceled) {
		t.Fatalf("Open = %v, want a connect error", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Open(ctx, Options{Client: rueidis.ClientOption{InitAddress: []string{r.Addr}}, ConnectTimeout: time.Minute}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Open with a cancelled context = %v", err)
	}
}

// Open retries until Redis comes up.
func TestOpenWaits(t *testing.T) {
	r := testenv.StartRedis(t)
	r.Stop()
	go func() {
		time.Sleep(300 * time.Millisecond)
		r.Start()
	}()
	conn, err := Open(context.Background(), Options{Client: rueidis.ClientOption{InitAddress: []string{r.Addr}}, ConnectTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
}

// A server restart reaches every OnLost hook.
func TestOnLost(t *testing.T) {
	r := testenv.StartRedis(t)
	conn := openStandalone(t, r.Addr)
	var a, b atomic.Int32
	conn.OnLost(func() { a.Add(1) })
	conn.OnLost(func() { b.Add(1) })
	cl := conn.Client()
	// A cached read opens the tracking connection that reports the loss.
	if err := cl.DoCache(context.Background(), cl.B().Get().Key("k").Cache(), time.Minute).Error(); err != nil && !rueidis.IsRedisNil(err) {
		t.Fatal(err)
	}
	r.Restart()
	testenv.WaitFor(t, "both hooks", 10*time.Second, func() bool {
		_ = cl.Do(context.Background(), cl.B().Ping().Build()).Error()
		return a.Load() > 0 && b.Load() > 0
	})
}

// Pipeline splits into round trips of MaxPipeline and stops at the first
// error each returns.
func TestPipeline(t *testing.T) {
	r := testenv.StartRedis(t)
	conn := openStandalone(t, r.Addr)
	cl := conn.Client()
	cmds := make(rueidis.Commands, 2*MaxPipeline+1)
	for i := range cmds {
		cmds[i] = cl.B().Incr().Key("n").Build()
	}
	var sizes []int
	err := conn.Pipeline(context.Background(), time.Second, cmds, func(res []rueidis.RedisResult, _ time.Duration) error {
		sizes = append(sizes, len(res))
		return nil
	})
	if err != nil || len(sizes) != 3 || sizes[0] != MaxPipeline || sizes[2] != 1 {
		t.Fatalf("err %v, round trips %v", err, sizes)
	}
	stop := errors.New("stop")
	calls := 0
	for i := range cmds {
		cmds[i] = cl.B().Incr().Key("n").Build()
	}
	err = conn.Pipeline(context.Background(), 0, cmds, func([]rueidis.RedisResult, time.Duration) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("err %v after %d calls", err, calls)
	}
	n, err := cl.Do(context.Background(), cl.B().Get().Key("n").Build()).AsInt64()
	if err != nil || n != int64(len(cmds)+MaxPipeline) {
		t.Fatalf("n = %d, %v", n, err)
	}
}

// openStandalone opens a connection to addr, closed with the test.
func openStandalone(t *testing.T, addr string) *Conn {
	t.Helper()
	conn, err := Open(context.Background(), Options{Client: rueidis.ClientOption{InitAddress: []string{addr}}, Mode: Standalone})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	return conn
}
