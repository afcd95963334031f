package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The history scenario: the same broadcast load against wsedge instances with
// SESSION_HISTORY_SIZE off and on, sharing one Redis, one after the other in
// one run, so that the two columns compare on the same machine state.

type historyOptions struct {
	instances, sessions, listeners, broadcasts, rate, size, idle int
}

type historyResult struct {
	Instances    int         `json:"instances_per_mode"`
	Sessions     int         `json:"sessions"`
	Listeners    int         `json:"listeners_per_session"`
	Broadcasts   int         `json:"broadcasts"`
	Rate         int         `json:"rate"`
	Size         int         `json:"history_size"`
	PayloadBytes int         `json:"payload_bytes"`
	IdleConns    int         `json:"idle_conns"`
	Off          historyCost `json:"off"`
	On           historyCost `json:"on"`
}

type historyCost struct {
	Deliveries      int            `json:"deliveries"`
	Lost            int            `json:"lost"`
	SeqErrors       int            `json:"seq_errors"` // on: seq not consecutive per socket
	CPUMsPerBcast   float64        `json:"server_cpu_ms_per_broadcast"`
	RedisCPUUsPerBc float64        `json:"redis_cpu_us_per_broadcast"`
	RoundTrips      float64        `json:"redis_round_trips_per_broadcast"` // commands wsedge sends for a broadcast
	CommandsPerBc   float64        `json:"redis_commands_per_broadcast"`    // script-internal ones included
	Commands        map[string]int `json:"redis_commands"`
	NetInPerBcast   float64        `json:"redis_net_in_bytes_per_broadcast"`
	NetOutPerBcast  float64        `json:"redis_net_out_bytes_per_broadcast"`
	MemPerSession   float64        `json:"redis_memory_per_session_bytes"`
	IdleRSSPerConn  float64        `json:"idle_rss_per_socket_bytes"`
	IdleHeapPerConn float64        `json:"idle_live_heap_per_socket_bytes"` // after a forced GC
	ConnectMsMedian float64        `json:"connect_to_connected_ms_p50"`
}

// payloadMsg is the broadcast text: 64 bytes of msg besides the counter.
var payloadMsg = strings.Repeat("x", 64)

func historyBench(o options, dir string, rd *redisDeploy) (*historyResult, error) {
	h := o.hist
	res := &historyResult{Instances: h.instances, Sessions: h.sessions, Listeners: h.listeners,
		Broadcasts: h.broadcasts, Rate: h.rate, Size: h.size, IdleConns: h.idle}
	for _, on := range []bool{false, true} {
		mode := "off"
		env := []string{"SESSION_HISTORY_SIZE=0"}
		if on {
			mode = "on"
			env = []string{"SESSION_HISTORY_SIZE=" + strconv.Itoa(h.size), "SESSION_HISTORY_TTL=10m"}
		}
		var ins []*instance
		for i := range h.instances {
			in, err := startInstance(o.wsedge, dir, fmt.Sprintf("hist-%s-%d", mode, i), rd.url, env...)
			if err != nil {
				return nil, err
			}
			ins = append(ins, in)
		}
		c, err := historyRun(h, rd, ins, "h"+mode)
		for _, in := range ins {
			in.stop()
		}
		if err != nil {
			return nil, fmt.Errorf("history %s: %w", mode, err)
		}
		if on {
			res.On = c
		} else {
			res.Off = c
		}
	}
	res.PayloadBytes = len(fmt.Sprintf(`{"type":"session_message","user_type":"bench","client_type":"web","msg":"%s-%d","data":null}`, payloadMsg, h.broadcasts/2))
	return res, nil
}

