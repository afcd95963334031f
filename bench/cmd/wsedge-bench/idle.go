package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"github.com/wsedge/wsedge/bench/internal/proc"
	"github.com/wsedge/wsedge/bench/internal/report"
	"github.com/wsedge/wsedge/bench/internal/wsclient"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsedge/wsedge/bench/plot"
)

// idleReport is what an idle client process prints, one JSON line per event.
type idleReport struct {
	Ready       int      `json:"ready"`
	Failed      int      `json:"failed"`
	ClosedEarly int      `json:"closed_early"`
	Errors      []string `json:"errors,omitempty"`
	Done        bool     `json:"done"`
}

// runIdleClient holds n hello'd sockets from one source address until its
// stdin closes, then reports how many the server closed in the meantime.
func runIdleClient(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("idle-client", flag.ContinueOnError)
	addr := fs.String("addr", "", "server host:port, or several comma-separated (socket i joins the i-th modulo their number)")
	protoName := fs.String("proto", "wsedge", "protocol: wsedge, baseline (session protocol) or centrifugo")
	n := fs.Int("n", 0, "sockets")
	offset := fs.Int("offset", 0, "global index of the first socket (names sessions)")
	size := fs.Int("session-size", 100, "members per session")
	src := fs.String("src", "", "source IP")
	conc := fs.Int("concurrency", 32, "concurrent dials")
	timeout := fs.Duration("timeout", 10*time.Second, "dial timeout")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ip := net.ParseIP(*src)
	proto := protocolFor(*protoName)
	addrs := strings.Split(*addr, ",")
	var (
		mu      sync.Mutex
		clients []*wsclient.Client
		failed  int
		errs    []string
		early   atomic.Int64
		release = make(chan struct{})
		readers sync.WaitGroup
	)
	next := make(chan int)
	var dialers sync.WaitGroup
	for w := 0; w < *conc; w++ {
		dialers.Add(1)
		go func() {
			defer dialers.Done()
			for i := range next {
				c, err := proto.join(ctx, addrs[i%len(addrs)], fmt.Sprintf("idle-%d", i / *size), ip, *timeout)
				mu.Lock()
				if err != nil {
					failed++
					if len(errs) < 5 {
						errs = append(errs, err.Error())
					}
					mu.Unlock()
					continue
				}
				clients = append(clients, c)
				mu.Unlock()
				readers.Add(1)
				go func() {
					defer readers.Done()
					// Reading answers the server's pings; any end before the
					// release is a connection the server dropped.
					for {
						_, p, err := c.Next()
						if err == nil {
							if a := proto.answer(p); a != nil {
								err = c.WriteText(a)
							}
						}
						if err != nil {
							select {
							case <-release:
							default:
								early.Add(1)
							}
							return
						}
					}
				}()
			}
		}()
	}
	for i := 0; i < *n; i++ {
		next <- *offset + i
	}
	close(next)
	dialers.Wait()
	enc := json.NewEncoder(stdout)
	mu.Lock()
	_ = enc.Encode(idleReport{Ready: len(clients), Failed: failed, Errors: errs})
	mu.Unlock()
	_, _ = io.Copy(io.Discard, stdin)
	close(release)
	for _, c := range clients {
		_ = c.Conn().Close()
	}
	readers.Wait()
	return enc.Encode(idleReport{Ready: len(clients), Failed: failed, ClosedEarly: int(early.Load()), Done: true})
}

type idleChild struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
}

// fleet is what an idle measurement covers: the servers (one, or the
// instances of a cross run) and other processes whose memory and CPU count
// with them (Redis).
type fleet struct {
	servers []*server
	extra   []int // pids
}

func (f fleet) Sample() (proc.Sample, error) {
	sum, err := sampleAll(f.servers)
	if err != nil {
		return sum, err
	}
	for _, pid := range f.extra {
		rss, err := proc.RSSBytes(pid)
		if err != nil {
			return sum, err
		}
		cpu, err := proc.CPUSeconds(pid)
		if err != nil {
			return sum, err
		}
		sum.RSS, sum.CPU = sum.RSS+rss, sum.CPU+cpu
	}
	return sum, nil
}

func (f fleet) Goroutines(ctx context.Context) (float64, error) {
	var n float64
	for _, s := range f.servers {
		g, err := s.Goroutines(ctx)
		if err != nil {
			return 0, err
		}
		n += g
	}
	return n, nil
}

func (f fleet) addrs() string {
	a := make([]string, len(f.servers))
	for i, s := range f.servers {
		a[i] = s.Addr
	}
	return strings.Join(a, ",")
}

