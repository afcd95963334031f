package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/wsedge/wsedge/internal/testenv"
)

// End-to-end: several wsedge processes share one Redis (standalone or a
// 3-master cluster); real WebSocket clients talk to them.

// The identity e2eBinary links in.
const (
	versionPkg  = "github.com/wsedge/wsedge/internal/version"
	e2eVersion  = "v0.0.0-e2e"
	e2eRevision = "e2e0123456789"
)

var (
	e2eBinOnce sync.Once
	e2eBin     string
	e2eBinErr  error
)

// e2eBinary builds cmd/wsedge once per test run (go test puts its own go
// first on PATH).
func e2eBinary(t *testing.T) string {
	t.Helper()
	e2eBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "wsedge-e2e-")
		if err != nil {
			e2eBinErr = err
			return
		}
		e2eBin = filepath.Join(dir, "wsedge")
		// Linked like `make build`, so that version tests see what -X sets.
		out, err := exec.Command("go", "build", "-ldflags", "-X "+versionPkg+".version="+e2eVersion+
			" -X "+versionPkg+".revision="+e2eRevision, "-o", e2eBin, ".").CombinedOutput()
		if err != nil {
			e2eBinErr = fmt.Errorf("go build ./cmd/wsedge: %v\n%s", err, out)
		}
	})
	if e2eBinErr != nil {
		t.Fatal(e2eBinErr)
	}
	return e2eBin
}

type e2eInstance struct {
	name string
	addr string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
}

// startInstance runs wsedge with REDIS_URL and waits for /health/ and for
// its log to show that it runs in Redis mode.
func startInstance(t *testing.T, name, redisURL string) *e2eInstance {
	t.Helper()
	bin := e2eBinary(t)
	in := &e2eInstance{name: name, addr: testenv.FreeAddr(t), log: filepath.Join(t.TempDir(), name+".log"), done: make(chan struct{})}
	logf, err := os.Create(in.log)
	if err != nil {
		t.Fatal(err)
	}
	in.cmd = exec.Command(bin)
	in.cmd.Env = append(os.Environ(),
		"ADDR="+in.addr, "ADMIN_ADDR=127.0.0.1:0", "DEBUG=1", "INSTANCE_ID="+name,
		"REDIS_URL="+redisURL, "REDIS_PRESENCE_TTL=3s", "REDIS_TIMEOUT=500ms", "LOG_FORMAT=text", "LOG_LEVEL=debug")
	in.cmd.Stdout, in.cmd.Stderr = logf, logf
	if err := in.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = in.cmd.Wait()
		logf.Close()
		close(in.done)
	}()
	t.Cleanup(func() { in.signal(syscall.SIGKILL) })
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-in.done:
			t.Fatalf("%s exited at start:\n%s", name, in.logTail())
		default:
		}
		resp, err := http.Get("http://" + in.addr + "/health/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: /health/ not 200 after 15s:\n%s", name, in.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(in.logTail(), "redis mode") {
		t.Fatalf("%s runs without Redis although REDIS_URL is set: cmd/wsedge must call newRedisBackends "+
			"when loadRedisConfig returns a URL (docs/REDIS.md, \"Wiring\").\n%s", name, in.logTail())
	}
	return in
}

func (in *e2eInstance) signal(sig syscall.Signal) {
	select {
	case <-in.done:
		return
	default:
	}
	_ = in.cmd.Process.Signal(sig)
	select {
	case <-in.done:
	case <-time.After(10 * time.Second):
		_ = in.cmd.Process.Kill()
		<-in.done
	}
}