func historyRun(h historyOptions, rd *redisDeploy, ins []*instance, prefix string) (historyCost, error) {
	var cost historyCost
	// Idle memory per socket first, on a fresh process.
	heap0 := liveHeap(ins[0])
	rss0 := rssBytes(ins[0])
	var idle []*client
	for i := range h.idle {
		start := time.Now()
		c, err := dial(ins[0], fmt.Sprintf("%s-idle-%d", prefix, i%100))
		if err != nil {
			closeAll(idle)
			return cost, err
		}
		if i%20 == 0 {
			cost.ConnectMsMedian += float64(time.Since(start).Microseconds()) / 1000
		}
		idle = append(idle, c)
	}
	cost.ConnectMsMedian /= float64((h.idle + 19) / 20) // mean of the sampled connects
	time.Sleep(3 * time.Second)                         // past the resume re-check of every hello
	cost.IdleRSSPerConn = float64(rssBytes(ins[0])-rss0) / float64(h.idle)
	cost.IdleHeapPerConn = float64(liveHeap(ins[0])-heap0) / float64(h.idle)
	closeAll(idle)

	// Sessions: one sender (on the first instance) and listeners spread
	// over the instances; every socket counts what it receives.
	per := h.listeners + 1
	var clients []*client
	var senders []*client
	for s := range h.sessions {
		for l := range per {
			c, err := dial(ins[(s+l)%len(ins)], fmt.Sprintf("%s-%d", prefix, s))
			if err != nil {
				closeAll(clients)
				return cost, err
			}
			clients = append(clients, c)
			if l == 0 {
				senders = append(senders, c)
			}
		}
	}
	defer closeAll(clients)
	perSession := h.broadcasts / h.sessions
	var got, seqErrs, warm atomic.Int64
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var last float64
			seen := 0
			for {
				b, err := c.read()
				if err != nil {
					return
				}
				var f struct {
					Type string  `json:"type"`
					Msg  string  `json:"msg"`
					Seq  float64 `json:"seq"`
				}
				if json.Unmarshal(b, &f) != nil || f.Type != "session_message" {
					continue
				}
				if f.Seq != 0 {
					if last != 0 && f.Seq != last+1 {
						seqErrs.Add(1)
					}
					last = f.Seq
				}
				if f.Msg == "warm" {
					warm.Add(1)
					continue
				}
				got.Add(1)
				if seen++; seen == perSession {
					return
				}
			}
		}()
	}
	for _, s := range senders {
		_ = s.send(`{"type":"broadcast","msg":"warm"}`)
	}
	if err := waitFor(30*time.Second, func() bool { return warm.Load() >= int64(len(clients)) }); err != nil {
		return cost, fmt.Errorf("warm-up: %d of %d sockets heard it: %w", warm.Load(), len(clients), err)
	}
	time.Sleep(1500 * time.Millisecond) // let hello re-checks finish
	calls0, err := rd.calls()
	if err != nil {
		return cost, err
	}
	in0, out0 := rd.netBytes()
	rcpu0 := rd.cpuSeconds()
	cpu0 := cpuMs(ins)
	tick := time.NewTicker(time.Second / time.Duration(h.rate))
	for n := range perSession * h.sessions {
		<-tick.C
		if err := senders[n%h.sessions].send(fmt.Sprintf(`{"type":"broadcast","msg":"%s-%d"}`, payloadMsg, n)); err != nil {
			tick.Stop()
			return cost, err
		}
	}
	tick.Stop()
	want := int64(perSession * h.sessions * per)
	_ = waitFor(60*time.Second, func() bool { return got.Load() >= want })
	cpu1 := cpuMs(ins)
	rcpu1 := rd.cpuSeconds()
	in1, out1 := rd.netBytes()
	calls1, err := rd.calls()
	if err != nil {
		return cost, err
	}
	nb := float64(perSession * h.sessions)
	cost.Deliveries = int(got.Load())
	cost.Lost = int(want - got.Load())
	cost.SeqErrors = int(seqErrs.Load())
	cost.CPUMsPerBcast = (cpu1 - cpu0) / nb
	cost.RedisCPUUsPerBc = (rcpu1 - rcpu0) * 1e6 / nb
	var total int
	cost.Commands, total = diff(calls0, calls1)
	cost.CommandsPerBc = float64(total) / nb
	// Round trips: what wsedge sends. With history the (S)PUBLISH runs
	// inside the script and is not one of them.
	cost.RoundTrips = float64(cost.Commands["evalsha"] + cost.Commands["eval"])
	if cost.RoundTrips == 0 {
		cost.RoundTrips = float64(cost.Commands["publish"] + cost.Commands["spublish"])
	}
	cost.RoundTrips /= nb
	cost.NetInPerBcast = float64(in1-in0) / nb
	cost.NetOutPerBcast = float64(out1-out0) / nb
	// Redis memory per session: the history keys of these sessions,
	// from used_memory before and after deleting them.
	m0 := rd.usedMemory()
	n := rd.delMatch("ws:hist:*" + prefix + "-*")
	m1 := rd.usedMemory()
	if n > 0 {
		cost.MemPerSession = float64(m0-m1) / float64(h.sessions)
	}
	closeAll(clients)
	wg.Wait()
	return cost, nil
}

// cpuMs is the user+system CPU time of the instances, in milliseconds.
func cpuMs(ins []*instance) float64 {
	total := 0.0
	for _, in := range ins {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", in.cmd.Process.Pid))
		if err != nil {
			continue
		}
		// Fields after the command name (which may hold spaces).
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		total += (ut + st) * 10 // USER_HZ is 100 on Linux
	}
	return total
}

// liveHeap is the instance's HeapAlloc right after a GC (pprof's heap
// endpoint with gc=1 runs one), i.e. what is live.
func liveHeap(in *instance) int64 {
	if in.admin == "" {
		return 0
	}
	resp, err := http.Get("http://" + in.admin + "/debug/pprof/heap?gc=1&debug=1")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "# HeapAlloc = "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

func rssBytes(in *instance) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", in.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func (d *redisDeploy) infoField(section, field string) int64 {
	var sum int64
	for _, a := range d.addrs {
		info, err := redisCmd(a, "INFO", section)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				sum += n
			}
		}
	}
	return sum
}

