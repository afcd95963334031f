// Package proc starts the server processes a benchmark measures (so their
// pids are known) and reads their RSS and CPU time from /proc.
package proc

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/wsedge/wsedge/internal/testenv"
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
type Target struct {
	Name    string
	Addr    string // host:port of the WebSocket listener
	Admin   string // host:port of /metrics
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
	health  string
	// healthAddr is Addr or Admin, where health answers.
	healthAddr string
}

// Spec says how to start a server: argv and extra environment.
// ADDR/ADMIN_ADDR (env) are set, and the placeholders {addr}, {admin},
// {host}, {port} and {adminport} are filled in argv and Env.
type Spec struct {
	Name string
	Argv []string
	Env  []string
	// HealthPath answers 200 once the server is ready (default "/health/"),
	// on the admin address with HealthOnAdmin, else on the main one.
	HealthPath    string
	HealthOnAdmin bool
}

func Start(ctx context.Context, spec Spec, logDir string) (*Target, error) {
	addr, err := testenv.FreeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	admin, err := testenv.FreeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	host, port, _ := net.SplitHostPort(addr)
	_, adminPort, _ := net.SplitHostPort(admin)
	fill := strings.NewReplacer("{addr}", addr, "{admin}", admin, "{host}", host, "{port}", port, "{adminport}", adminPort)
	argv := make([]string, len(spec.Argv))
	for i, a := range spec.Argv {
		argv[i] = fill.Replace(a)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "ADDR="+addr, "ADMIN_ADDR="+admin)
	for _, e := range spec.Env {
		cmd.Env = append(cmd.Env, fill.Replace(e))
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logPath := filepath.Join(logDir, spec.Name+".log")
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("server log: %w", err)
	}
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s (%s): %w", spec.Name, strings.Join(argv, " "), err)
	}
	t := &Target{Name: spec.Name, Addr: addr, Admin: admin, cmd: cmd, logPath: logPath, exited: make(chan struct{}), health: spec.HealthPath}
	if t.health == "" {
		t.health = "/health/"
	}
	t.healthAddr = addr
	if spec.HealthOnAdmin {
		t.healthAddr = admin
	}
	go func() { _ = cmd.Wait(); lf.Close(); close(t.exited) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if err := t.Health(ctx); err == nil {
			return t, nil
		} else if time.Now().After(deadline) {
			t.Stop()
			return nil, fmt.Errorf("%s did not answer /health/ within 15s: %w (log: %s)", spec.Name, err, t.Tail())
		}
		select {
		case <-t.exited:
			return nil, fmt.Errorf("%s exited at start: %s", spec.Name, t.Tail())
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (t *Target) PID() int { return t.cmd.Process.Pid }

func (t *Target) URL(path string) string { return "ws://" + t.Addr + path }

func (t *Target) Health(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+t.healthAddr+t.health, nil)
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

// Stop sends SIGTERM, then SIGKILL to the process group after 5 s.
func (t *Target) Stop() {
	_ = syscall.Kill(-t.PID(), syscall.SIGTERM)
	select {
	case <-t.exited:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-t.PID(), syscall.SIGKILL)
		<-t.exited
	}
}

func (t *Target) Tail() string {
	b, _ := os.ReadFile(t.logPath)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// RSSBytes reads VmRSS from /proc/<pid>/status.
func RSSBytes(pid int) (int64, error) {
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

// CPUSeconds returns the CPU time a process has used. It sums the on-CPU
// nanoseconds of its threads (/proc/<pid>/task/*/schedstat), which resolves
// far below the 10 ms ticks of utime+stime; Go threads rarely exit, so
// little is lost. Without schedstat it falls back to /proc/<pid>/stat.
func CPUSeconds(pid int) (float64, error) {
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
	return StatCPUSeconds(pid)
}

// StatCPUSeconds reads utime+stime of a process from /proc/<pid>/stat.
func StatCPUSeconds(pid int) (float64, error) {
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

// Goroutines scrapes go_goroutines from the admin /metrics endpoint.
func (t *Target) Goroutines(ctx context.Context) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+t.Admin+"/metrics", nil)
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
	return 0, fmt.Errorf("scrape metrics: no go_goroutines in %s/metrics", t.Admin)
}

// Sample is what the driver reads from the server around a phase.
type Sample struct {
	At  time.Time
	RSS int64   // bytes
	CPU float64 // seconds
	// CPUTicks is utime+stime (10 ms resolution), kept as a cross-check
	// of CPU, which misses threads that exited.
	CPUTicks float64
}

func (t *Target) Sample() (Sample, error) {
	rss, err := RSSBytes(t.PID())
	if err != nil {
		return Sample{}, err
	}
	cpu, err := CPUSeconds(t.PID())
	if err != nil {
		return Sample{}, err
	}
	ticks, err := StatCPUSeconds(t.PID())
	if err != nil {
		return Sample{}, err
	}
	return Sample{At: time.Now(), RSS: rss, CPU: cpu, CPUTicks: ticks}, nil
}