func (in *e2eInstance) logTail() string {
	b, _ := os.ReadFile(in.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

type e2eConn struct {
	io.Reader
	io.Writer
}

// e2eClient is a hello'd session socket whose frames are read into a channel.
type e2eClient struct {
	t      *testing.T
	conn   net.Conn
	id     string
	frames chan map[string]any
	wmu    sync.Mutex
}

func dialSession(t *testing.T, in *e2eInstance, session, userType, clientType string) *e2eClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, br, _, err := ws.Dial(ctx, "ws://"+in.addr+"/ws/session/"+session+"/")
	if err != nil {
		t.Fatalf("dial %s: %v", in.name, err)
	}
	c := &e2eClient{t: t, conn: conn, frames: make(chan map[string]any, 4096)}
	t.Cleanup(func() { conn.Close() })
	// Bytes that came with the handshake response sit in br.
	rw := e2eConn{Reader: conn, Writer: conn}
	if br != nil {
		rw.Reader = br
	}
	go func() {
		defer close(c.frames)
		for {
			data, err := wsutil.ReadServerText(rw)
			if err != nil {
				return
			}
			var f map[string]any
			if json.Unmarshal(data, &f) == nil {
				c.frames <- f
			}
		}
	}()
	f := c.next(5 * time.Second)
	if f["type"] != "connected" {
		t.Fatalf("first frame %v", f)
	}
	c.id, _ = f["connection_id"].(string)
	c.send(map[string]any{"type": "hello", "user_type": userType, "client_type": clientType})
	return c
}

func (c *e2eClient) send(v any) {
	b, _ := json.Marshal(v)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := wsutil.WriteClientText(c.conn, b); err != nil {
		c.t.Errorf("write: %v", err)
	}
}

func (c *e2eClient) next(d time.Duration) map[string]any {
	c.t.Helper()
	select {
	case f, ok := <-c.frames:
		if !ok {
			c.t.Fatalf("connection %s closed", c.id)
		}
		return f
	case <-time.After(d):
		c.t.Fatalf("no frame within %s", d)
	}
	return nil
}

// nextOf waits for a frame of one type, dropping others.
func (c *e2eClient) nextOf(typ string, d time.Duration) map[string]any {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			c.t.Fatalf("no %s frame within %s", typ, d)
		}
		if f := c.next(left); f["type"] == typ {
			return f
		}
	}
}

// presence asks for presence and returns the reply (or an error frame).
func (c *e2eClient) presence() map[string]any {
	c.t.Helper()
	c.send(map[string]any{"type": "presence"})
	deadline := time.Now().Add(5 * time.Second)
	for {
		f := c.next(time.Until(deadline))
		if f["type"] == "presence" || (f["type"] == "error" && f["error"] == "presence_unavailable") {
			return f
		}
	}
}

func presenceCount(f map[string]any) int {
	if f["type"] != "presence" {
		return -1
	}
	n, _ := f["count"].(float64)
	return int(n)
}

// waitPresence polls until presence from c reports want members.
func waitPresence(t *testing.T, c *e2eClient, want int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	var f map[string]any
	for {
		f = c.presence()
		if presenceCount(f) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("presence = %v after %s, want count %d", f, d, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestE2ERedis(t *testing.T) {
	r := testenv.StartRedis(t)
	c := testenv.StartRedisCluster(t, 3)
	for _, tt := range []struct {
		name string
		url  string
	}{{"standalone", r.URL()}, {"cluster", c.URL()}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Run("BroadcastAndPresence", func(t *testing.T) { e2eBroadcast(t, tt.url) })
			t.Run("InstanceKilled", func(t *testing.T) { e2eKilled(t, tt.url) })
		})
	}
	t.Run("standalone/RedisRestart", func(t *testing.T) { e2eRedisRestart(t, r) })
}

// Listeners spread over three instances; one sender per instance; every
// listener gets every broadcast, in order per sender, nothing lost.
func e2eBroadcast(t *testing.T, url string) {
	const perInstance, n = 4, 100
	session := "e2e-bc-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	var ins []*e2eInstance
	var clients []*e2eClient
	for i := range 3 {
		in := startInstance(t, fmt.Sprintf("i%d", i), url)
		ins = append(ins, in)
		for range perInstance {
			clients = append(clients, dialSession(t, in, session, "agent", []string{"web", "mobile"}[i%2]))
		}
	}
	total := len(clients)
	// Presence across instances, from each instance.
	for i := range ins {
		waitPresence(t, clients[i*perInstance], total, 5*time.Second)
	}
	f := clients[0].presence()
	byType, _ := f["by_type"].(map[string]any)
	if byType["web"] != float64(2*perInstance) || byType["mobile"] != float64(perInstance) {
		t.Fatalf("by_type = %v", f["by_type"])
	}
	// Subscriptions are live once presence sees everyone? Not necessarily:
	// probe until a broadcast from each instance reaches all listeners.
	for i := range ins {
		sender := clients[i*perInstance]
		deadline := time.Now().Add(5 * time.Second)
		for k := 0; ; k++ {
			probe := fmt.Sprintf("probe-%d-%d", i, k)
			sender.send(map[string]any{"type": "broadcast", "msg": probe})
			ok := true
			for _, c := range clients {
				if !e2eSawProbe(c, probe, 200*time.Millisecond) {
					ok = false
				}
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("instance %d: broadcasts do not reach every listener", i)
			}
		}
	}
	var wg sync.WaitGroup
	for i := range ins {
		sender := clients[i*perInstance]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := range n {
				sender.send(map[string]any{"type": "broadcast", "msg": fmt.Sprintf("s%d:%d", i, seq), "data": seq})
			}
		}()
	}
	wg.Wait()
	for ci, c := range clients {
		next := map[string]int{}
		got := 0
		for got < n*len(ins) {
			f := c.nextOf("session_message", 10*time.Second)
			msg, _ := f["msg"].(string)
			if strings.HasPrefix(msg, "probe-") {
				continue
			}
			sender, seqs, _ := strings.Cut(msg, ":")
			seq, _ := strconv.Atoi(seqs)
			if seq != next[sender] {
				t.Fatalf("client %d: sender %s: got %d, want %d (lost or reordered)", ci, sender, seq, next[sender])
			}
			if f["user_type"] != "agent" {
				t.Fatalf("client %d: frame %v", ci, f)
			}
			next[sender]++
			got++
		}
	}
}

