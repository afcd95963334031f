package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// target is a server process under test, started and owned by the driver
// so that its pid (RSS, CPU) is known.
type target struct {
	name    string
	addr    string // host:port of the WebSocket listener
	admin   string // host:port of /metrics
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
}

// targetSpec says how to start a server: argv and extra environment.
// ADDR/ADMIN_ADDR (env) and {addr}/{admin} (argv placeholders) are filled in.
type targetSpec struct {
	name string
	argv []string
	env  []string
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func startTarget(ctx context.Context, spec targetSpec, logDir string) (*target, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	admin, err := freePort()
	if err != nil {
		return nil, err
	}
	argv := make([]string, len(spec.argv))
	for i, a := range spec.argv {
		a = strings.ReplaceAll(a, "{addr}", addr)
		argv[i] = strings.ReplaceAll(a, "{admin}", admin)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "ADDR="+addr, "ADMIN_ADDR="+admin)
	cmd.Env = append(cmd.Env, spec.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logPath := filepath.Join(logDir, spec.name+".log")
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("server log: %w", err)
	}
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s (%s): %w", spec.name, strings.Join(argv, " "), err)
	}
	t := &target{name: spec.name, addr: addr, admin: admin, cmd: cmd, logPath: logPath, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); lf.Close(); close(t.exited) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if err := t.health(ctx); err == nil {
			return t, nil
		} else if time.Now().After(deadline) {
			t.stop()
			return nil, fmt.Errorf("%s did not answer /health/ within 15s: %w (log: %s)", spec.name, err, t.tail())
		}
		select {
		case <-t.exited:
			return nil, fmt.Errorf("%s exited at start: %s", spec.name, t.tail())
		case <-ctx.Done():
			t.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (t *target) pid() int { return t.cmd.Process.Pid }

func (t *target) url(path string) string { return "ws://" + t.addr + path }

func (t *target) health(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+t.addr+"/health/", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health: HTTP %d", resp.StatusCode)
	}
	return nil
}

// stop sends SIGTERM, then SIGKILL to the process group after 5 s.
func (t *target) stop() {
	_ = syscall.Kill(-t.pid(), syscall.SIGTERM)
	select {
	case <-t.exited:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-t.pid(), syscall.SIGKILL)
		<-t.exited
	}
}

func (t *target) tail() string {
	b, _ := os.ReadFile(t.logPath)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// rssBytes reads VmRSS from /proc/<pid>/status.
func rssBytes(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("rss: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				n, err := strconv.ParseInt(f[0], 10, 64)
				return n * 1024, err
			}
		}
	}
	return 0, errors.New("rss: no VmRSS line")
}

// clockTicks is USER_HZ, which is 100 on every Linux architecture Go runs on.
const clockTicks = 100

// cpuSeconds returns the CPU time a process has used. It sums the on-CPU
// nanoseconds of its threads (/proc/<pid>/task/*/schedstat), which resolves
// far below the 10 ms ticks of utime+stime; Go threads rarely exit, so
// little is lost. Without schedstat it falls back to /proc/<pid>/stat.
func cpuSeconds(pid int) (float64, error) {
	if tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid)); err == nil {
		var ns int64
		ok := true
		for _, t := range tasks {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
			if err != nil {
				continue // the thread exited meanwhile
			}
			f := strings.Fields(string(b))
			if len(f) < 1 {
				ok = false
				break
			}
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				ok = false
				break
			}
			ns += n
		}
		if ok && ns > 0 {
			return float64(ns) / 1e9, nil
		}
	}
	return statCPUSeconds(pid)
}

// statCPUSeconds reads utime+stime of a process from /proc/<pid>/stat.
func statCPUSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu: %w", err)
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("cpu: malformed stat")
	}
	// After ")": state is field 3, utime field 14, stime field 15.
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("cpu: short stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("cpu: %w", err)
	}
	return float64(ut+st) / clockTicks, nil
}

// goroutines scrapes go_goroutines from the admin /metrics endpoint.
func (t *target) goroutines(ctx context.Context) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+t.admin+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("scrape metrics: %w", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			return strconv.ParseFloat(strings.TrimSpace(rest), 64)
		}
	}
	return 0, fmt.Errorf("scrape metrics: no go_goroutines in %s/metrics", t.admin)
}

// sample is what the driver reads from the server around a phase.
type sample struct {
	at  time.Time
	rss int64
	cpu float64
	// cpuTicks is utime+stime (10 ms resolution), kept as a cross-check
	// of cpu, which misses threads that exited.
	cpuTicks float64
}

func (t *target) sample() (sample, error) {
	rss, err := rssBytes(t.pid())
	if err != nil {
		return sample{}, err
	}
	cpu, err := cpuSeconds(t.pid())
	if err != nil {
		return sample{}, err
	}
	ticks, err := statCPUSeconds(t.pid())
	if err != nil {
		return sample{}, err
	}
	return sample{at: time.Now(), rss: rss, cpu: cpu, cpuTicks: ticks}, nil
}
