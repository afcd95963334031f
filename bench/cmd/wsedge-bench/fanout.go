package main

import (
	"bytes"
	"context"
	"fmt"
	"github.com/wsedge/wsedge/bench/internal/proc"
	"github.com/wsedge/wsedge/bench/internal/report"
	"github.com/wsedge/wsedge/bench/internal/wsclient"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsedge/wsedge/bench/plot"
)

// msgMarker starts the msg of every benchmark broadcast:
// "wsb:<sender>:<seq>:<unix nanos at send>".
var msgMarker = []byte(`"wsb:`)

// group is a set of hello'd members of one session, each with a reader
// goroutine that timestamps benchmark broadcasts as they arrive.
type group struct {
	clients   []*wsclient.Client
	members   []*member
	delivered atomic.Int64
	stopping  atomic.Bool
	dropped   atomic.Int64 // readers that ended before stop
	wg        sync.WaitGroup
	proto     protocol
	session   string
}

type member struct {
	lat     report.Latencies
	lastSeq []int64
	ooo     int
}

// joinGroup connects n members to url and waits until presence lists them
// all, so no broadcast is sent before every member has joined.
//
// Member i joins servers[i%len(servers)] (several with Redis).
func joinGroup(ctx context.Context, servers []*server, session string, n, senders int, timeout time.Duration) (*group, error) {
	g := &group{clients: make([]*wsclient.Client, n), members: make([]*member, n), proto: servers[0].proto, session: session}
	var mu sync.Mutex
	var firstErr error
	idx := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range idx {
				sv := servers[i%len(servers)]
				c, err := sv.proto.join(ctx, sv.Addr, session, net.IPv4(127, 0, 0, byte(2+i%8)), timeout)
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					continue
				}
				g.clients[i] = c
			}
		}()
	}
	for i := 0; i < n; i++ {
		idx <- i
	}
	close(idx)
	wg.Wait()
	if firstErr != nil {
		g.close()
		return nil, fmt.Errorf("join %d members: %w", n, firstErr)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := g.proto.askPresence(g.clients[0], session, timeout)
		if err != nil {
			g.close()
			return nil, err
		}
		if got >= n {
			break
		}
		if time.Now().After(deadline) {
			g.close()
			return nil, fmt.Errorf("presence lists %d of %d members after 10s", got, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i, c := range g.clients {
		m := &member{lastSeq: make([]int64, senders)}
		for j := range m.lastSeq {
			m.lastSeq[j] = -1
		}
		g.members[i] = m
		g.wg.Add(1)
		go g.read(c, m)
	}
	return g, nil
}

func (g *group) read(c *wsclient.Client, m *member) {
	defer g.wg.Done()
	for {
		_, p, err := c.Next()
		if err != nil {
			if !g.stopping.Load() {
				g.dropped.Add(1)
			}
			return
		}
		now := time.Now().UnixNano()
		if a := g.proto.answer(p); a != nil {
			if err := c.WriteText(a); err != nil {
				continue // the next read reports the broken socket
			}
		}
		// A frame may batch several broadcasts (Centrifugo does).
		for {
			i := bytes.Index(p, msgMarker)
			if i < 0 {
				break
			}
			p = p[i+len(msgMarker):]
			f := bytes.SplitN(p, []byte(":"), 3)
			if len(f) != 3 {
				break
			}
			sender, _ := strconv.Atoi(string(f[0]))
			seq, _ := strconv.ParseInt(string(f[1]), 10, 64)
			end := bytes.IndexByte(f[2], '"')
			if end < 0 {
				break
			}
			ts, _ := strconv.ParseInt(string(f[2][:end]), 10, 64)
			m.lat = append(m.lat, now-ts)
			if sender >= 0 && sender < len(m.lastSeq) {
				if seq <= m.lastSeq[sender] {
					m.ooo++
				}
				m.lastSeq[sender] = seq
			}
			g.delivered.Add(1)
		}
	}
}

// waitDelivered waits until want deliveries arrived or nothing arrived for
// idle; it returns when the last delivery was seen.
func (g *group) waitDelivered(want int64, idle time.Duration) time.Time {
	last, lastN := time.Now(), g.delivered.Load()
	for {
		n := g.delivered.Load()
		if n >= want {
			return time.Now()
		}
		if n != lastN {
			last, lastN = time.Now(), n
		} else if time.Since(last) > idle {
			return last
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (g *group) close() {
	g.stopping.Store(true)
	for _, c := range g.clients {
		if c != nil {
			_ = c.Conn().Close()
		}
	}
	g.wg.Wait()
}

// sender writes benchmark broadcasts from one member.
type sender struct {
	c       *wsclient.Client
	id      int
	proto   protocol
	session string
	msg     []byte
	buf     []byte
}

func (s *sender) send(seq int64) error {
	s.msg = appendMarker(s.msg[:0], s.id, seq)
	s.buf = s.proto.appendBroadcast(s.buf[:0], s.session, uint32(seq), s.msg)
	return s.c.WriteText(s.buf)
}

type fanCase struct {
	name      string
	members   int
	senders   int
	each      int     // broadcasts per sender
	rate      float64 // per second; 0: full speed
	window    int     // full speed: broadcasts in flight
	allAtOnce bool    // every sender fires at once (storm)
}

func runFanout(ctx context.Context, c *config, t *server) []report.Result {
	cases := []fanCase{
		{name: fmt.Sprintf("%d listeners, %d broadcasts at %g/s", c.fanListeners, c.fanBroadcasts, c.fanRate),
			members: c.fanListeners, senders: 1, each: c.fanBroadcasts, rate: c.fanRate},
		{name: fmt.Sprintf("%d listeners, %d broadcasts at full speed", c.fanListeners, c.fullBroadcast),
			members: c.fanListeners, senders: 1, each: c.fullBroadcast, window: c.fullWindow},
		{name: fmt.Sprintf("%d senders x %d broadcasts to %d listeners", c.stormConns, c.stormEach, c.stormConns),
			members: c.stormConns, senders: c.stormConns, each: c.stormEach, allAtOnce: true},
	}
	var out []report.Result
	for i, fc := range cases {
		time.Sleep(c.gap)
		out = append(out, runFanCase(ctx, c, t.Name, []*server{t}, fc, fmt.Sprintf("fanout-%d", i)))
	}
	return out
}

// runFanCase runs one case with its members spread over servers (one, or
// several instances sharing Redis); server CPU is their sum.
func runFanCase(ctx context.Context, c *config, name string, servers []*server, fc fanCase, session string) report.Result {
	r := report.Result{Target: name, Scenario: "fanout", Case: fc.name, Params: map[string]any{
		"members": fc.members, "senders": fc.senders, "broadcasts_per_sender": fc.each,
		"rate_per_s": fc.rate, "window": fc.window,
	}}
	g, err := joinGroup(ctx, servers, session, fc.members, fc.senders, c.dialTimeout)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	want := int64(fc.senders) * int64(fc.each) * int64(fc.members)
	before, err := sampleAll(servers)
	if err != nil {
		g.close()
		r.Error = err.Error()
		return r
	}
	clientBefore, _ := proc.CPUSeconds(os.Getpid())
	tl := plot.Record(&plot.Progress{W: os.Stderr, What: "fanout " + fc.name + " deliveries"}, g.delivered.Load, want)
	start := time.Now()
	var sendErr atomic.Value
	switch {
	case fc.allAtOnce:
		gate := make(chan struct{})
		var wg sync.WaitGroup
		for i := 0; i < fc.senders; i++ {
			wg.Add(1)
			go func(s *sender) {
				defer wg.Done()
				<-gate
				for q := 0; q < fc.each; q++ {
					if err := s.send(int64(q)); err != nil {
						sendErr.Store(err.Error())
						return
					}
				}
			}(&sender{c: g.clients[i], id: i, proto: g.proto, session: g.session})
		}
		start = time.Now()
		close(gate)
		wg.Wait()
	case fc.rate > 0:
		s := &sender{c: g.clients[0], proto: g.proto, session: g.session}
		interval := time.Duration(float64(time.Second) / fc.rate)
		for q := 0; q < fc.each; q++ {
			time.Sleep(time.Until(start.Add(time.Duration(q) * interval)))
			if err := s.send(int64(q)); err != nil {
				sendErr.Store(err.Error())
				break
			}
		}
	default:
		s := &sender{c: g.clients[0], proto: g.proto, session: g.session}
		per := int64(fc.members)
		for q := 0; q < fc.each; q++ {
			// Keep at most window broadcasts undelivered so the measurement is
			// the server's throughput, not its slow-consumer policy.
			for g.delivered.Load() < int64(q-fc.window)*per && g.dropped.Load() == 0 {
				time.Sleep(50 * time.Microsecond)
			}
			if err := s.send(int64(q)); err != nil {
				sendErr.Store(err.Error())
				break
			}
		}
	}
	end := g.waitDelivered(want, c.drainTimeout)
	r.AddSeries("deliveries_over_time", tl.Stop())
	after, err := sampleAll(servers)
	clientAfter, _ := proc.CPUSeconds(os.Getpid())
	g.close()
	if err != nil {
		r.Error = err.Error()
		return r
	}
	if e, ok := sendErr.Load().(string); ok {
		r.Notes = append(r.Notes, "send error: "+e)
	}
	var all report.Latencies
	ooo := 0
	for _, m := range g.members {
		all = append(all, m.lat...)
		ooo += m.ooo
	}
	got := int64(len(all))
	dur := end.Sub(start).Seconds()
	r.Add("expected", "", float64(want))
	r.Add("delivered", "", float64(got))
	r.Add("lost", "", float64(want-got))
	r.Add("out_of_order", "", float64(ooo))
	r.Add("closed_by_server", "", float64(g.dropped.Load()))
	r.Add("duration", "s", dur)
	r.Add("deliveries_per_s", "1/s", float64(got)/dur)
	all.AddTo(&r, "")
	cpu := after.CPU - before.CPU
	r.Add("server_cpu", "s", cpu)
	r.Add("server_cpu_ticks", "s", after.CPUTicks-before.CPUTicks)
	if got > 0 {
		r.Add("server_cpu_per_delivery", "µs", cpu/float64(got)*1e6)
		// The client shares the cores: its cost bounds how much of the
		// latency is the server's.
		r.Add("client_cpu_per_delivery", "µs", (clientAfter-clientBefore)/float64(got)*1e6)
	}
	return r
}

// sampleAll sums the RSS and CPU of servers.
func sampleAll(servers []*server) (proc.Sample, error) {
	var sum proc.Sample
	for _, s := range servers {
		x, err := s.Sample()
		if err != nil {
			return sum, err
		}
		sum.At, sum.RSS, sum.CPU, sum.CPUTicks = x.At, sum.RSS+x.RSS, sum.CPU+x.CPU, sum.CPUTicks+x.CPUTicks
	}
	return sum, nil
}