// e2eSawProbe drains c until probe arrives or d passes.
func e2eSawProbe(c *e2eClient, probe string, d time.Duration) bool {
	deadline := time.After(d)
	for {
		select {
		case f, ok := <-c.frames:
			if !ok {
				return false
			}
			if f["type"] == "session_message" && f["msg"] == probe {
				return true
			}
		case <-deadline:
			return false
		}
	}
}

// An instance killed with SIGKILL: its members leave presence within the TTL
// (3 s here) without anyone calling Leave.
func e2eKilled(t *testing.T, url string) {
	session := "e2e-kill-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	a := startInstance(t, "ka", url)
	b := startInstance(t, "kb", url)
	ca := dialSession(t, a, session, "agent", "web")
	for range 3 {
		dialSession(t, b, session, "customer", "web")
	}
	waitPresence(t, ca, 4, 5*time.Second)
	b.signal(syscall.SIGKILL)
	killed := time.Now()
	waitPresence(t, ca, 1, 3*time.Second+2*time.Second)
	t.Logf("killed instance's members gone from presence after %s (TTL 3s)", time.Since(killed))
}

// Redis killed for 10 s mid-test: local delivery continues, /health/ stays 200,
// presence answers presence_unavailable; after Redis returns, cross-instance
// delivery and presence are back within 2 s without any client action.
func e2eRedisRestart(t *testing.T, r *testenv.Redis) {
	session := "e2e-rr-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	a := startInstance(t, "ra", r.URL())
	b := startInstance(t, "rb", r.URL())
	a1 := dialSession(t, a, session, "agent", "web")
	a2 := dialSession(t, a, session, "agent", "web")
	b1 := dialSession(t, b, session, "customer", "web")
	waitPresence(t, b1, 3, 5*time.Second)
	waitCross := func(what string, d time.Duration) time.Duration {
		start := time.Now()
		for k := 0; ; k++ {
			probe := fmt.Sprintf("%s-%d", what, k)
			a1.send(map[string]any{"type": "broadcast", "msg": probe})
			if e2eSawProbe(b1, probe, 100*time.Millisecond) {
				return time.Since(start)
			}
			if time.Since(start) > d {
				t.Fatalf("%s: cross-instance delivery not back after %s", what, d)
			}
		}
	}
	waitCross("before", 5*time.Second)

	// Redis killed for 10 s while a1 keeps broadcasting: both local
	// listeners get every message, in order.
	r.Kill()
	outage := time.Now()
	for i := 0; time.Since(outage) < 10*time.Second; i++ {
		msg := "down-" + strconv.Itoa(i)
		a1.send(map[string]any{"type": "broadcast", "msg": msg})
		for _, c := range []*e2eClient{a1, a2} {
			if !e2eSawProbe(c, msg, 2*time.Second) {
				t.Fatalf("local delivery stopped while Redis is down (%s)", msg)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, in := range []*e2eInstance{a, b} {
		resp, err := http.Get("http://" + in.addr + "/health/")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("/health/ while Redis is down: %v %v", resp, err)
		}
		resp.Body.Close()
	}
	// A read can be served from the client-side cache until the client
	// notices the closed connection; then presence must fail fast.
	deadline := time.Now().Add(3 * time.Second)
	for {
		start := time.Now()
		f := a1.presence()
		if el := time.Since(start); el > 3*time.Second {
			t.Fatalf("presence took %s with Redis down", el)
		}
		if f["type"] == "error" && f["error"] == "presence_unavailable" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("presence while Redis is down = %v, want presence_unavailable", f)
		}
		time.Sleep(20 * time.Millisecond)
	}

	r.Start()
	back := time.Now()
	took := waitCross("after", 2*time.Second)
	waitPresence(t, b1, 3, 2*time.Second-time.Since(back)+500*time.Millisecond)
	t.Logf("after Redis returned: cross-instance delivery back in %s, presence in %s", took, time.Since(back))
}