func runIdle(ctx context.Context, c *config, name string, t fleet) report.Result {
	r := report.Result{Target: name, Scenario: "idle", Case: fmt.Sprintf("%d conns", c.idleConns), Params: map[string]any{
		"conns": c.idleConns, "per_process": c.idlePerProc, "session_size": c.idleSessionSize, "settle": c.idleSettle.String(),
	}}
	time.Sleep(c.gap)
	before, err := t.Sample()
	if err != nil {
		r.Error = err.Error()
		return r
	}
	g0, err := t.Goroutines(ctx)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	self, err := os.Executable()
	if err != nil {
		r.Error = err.Error()
		return r
	}
	var children []*idleChild
	defer func() {
		for _, ch := range children {
			ch.stdin.Close()
			_ = ch.cmd.Wait()
		}
	}()
	start := time.Now()
	var ready, failed int
	rss := plot.Series{X: []float64{0}, Y: []float64{float64(before.RSS) / (1 << 20)}}
	prog := &plot.Progress{W: os.Stderr, What: "idle"}
	for i, off := 0, 0; off < c.idleConns; i++ {
		n := min(c.idlePerProc, c.idleConns-off)
		cmd := exec.CommandContext(ctx, self,
			"-addr", t.addrs(), "-proto", name, "-n", fmt.Sprint(n), "-offset", fmt.Sprint(off),
			"-session-size", fmt.Sprint(c.idleSessionSize), "-src", fmt.Sprintf("127.%d.0.%d", 10+c.runSeq(), 10+i),
			"-concurrency", fmt.Sprint(c.idleConcurrency), "-timeout", c.dialTimeout.String())
		cmd.Env = append(os.Environ(), roleEnv+"=idle-client")
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			r.Error = err.Error()
			return r
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			r.Error = err.Error()
			return r
		}
		if err := cmd.Start(); err != nil {
			r.Error = fmt.Sprintf("start idle client: %v", err)
			return r
		}
		ch := &idleChild{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)}
		children = append(children, ch)
		off += n
		// Children connect one after another so that the server's RSS can
		// be sampled at each step (the RSS-vs-connections plot).
		var rep idleReport
		if !ch.out.Scan() || json.Unmarshal(ch.out.Bytes(), &rep) != nil {
			r.Error = "idle client died before reporting"
			return r
		}
		ready += rep.Ready
		failed += rep.Failed
		for _, e := range rep.Errors {
			r.Notes = append(r.Notes, "connect error: "+e)
		}
		if smp, err := t.Sample(); err == nil {
			rss.X = append(rss.X, float64(ready))
			rss.Y = append(rss.Y, float64(smp.RSS)/(1<<20))
		}
		prog.Update("%d/%d connected", ready, c.idleConns)
	}
	prog.Done()
	r.AddSeries("rss_vs_conns", rss)
	connectTime := time.Since(start)
	mid, _ := t.Sample()
	time.Sleep(c.idleSettle)
	after, err := t.Sample()
	if err != nil {
		r.Error = err.Error()
		return r
	}
	g1, err := t.Goroutines(ctx)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	// Check that the server counts the sockets as hello'd members: a session
	// of the idle set must list session_size+1 members including the checker.
	if want := min(c.idleSessionSize, ready) + 1; ready > 0 {
		if got, err := presenceCount(ctx, t.servers[0], "idle-0", c.dialTimeout); err != nil {
			r.Notes = append(r.Notes, "presence check: "+err.Error())
		} else if got != want {
			r.Notes = append(r.Notes, fmt.Sprintf("presence check: idle-0 has %d members, want %d", got, want))
		}
	}
	early := 0
	for _, ch := range children {
		ch.stdin.Close()
		var rep idleReport
		if ch.out.Scan() && json.Unmarshal(ch.out.Bytes(), &rep) == nil {
			early += rep.ClosedEarly
		}
		_ = ch.cmd.Wait()
	}
	children = nil
	r.Add("connections", "", float64(ready))
	r.Add("failed", "", float64(failed))
	r.Add("closed_by_server", "", float64(early))
	r.Add("connect_rate", "conn/s", float64(ready)/connectTime.Seconds())
	r.Add("rss_before", "MiB", float64(before.RSS)/(1<<20))
	r.Add("rss_after", "MiB", float64(after.RSS)/(1<<20))
	if ready > 0 {
		r.Add("rss_per_conn", "bytes", float64(after.RSS-before.RSS)/float64(ready))
	}
	r.Add("goroutines_before", "", g0)
	r.Add("goroutines_after", "", g1)
	r.Add("server_cpu_connect", "s", mid.CPU-before.CPU)
	r.Add("server_cpu_idle", "%", 100*(after.CPU-mid.CPU)/after.At.Sub(mid.At).Seconds())
	return r
}

// presenceCount joins a session and returns the count of its presence reply.
func presenceCount(ctx context.Context, t *server, session string, timeout time.Duration) (int, error) {
	c, err := t.proto.join(ctx, t.Addr, session, nil, timeout)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return t.proto.askPresence(c, session, timeout)
}