func (d *redisDeploy) netBytes() (in, out int64) {
	return d.infoField("stats", "total_net_input_bytes"), d.infoField("stats", "total_net_output_bytes")
}

// cpuSeconds is Redis' used_cpu_user + used_cpu_sys over every node.
func (d *redisDeploy) cpuSeconds() float64 {
	var sum float64
	for _, a := range d.addrs {
		info, err := redisCmd(a, "INFO", "cpu")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(info, "\n") {
			k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
			if ok && (k == "used_cpu_user" || k == "used_cpu_sys") {
				f, _ := strconv.ParseFloat(v, 64)
				sum += f
			}
		}
	}
	return sum
}

func (d *redisDeploy) usedMemory() int64 { return d.infoField("memory", "used_memory") }

// delMatch deletes the keys matching pattern on every node (KEYS is fine on
// a bench's Redis) and returns how many went.
func (d *redisDeploy) delMatch(pattern string) int {
	n := 0
	for _, a := range d.addrs {
		keys, err := redisKeys(a, pattern)
		if err != nil {
			continue
		}
		for _, k := range keys {
			if _, err := redisCmd(a, "DEL", k); err == nil {
				n++
			}
		}
	}
	return n
}

// redisKeys runs KEYS and parses its array of bulk strings.
func redisKeys(addr, pattern string) ([]string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "*2\r\n$4\r\nKEYS\r\n$%d\r\n%s\r\n", len(pattern), pattern); err != nil {
		return nil, err
	}
	rd := bufio.NewReader(c)
	line, err := rd.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(line, "*") {
		return nil, errNotArray
	}
	n, _ := strconv.Atoi(strings.TrimSpace(line[1:]))
	out := make([]string, 0, n)
	for range n {
		hdr, err := rd.ReadString('\n')
		if err != nil {
			return nil, err
		}
		l, _ := strconv.Atoi(strings.TrimSpace(hdr[1:]))
		buf := make([]byte, l+2)
		if _, err := io.ReadFull(rd, buf); err != nil {
			return nil, err
		}
		out = append(out, string(buf[:l]))
	}
	return out, nil
}

func historyMarkdown(r *historyResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "**Session history** (`SESSION_HISTORY_SIZE` off vs %d, %d instances per mode, one after the other in one run): "+
		"%d sessions × (1 sender + %d listeners), %d broadcasts at %d/s, session_message of %d bytes; idle memory from %d hello'd sockets on one instance.\n\n",
		r.Size, r.Instances, r.Sessions, r.Listeners, r.Broadcasts, r.Rate, r.PayloadBytes, r.IdleConns)
	b.WriteString("| history | deliveries | lost | seq errors | server CPU ms / broadcast | Redis CPU µs / broadcast | Redis round trips / broadcast | Redis commands / broadcast | Redis bytes in / out per broadcast | Redis memory / session | idle RSS / socket | idle live heap / socket | connect → connected ms |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, row := range []struct {
		name string
		c    historyCost
	}{{"off", r.Off}, {"on", r.On}} {
		c := row.c
		mem := "—"
		if c.MemPerSession > 0 {
			mem = fmt.Sprintf("%.0f B", c.MemPerSession)
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %.4f | %.1f | %.3f | %.3f | %.0f / %.0f | %s | %.0f B | %.0f B | %.2f |\n", row.name, c.Deliveries, c.Lost, c.SeqErrors,
			c.CPUMsPerBcast, c.RedisCPUUsPerBc, c.RoundTrips, c.CommandsPerBc, c.NetInPerBcast, c.NetOutPerBcast, mem, c.IdleRSSPerConn, c.IdleHeapPerConn, c.ConnectMsMedian)
	}
	if r.Off.CPUMsPerBcast > 0 {
		fmt.Fprintf(&b, "\nRatios on/off: server CPU per broadcast %.2f×, Redis CPU per broadcast %.2f×, Redis bytes in %.2f×, out %.2f×, idle RSS per socket %.2f×, idle live heap per socket %.2f×.\n",
			r.On.CPUMsPerBcast/r.Off.CPUMsPerBcast, r.On.RedisCPUUsPerBc/r.Off.RedisCPUUsPerBc, r.On.NetInPerBcast/r.Off.NetInPerBcast, r.On.NetOutPerBcast/r.Off.NetOutPerBcast,
			r.On.IdleRSSPerConn/r.Off.IdleRSSPerConn, r.On.IdleHeapPerConn/r.Off.IdleHeapPerConn)
	}
	for _, row := range []struct {
		name string
		c    historyCost
	}{{"off", r.Off}, {"on", r.On}} {
		keys := make([]string, 0, len(row.c.Commands))
		for k := range row.c.Commands {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s %d", k, row.c.Commands[k]))
		}
		fmt.Fprintf(&b, "\nRedis commands during the %s phase: %s.\n", row.name, strings.Join(parts, ", "))
	}
	b.WriteString("\n")
	return b.String()
}

var errNotArray = errors.New("not an array reply")
